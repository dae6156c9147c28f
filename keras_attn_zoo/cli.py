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


def _split_name_tag(text):
    name, _, tag = text.partition(":")
    return name, tag or None


def _train(args):
    if args.cpu_devices:
        from keras_attn_zoo.training import configure_cpu_devices

        configure_cpu_devices(args.cpu_devices)
    from keras_attn_zoo.training import train
    from keras_attn_zoo.training.trainer import command_line

    milestones = [int(m) for m in args.milestones.split(",") if m] if args.milestones is not None else None
    train(
        args.name, args.data, args.recipe, output_dir=args.output, limit=args.limit,
        eval_limit=args.eval_limit, image_size=args.image_size, data_dir=args.data_dir,
        manual_dir=args.manual_dir, strategy=args.strategy, tpu=args.tpu,
        mixed_precision=args.mixed_precision, seed=args.seed, init_weights=args.init_weights,
        overwrite=args.overwrite, verbose="auto" if args.verbose is None else args.verbose,
        command=command_line("keras-attn-zoo", args.argv),
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        schedule=args.schedule, milestones=milestones, weight_decay=args.weight_decay,
        augmentation=args.augmentation,
    )


def _evaluate(args):
    from keras_attn_zoo.training import evaluate, write_results
    from keras_attn_zoo.training.evaluate import record_accuracy
    from keras_attn_zoo.training.trainer import command_line
    from keras_attn_zoo.weights import is_path

    result = evaluate(args.name, args.weights, args.data, args.split, batch_size=args.batch_size,
                      limit=args.limit, data_dir=args.data_dir, manual_dir=args.manual_dir)
    print(f"{args.name} ({args.weights}) on {result['data']}: top-1 {result['top1']:.4f} "
          f"(error {result['top1_error']:.2f}%), top-5 {result['top5']:.4f}")
    if args.record:
        if is_path(args.weights):
            raise ValueError("--record stores a measurement of published weights: pass a tag, not a file.")
        record_accuracy(args.name, args.weights, result, command_line("keras-attn-zoo", args.argv),
                        args.manifest)
        print(f"recorded in {args.manifest or 'weights/manifest.json'}; wrote {write_results(args.results, args.manifest)}")


def _publish(args):
    from keras_attn_zoo.training import write_results
    from keras_attn_zoo.weights import publish

    row = publish(args.weights_file, args.tag, manifest=args.manifest, overwrite=args.overwrite, url=args.url)
    print(f"published {row['model']}:{row['tag']} as {row['file']} ({row['size']:,} bytes, sha256 "
          f"{row['sha256']}), top-1 error {row['accuracy']['top1_error']:.2f}% on {row['accuracy']['data']}")
    print(f"wrote {write_results(args.results, args.manifest)}")


def _download(args):
    from keras_attn_zoo.weights import download

    print(download(*_split_name_tag(args.spec)))


def _add_train_parser(sub):
    from keras_attn_zoo.training.distribute import STRATEGIES
    from keras_attn_zoo.training.recipes import RECIPES, SCHEDULES

    p = sub.add_parser("train", help="train a model with a paper's recipe; writes a .weights.h5 and its record")
    p.add_argument("name")
    p.add_argument("--data", required=True, help="folder, archive, 'cifar10-jpeg' or a tensorflow-datasets name")
    p.add_argument("--recipe", default="fanet_cifar", choices=sorted(RECIPES))
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="initial / peak learning rate")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--milestones", help="comma-separated epochs of the step schedule, e.g. 60,120,180")
    p.add_argument("--weight-decay", type=float, help="coupled L2 (PyTorch's weight_decay)")
    p.add_argument("--augmentation", choices=("cifar", "imagenet", "flip", "none"))
    p.add_argument("--output", help="run folder (default runs/NAME); the same command resumes a killed run")
    p.add_argument("--limit", type=int, help="train on a seeded subset of this many images")
    p.add_argument("--eval-limit", type=int, help="validate and measure on a subset of this many test images")
    p.add_argument("--image-size", type=int, help="model input side (default: the model's, 224 for ImageNet)")
    p.add_argument("--data-dir", help="folder of local archives (default $KERAS_ATTN_ZOO_DATA), or tfds' data_dir")
    p.add_argument("--manual-dir", help="tensorflow-datasets manual folder (ImageNet tar files)")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    p.add_argument("--tpu", help="TPU name for --strategy tpu")
    p.add_argument("--cpu-devices", type=int, help="split the CPU into N logical devices (testing distribution)")
    p.add_argument("--mixed-precision", choices=("float16", "bfloat16"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-weights", help="start from these weights (tag or path)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in the output folder")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), help="1: progress bar, 2: a line per epoch")
    p.set_defaults(func=_train)


def _add_weights_parsers(sub):
    p = sub.add_parser("evaluate", help="top-1 / top-5 of weights on a data split")
    p.add_argument("name")
    p.add_argument("--weights", required=True, help="a published tag or a trained .weights.h5")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int, help="a seeded subset of this many images")
    p.add_argument("--data-dir")
    p.add_argument("--manual-dir")
    p.add_argument("--record", action="store_true",
                   help="store the measurement in the manifest row and rewrite the results page")
    p.add_argument("--manifest", help="manifest to record in (default weights/manifest.json)")
    p.add_argument("--results", help="results page to write (default docs/results.md)")
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("publish", help="copy trained weights into weights/, hash them, write the manifest row")
    p.add_argument("weights_file", help="a .weights.h5 written by `keras-attn-zoo train`")
    p.add_argument("--tag", required=True, help="e.g. cifar10")
    p.add_argument("--manifest", help="default weights/manifest.json")
    p.add_argument("--results", help="results page to write (default docs/results.md)")
    p.add_argument("--url", help="where the file will be downloadable from")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_publish)
    p = sub.add_parser("download", help="fetch and verify published weights into the cache")
    p.add_argument("spec", metavar="NAME[:TAG]")
    p.set_defaults(func=_download)


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
    _add_train_parser(sub)
    _add_weights_parsers(sub)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        args.func(args)
    except (ValueError, OSError, ImportError) as e:
        print(f"keras-attn-zoo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
