"""The ``keras-attn-zoo`` command line."""

import argparse
import json
import os
import sys


def _list(args):
    from keras_attn_zoo import get_spec, list_models

    for name in list_models(args.pattern, pretrained=args.pretrained):
        print(f"{name:28s} {get_spec(name).description}")


def _info(args):
    from keras_attn_zoo import model_info

    info = model_info(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['name']}: {info['description']}")
    print(f"  paper:      {info['paper']}")
    print(f"  builder:    {info['builder']}({', '.join(f'{k}={v!r}' for k, v in info['builder_kwargs'].items())})")
    print(f"  input:      {info['input_shape']}, {info['num_classes']} classes")
    print(f"  parameters: {info['params']:,} trainable (ours, default configuration)")
    for r in info["paper_results"]:
        extra = f" [{r['note']}]" if "note" in r else ""
        print(
            f"  paper Table {r['table']:>3}: {r['dataset']:14s} top-1 error {r['top1_error']:5.2f}%"
            f"  params {r['params_m']}M{extra}"
        )
    print(f"  weights:    {', '.join(info['weights']) or 'none published yet'}")
    print(f"  notes:      {info['notes']}")


def _gates(args):
    import numpy as np

    from keras_attn_zoo import load
    from keras_attn_zoo.explain import fa_gates

    model = load(args.model, weights=args.weights)
    source = args.weights or "none: random initialisation, so these gates mean nothing yet"
    print(f"{model.name}, weights: {source}; {args.batch} random inputs")
    images = np.random.default_rng(args.seed).uniform(0, 1, (args.batch, *model.input_shape[1:]))
    for name, k in fa_gates(model, images.astype("float32")).items():
        print(f"{name:22s} mean k = {k.mean():.4f}  (min {k.min():.4f}, max {k.max():.4f})")


def _model(name_or_file, weights):
    """A registered model (with ``weights``) or a saved ``.keras`` model; says loudly on stderr
    when the model is randomly initialised."""
    from pathlib import Path

    if str(name_or_file).endswith(".keras"):
        if weights is not None:
            raise ValueError("A .keras file holds its own weights; --weights is for registered names.")
        if not Path(name_or_file).is_file():
            raise FileNotFoundError(f"No such model file: {name_or_file}")
        import keras

        import keras_attn_zoo  # noqa: F401  (registers the layers for deserialization)

        return keras.saving.load_model(name_or_file)
    from keras_attn_zoo import load

    model = load(name_or_file, weights=weights)
    if weights is None:
        print(
            f"WARNING: {model.name} is randomly initialised (no --weights given): its outputs "
            "mean nothing yet.",
            file=sys.stderr,
        )
    return model


def _export(args):
    from keras_attn_zoo.export import export_model

    model = _model(args.model, args.weights)
    report = export_model(
        model, args.output, args.format, quantize=args.quantize,
        representative_images=args.representative_images, batch_size=args.batch_size,
        outputs=args.outputs,
    )
    print(report.summary())
    if not report.ok:
        raise ValueError(f"the exported file does not match Keras ({report.criterion}).")


def _predict(args):
    from keras_attn_zoo.predict import class_names, predict_files

    model = _model(args.model, args.weights)
    names = class_names(model, args.class_names)
    predictions, failed = predict_files(model, args.images, args.top_k, names, args.batch_size)
    for _, message in failed:
        print(f"keras-attn-zoo: skipped: {message}", file=sys.stderr)
    for p in predictions:
        print(f"{p.path}: " + ", ".join(f"{name} {score:.3f}" for name, score in p.top))
    if not predictions:
        raise ValueError(f"no readable image among {', '.join(args.images)}.")


def _explain(args):
    from keras_attn_zoo.explain import explain
    from keras_attn_zoo.explain.plots import require_matplotlib, save_explanation
    from keras_attn_zoo.images import model_image_size, preprocess, read_image
    from keras_attn_zoo.predict import class_names

    require_matplotlib()
    model = _model(args.model, args.weights)
    names = class_names(model, args.class_names)
    height, width, channels = model_image_size(model)
    pixels = read_image(args.image, (height, width), channels)
    result = explain(model, preprocess(pixels[None]), args.class_index, args.layer)
    c = int(result.class_index[0])
    print(f"{args.image}: {names[c] if names else f'class {c}'} {result.scores[0, c]:.3f}; "
          f"Grad-CAM at {result.grad_cam_layer}")
    for name, k in result.fa_gates.items():
        print(f"  {name:22s} FA gate k = {k[0]:.4f}")
    for name, w in result.se_weights.items():
        print(f"  {name:22s} SE weights: mean {w[0].mean():.4f} (min {w[0].min():.4f}, max {w[0].max():.4f})")
    path = save_explanation(args.output, read_image(args.image, channels=channels), result, 0, names)
    print(f"wrote {path}")


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-attn-zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered model names")
    p.add_argument("pattern", nargs="?", help="shell-style pattern, e.g. 'fa_*'")
    p.add_argument("--pretrained", action="store_true", help="only names with published weights")
    p.set_defaults(func=_list)
    p = sub.add_parser("info", help="paper, architecture and parameter counts of a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)
    p = sub.add_parser("gates", help="the FA gates k_i of a model for a batch of inputs")
    p.add_argument("model")
    p.add_argument("--weights", default=None, help="a .weights.h5 path or a published tag")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_gates)

    p = sub.add_parser("export", help="write a SavedModel, TFLite or ONNX file and check it against Keras")
    p.add_argument("model", help="a registered name or a .keras file")
    p.add_argument("--weights", default=None, help="a .weights.h5 path or a published tag")
    p.add_argument("--format", required=True, choices=["savedmodel", "tflite", "onnx"])
    p.add_argument("--quantize", choices=["float16", "dynamic", "int8"], help="TFLite only")
    p.add_argument("--representative-images", metavar="DIR",
                   help="your images: int8 calibration (required for int8) and the parity check")
    p.add_argument("--batch-size", type=int, default=None, help="fixed batch (1 for mobile); dynamic by default")
    p.add_argument("--outputs", nargs="+", default=[], metavar="LAYER[:INDEX]",
                   help="extra named outputs, e.g. '*_fa:1' for every FA gate")
    p.add_argument("-o", "--output", required=True, help="the file to write (a folder for savedmodel)")
    p.set_defaults(func=_export)

    p = sub.add_parser("predict", help="top-k classes of image files")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", required=True, help="a registered name or a .keras file")
    p.add_argument("--weights", default=None, help="a .weights.h5 path or a published tag")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--class-names", default=None, help="a text file with one class name per line")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=_predict)

    p = sub.add_parser("explain", help="Grad-CAM, FA gates and SE weights of one image, as a PNG")
    p.add_argument("image")
    p.add_argument("--model", required=True, help="a registered name or a .keras file")
    p.add_argument("--weights", default=None, help="a .weights.h5 path or a published tag")
    p.add_argument("--layer", default=None, help="the Grad-CAM layer; defaults to the model's")
    p.add_argument("--class-index", type=int, default=None, help="the class to explain; defaults to the top one")
    p.add_argument("--class-names", default=None, help="a text file with one class name per line")
    p.add_argument("-o", "--output", required=True, help="the PNG to write")
    p.set_defaults(func=_explain)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"keras-attn-zoo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
