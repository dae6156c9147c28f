"""What the discriminative-attention objective changes: the overlap of the true class's and the most
confusing class's attention maps, for several weights of one model, on the same labelled images.

    python scripts/dat_overlap.py resnet20 --weights cifar10 cifar10_seed1 cifar10_dat \\
        --data ../shared/data/cifar10-jpeg.tar.gz -o docs/dat_overlap_resnet20.md

For each weights: top-1, the mean soft IoU of the two classes' gradient maps at the inner and the
last layer (Eq. 6, masked as in training: what the objective lowers), and the mean consistency term
L_ac (Eq. 8), each with its standard error over the images. Weights trained without the objective
give its baseline. See ``keras_attn_zoo.explain.discriminative.overlap_summary``.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def markdown(title, written, rows):
    """The table of ``rows`` (``(weights, summary)``) under ``title`` and the ``written`` line."""
    first = rows[0][1]
    lines = [f"# {title}", "", written, "",
             f"Maps at `{first['inner_layer']}` (inner) and `{first['last_layer']}` (last), of each image's true class "
             "and of its highest-scoring other class; lower soft IoU is less overlap. Means over the images, "
             "± their standard error.", "",
             "| weights | top-1 | soft IoU, inner | soft IoU, last | L_ac |", "| --- | ---: | ---: | ---: | ---: |"]
    for weights, s in rows:
        cells = " | ".join(f"{s[k]['mean']:.4f} ± {s[k]['sem']:.4f}" for k in ("soft_iou_inner", "soft_iou_last",
                                                                             "consistency"))
        lines.append(f"| {weights} | {100 * s['top1']:.2f}% | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a registered classifier, e.g. resnet20")
    parser.add_argument("--weights", nargs="+", required=True,
                        help="published tags or trained .weights.h5 files of that model, e.g. cifar10 cifar10_dat")
    parser.add_argument("--data", required=True, help="the data archive or folder, e.g. cifar10-jpeg.tar.gz")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="a seeded subset of this many images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("-o", "--output", default=None, help="write the markdown table here (and a .json beside it)")
    args = parser.parse_args(argv)

    import keras

    from keras_attn_zoo.data import load_split
    from keras_attn_zoo.explain.discriminative import overlap_summary
    from keras_attn_zoo.files import write_page
    from keras_attn_zoo.images import preprocess
    from keras_attn_zoo.registry import load_for_inference
    from keras_attn_zoo.training.trainer import command_line, hardware

    rows, split = [], None
    for weights in args.weights:
        loaded = load_for_inference(args.model, weights)
        for note in loaded.notes:
            print(f"WARNING: {note}", file=sys.stderr)
        if split is None:  # the same images for every weights
            split = load_split(args.data, args.split, image_size=loaded.model.input_shape[1:3], limit=args.limit)
            images, labels = split.arrays()
        print(f"{args.model} ({weights}): {split.description}", file=sys.stderr)
        summary = overlap_summary(loaded.model, preprocess(images, loaded.normalization), labels, args.batch_size,
                                  progress=True)
        rows.append((weights, summary))
    description = split.description
    command = command_line("python", ["scripts/dat_overlap.py", *(sys.argv[1:] if argv is None else argv)])
    written = (f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {hardware()}, "
               f"{keras.backend.backend()} backend; {description}.")
    text = markdown(f"Attention overlap of the true and the most confusing class: {args.model}", written, rows)
    print(text)
    if args.output:
        write_page(args.output, text, {"model": args.model, "command": command, "data": description,
                                       "rows": [{"weights": w, **s} for w, s in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
