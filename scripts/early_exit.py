"""Early exit from a PAYA model's attention modules, measured over a sweep of thresholds.

    python scripts/early_exit.py paya_resnet20 --weights cifar10 \\
        --data ../shared/data/cifar10-jpeg.tar.gz -o docs/early_exit_paya_resnet20.md

For each threshold: top-1 on the test split, the share of images leaving at each module (and
going through the full model), the mean analytic multiply-adds and the median CPU latency at
batch 1, against the full model; plus each module's own top-1. Early exit is ours (the papers
describe the idea; no published code implements it): see ``keras_attn_zoo.early_exit``.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a registered PAYA model, e.g. paya_resnet20")
    parser.add_argument("--weights", default=None, help="a published tag or a trained .weights.h5 (default: random, for a dry run)")
    parser.add_argument("--data", required=True, help="the data archive or folder, e.g. cifar10-jpeg.tar.gz")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="a seeded subset of this many images")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--latency-images", type=int, default=100, help="images timed at batch 1 per row (0: no timing)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("-o", "--output", default=None, help="write the markdown table here (and a .json beside it)")
    args = parser.parse_args(argv)

    import keras

    from keras_attn_zoo.data import load_split
    from keras_attn_zoo.early_exit import sweep, sweep_markdown
    from keras_attn_zoo.files import write_page
    from keras_attn_zoo.images import preprocess
    from keras_attn_zoo.registry import load_for_inference
    from keras_attn_zoo.training.trainer import command_line, hardware

    loaded = load_for_inference(args.model, args.weights)
    model = loaded.model
    for note in loaded.notes:
        print(f"WARNING: {note}", file=sys.stderr)
    split = load_split(args.data, args.split, image_size=model.input_shape[1:3], limit=args.limit)
    images, labels = split.arrays()
    images = preprocess(images, loaded.normalization)
    report = sweep(model, images, labels, args.thresholds, args.latency_images, args.batch_size)
    title = (f"Early exit: {model.name} ({args.weights or 'random weights'}), {split.description}")
    command = command_line("python", ["scripts/early_exit.py", *(sys.argv[1:] if argv is None else argv)])
    written = (f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
               f"{hardware()}, {keras.backend.backend()} backend. CPU latency: the median wall time over "
               f"{args.latency_images} images fed one at a time (batch 1) after a warm-up, in this process.")
    text = sweep_markdown(report, title, written)
    print(text)
    if args.output:
        write_page(args.output, text, {"model": model.name, "weights": args.weights, "command": command,
                                       "data": split.description, **report})
    return 0


if __name__ == "__main__":
    sys.exit(main())
