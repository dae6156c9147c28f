"""Train a registry model with a paper's recipe: ``keras-attn-zoo train`` as a script.

    python scripts/train.py resnet20 --data path/to/cifar10-jpeg.tar.gz --epochs 1

Run ``python scripts/train.py --help`` for the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_attn_zoo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
