"""A small photo-like folder from the CIFAR-10 JPEG copy, for trying ``finetune`` on data that is
not 32x32: the first images of some classes of its *test* split (which the bundled weights never
trained on), upscaled, as ``OUT/train/<class>/*.jpg`` and ``OUT/val/<class>/*.jpg``.

    python scripts/cifar_photo_folder.py ../shared/data/cifar10-jpeg.tar.gz /tmp/photos5 \\
        --classes airplane cat dog ship truck --train 80 --val 20 --size 128

They are 32x32 images made larger (bilinear), not photos: what they test is the pipeline and
the cost of ``--image-size``, not what a real photo's detail would bring.
"""

import argparse
import io
import tarfile
from pathlib import Path

from PIL import Image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", help="cifar10-jpeg.tar.gz (test/<class>/NNNN.jpg inside)")
    parser.add_argument("output", help="the folder to write (must not exist)")
    parser.add_argument("--classes", nargs="+", default=["airplane", "cat", "dog", "ship", "truck"])
    parser.add_argument("--train", type=int, default=80, help="training images per class")
    parser.add_argument("--val", type=int, default=20, help="validation images per class, after those")
    parser.add_argument("--size", type=int, default=128, help="side of the written images")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the written images")
    args = parser.parse_args(argv)
    out = Path(args.output)
    if out.exists():
        parser.error(f"{out} exists: give a new folder.")
    wanted = args.train + args.val
    counts = {c: 0 for c in args.classes}
    with tarfile.open(args.archive, "r|gz") as tar:
        for member in tar:  # members in archive order: test/<class>/0000.jpg, 0001.jpg ...
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] != "test" or counts.get(parts[1], wanted) >= wanted:
                continue
            cls, index = parts[1], counts[parts[1]]
            folder = out / ("train" if index < args.train else "val") / cls
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
            image.resize((args.size, args.size), Image.BILINEAR).save(folder / parts[2], quality=args.quality)
            counts[cls] += 1
            if min(counts.values()) >= wanted:
                break
    short = {c: n for c, n in counts.items() if n < wanted}
    if short:
        raise SystemExit(f"{args.archive} has too few test images of {short} (unknown class names?).")
    print(f"wrote {out}: {args.train} training and {args.val} validation images per class of {', '.join(args.classes)}, "
          f"{args.size}x{args.size}")


if __name__ == "__main__":
    main()
