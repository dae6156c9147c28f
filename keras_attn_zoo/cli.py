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
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"keras-attn-zoo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
