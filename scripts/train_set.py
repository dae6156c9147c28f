"""Train the published depth-20 CIFAR-10 set with one recipe, one run after another.

    python scripts/train_set.py --data ../shared/data/cifar10-jpeg.tar.gz --runs ../runs/set \
        --recipe onecycle --epochs 40 --weight-decay 1e-4

Each run is a ``keras-attn-zoo train`` in its own process (so no model slows the next), in its
own folder ``<runs>/<run>`` with its console log ``<runs>/<run>.log``. Run the same command again
after any stop: finished runs (their training record exists) are skipped, a killed run resumes
from its last checkpoint (the trainer's own resume), and the rest follow. ``--dry-run`` prints
the commands. Every run gets exactly the same recipe arguments; only the model, the seed and the
objective differ, as the table of ``docs/results.md`` needs.

The runs, in order: the mechanisms that have no weights yet first (PAYA, the discriminative-
attention objective), then the second seed of the plain model that states run-to-run spread,
then the mechanisms that replace the earlier 15-epoch weights, and last PAYA with the auxiliary
per-module cross-entropy (ours, not the paper's) that the early-exit table compares.
"""

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (run folder, model name, arguments that differ between runs); the recipe is shared.
RUNS = (
    ("resnet20", "resnet20", ()),
    ("paya_resnet20", "paya_resnet20", ()),
    ("resnet20_dat", "resnet20", ("--objective", "dat")),
    ("resnet20_seed1", "resnet20", ("--seed", "1")),
    ("fa_resnet20", "fa_resnet20", ()),
    ("abn_resnet20", "abn_resnet20", ()),
    ("se_resnet20", "se_resnet20", ()),
    ("fa_se_resnet20", "fa_se_resnet20", ()),
    # PAYA with the per-module cross-entropy (ours, not the paper's), for the early-exit table
    ("paya_resnet20_aux", "paya_resnet20", ("--model-arg", "auxiliary_weight=0.3")),
)
RECIPE_FLAGS = ("recipe", "epochs", "batch_size", "lr", "schedule", "weight_decay", "augmentation")


def commands(args):
    """``(run, log file, argv)`` of each selected run that has not finished."""
    runs = Path(args.runs).resolve()
    data = str(Path(args.data).resolve()) if Path(args.data).exists() else args.data  # or a data set name
    recipe = []
    for flag in RECIPE_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            recipe += [f"--{flag.replace('_', '-')}", str(value)]
    selected = [r for r in RUNS if not args.only or r[0] in args.only]
    unknown = sorted(set(args.only or ()) - {r[0] for r in RUNS})
    if unknown:
        raise SystemExit(f"Unknown run(s) {unknown}; the set is: {', '.join(r[0] for r in RUNS)}.")
    todo = []
    for run, name, extra in selected:
        out = runs / run
        if (out / f"{name}.json").is_file():
            print(f"{run}: finished ({out / f'{name}.json'}), skipped")
            continue
        argv = [sys.executable, "-c", "import sys; from keras_attn_zoo.cli import main; sys.exit(main())",
                "train", name, "--data", data, *recipe, *extra, "--output", str(out), "--verbose", "2"]
        todo.append((run, runs / f"{run}.log", argv))
    return todo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the CIFAR-10 source, e.g. ../shared/data/cifar10-jpeg.tar.gz")
    parser.add_argument("--runs", required=True, help="folder of the run folders and their logs")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--schedule")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--augmentation")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="only these runs of the set")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    todo = commands(args)
    for run, log, command in todo:
        shown = shlex.join(["keras-attn-zoo", *command[3:]])
        print(f"{run}: {shown} >> {log}", flush=True)
        if args.dry_run:
            continue
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as stream:
            code = subprocess.call(command, stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT)
        if code:
            print(f"{run}: exit code {code}; see {log}. Stopping (run again to resume).", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
