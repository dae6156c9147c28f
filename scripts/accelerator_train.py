"""Train a registry model on one accelerator with JAX, data and augmentation on the device, in
sessions of a few minutes that add up to one recipe (``keras_attn_zoo.training.device_loop``).

    KERAS_BACKEND=jax python scripts/accelerator_train.py resnet56 --recipe fanet_cifar \\
        --data .data/cifar10-jpeg.tar.gz --output "$OUT" --time-limit 480
    # later, with the checkpoint the first session left:
    KERAS_BACKEND=jax python scripts/accelerator_train.py resnet56 --recipe fanet_cifar \\
        --data .data/cifar10-jpeg.tar.gz --output "$OUT" --time-limit 480 \\
        --resume .data/resume/resnet56.checkpoint-0090-1of1.npz

On the lent GPU machine, ``scripts/accelerator_train.sh`` installs the carried wheels first; how
to prepare what it carries and the exact call: docs/accelerator.md. Needs no TensorFlow. Exit
status: 0 when the run finished (weights and record written), 3 when the session stopped with a
checkpoint before the time limit (resume it), 2 on an error.
"""

import argparse
import sys
import time
from pathlib import Path

STARTED = time.monotonic()  # the time limit counts from here: imports and data decoding included
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STOPPED_WITH_CHECKPOINT = 3
LENT_FILE_MIB = 16  # the largest file a lent machine brings back from $OUT
# A call carries 64 MiB: the working tree (~9), the archive (19.6) and the wheels (~3) leave ~32
# for the checkpoint of the session before.
LENT_CHECKPOINT_MIB = 32


def parser():
    from keras_attn_zoo.training.recipes import RECIPES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="a registry model, e.g. resnet56")
    p.add_argument("--data", required=True, help="the CIFAR-10 archive (or any in-memory load_split source)")
    p.add_argument("--recipe", default="fanet_cifar", choices=sorted(RECIPES))
    p.add_argument("--output", required=True, help="where the checkpoint, log, weights and record go ($OUT)")
    p.add_argument("--resume", help="a checkpoint (NAME.checkpoint.npz) of an earlier session of this run")
    p.add_argument("--time-limit", type=float,
                   help="seconds this process may run: it stops with a checkpoint before an epoch that would overrun")
    p.add_argument("--checkpoint-every", type=int, default=2, help="epochs between checkpoints (default 2)")
    p.add_argument("--mixed-precision", choices=("bfloat16",), help="bfloat16 compute, float32 variables")
    p.add_argument("--max-file-mib", type=float, default=LENT_FILE_MIB,
                   help=f"the largest file: refuse a model whose weight file would be larger, cut the checkpoint into "
                        f"parts no larger (default {LENT_FILE_MIB}, what a lent machine brings back; 0: no limit)")
    p.add_argument("--max-checkpoint-mib", type=float, default=LENT_CHECKPOINT_MIB,
                   help=f"refuse a model whose checkpoint would be larger in all (default {LENT_CHECKPOINT_MIB}, what a "
                        "call can carry in beside the data; 0: no limit)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--limit", type=int, help="train on a seeded subset of this many images")
    p.add_argument("--eval-limit", type=int, help="validate and measure on a seeded subset of this many test images")
    p.add_argument("--eval-batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--commit", help="the code's commit for the record (default: git's; a copy without .git has none)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    from keras_attn_zoo.training.device_loop import train_on_device
    from keras_attn_zoo.training.trainer import command_line

    try:
        result = train_on_device(
            args.name, args.data, args.recipe, output_dir=args.output, resume=args.resume, limit=args.limit,
            eval_limit=args.eval_limit, seed=args.seed, mixed_precision=args.mixed_precision,
            checkpoint_every=args.checkpoint_every,
            deadline=None if args.time_limit is None else STARTED + args.time_limit,
            max_file_bytes=int(args.max_file_mib * 2**20) or None,
            max_checkpoint_bytes=int(args.max_checkpoint_mib * 2**20) or None, eval_batch_size=args.eval_batch_size,
            command=command_line("python", ["scripts/accelerator_train.py", *argv]), commit=args.commit,
            epochs=args.epochs, batch_size=args.batch_size,
        )
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"accelerator_train: error: {e}", file=sys.stderr)
        return 2
    return 0 if result["finished"] else STOPPED_WITH_CHECKPOINT


if __name__ == "__main__":
    sys.exit(main())
