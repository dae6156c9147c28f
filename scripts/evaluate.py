"""Top-1 / top-5 of weights on a data split: ``keras-attn-zoo evaluate`` as a script.

    python scripts/evaluate.py resnet20 --weights runs/resnet20/resnet20.weights.h5 \\
        --data path/to/cifar10-jpeg.tar.gz
    python scripts/evaluate.py resnet20 --weights cifar10 --data ... --record  # updates docs/results.md

Run ``python scripts/evaluate.py --help`` for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_attn_zoo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
