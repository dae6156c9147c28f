"""Inference latency / throughput and training images/s: ``keras-attn-zoo benchmark`` as a script.

    python scripts/benchmark.py resnet20 fa_resnet20 --data ../shared/data/cifar10-jpeg.tar.gz \\
        -o docs/benchmarks.md

Run ``python scripts/benchmark.py --help`` for the options; ``keras_attn_zoo.benchmark`` says
what each row times.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_attn_zoo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
