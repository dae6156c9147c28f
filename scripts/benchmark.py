"""Every system's speed in interleaved rounds of fresh processes: ``keras-attn-zoo benchmark`` as a script.

    python scripts/benchmark.py resnet20 fa_resnet20 --rounds 3 -o speed.md
    python scripts/benchmark.py --preset docs --data ../shared/data/cifar10-jpeg.tar.gz \\
        --json docs/benchmarks.json -o docs/benchmarks.md     # the line docs/benchmarks.md states

Run ``python scripts/benchmark.py --help`` for the options; ``keras_attn_zoo.benchmark_suite``
says how it measures and ``keras_attn_zoo.benchmark_report`` how each number is computed.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_attn_zoo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
