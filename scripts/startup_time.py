"""Start-up time of the command line: wall time of a few commands, each the median of fresh runs.

    python scripts/startup_time.py                                  # this checkout
    python scripts/startup_time.py --before ../before --runs 5 \\
        --output docs/benchmarks.md                                 # against another checkout

Each command runs in a new process through the ``keras-attn-zoo`` entry point beside this Python
(``python -m keras_attn_zoo.cli`` if there is none), with PYTHONPATH at the checkout measured, so
both checkouts share one virtual environment. With ``--before`` the two alternate run by run
(before, after, before, after...), so that a busy spell of a shared machine hits both alike.
``predict`` of one image ends when its one prediction is printed: its wall time is the time from
command to first prediction (Python and backend start-up, model build, weights, one forward pass).
"""

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from keras_attn_zoo.benchmark_report import write_section  # noqa: E402  (imports no Keras)

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- startup:start -->", "<!-- startup:end -->"
COMMANDS = (
    ("--help",),
    ("info", "resnet20"),
    ("predict", "docs/images/cat.jpg", "--model", "fa_resnet20", "--weights", "cifar10"),
)


def entry_point():
    script = Path(sys.executable).with_name("keras-attn-zoo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "keras_attn_zoo.cli"]


def run_once(checkout, command):
    """Seconds one ``keras-attn-zoo COMMAND`` takes with the package of ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    result = subprocess.run([*entry_point(), *command], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed in {checkout}:\n{result.stderr[-2000:]}")
    return seconds


def measure(checkouts, runs):
    """``{(label, command): [seconds...]}``, the checkouts alternating within each round."""
    times = {}
    for _ in range(runs):
        for command in COMMANDS:
            for label, checkout in checkouts:
                times.setdefault((label, command), []).append(run_once(checkout, command))
    return times


def cpu_busy(seconds=1.0):
    """The share of the machine's CPU time spent busy over ``seconds`` (from /proc/stat), or None."""
    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def report(times, labels, runs, argv, busy):
    lines = [
        f"Written by `python scripts/startup_time.py {shlex.join(argv)}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{os.cpu_count()} shared CPU cores ({platform.processor() or platform.machine()}, a noisy shared VM; "
        + (f"CPU {busy:.0%} busy just before the runs" if busy is not None else "CPU load unknown")
        + f"), Python {platform.python_version()}, TensorFlow backend. Each cell is the median wall time "
        f"of {runs} fresh processes (min-max in brackets), the checkouts alternating run by run.",
        "",
        "| command | " + " | ".join(labels) + " |",
        "| --- | " + " | ".join("---:" for _ in labels) + " |",
    ]
    for command in COMMANDS:
        cells = []
        for label in labels:
            t = times[(label, command)]
            cells.append(f"{statistics.median(t):.2f} s ({min(t):.2f}-{max(t):.2f})")
        lines.append(f"| `keras-attn-zoo {shlex.join(command)}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="another checkout of the repository to compare with (e.g. main)")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command and checkout")
    parser.add_argument("-o", "--output", help="write the section into this markdown file (e.g. docs/benchmarks.md)")
    args = parser.parse_args()
    checkouts = ([("before", Path(args.before).resolve())] if args.before else []) + [("after" if args.before else "this checkout", ROOT)]
    busy = cpu_busy()
    times = measure(checkouts, args.runs)
    section = report(times, [label for label, _ in checkouts], args.runs, sys.argv[1:], busy)
    print(section)
    if args.output:
        write_section(args.output, section, "## Start-up time", (START, END))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
