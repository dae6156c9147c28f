"""Attention overhead on a busy machine: each mechanism's cost over its plain twin in CPU time.

    python scripts/attention_overhead.py                         # this checkout, the depth-20 set
    python scripts/attention_overhead.py --before ../before      # against another checkout
    python scripts/attention_overhead.py --profile               # onnxruntime's time per operator type

Wall time on a shared 2-core machine measures the neighbours as much as the model, so this
compares graphs by the CPU time one thread spends per call (``time.process_time``; TensorFlow
and onnxruntime each limited to one thread): Keras' ``predict_on_batch`` on TensorFlow and the
ONNX export in onnxruntime, at batch 1 (50 calls) and 128 (3 calls) per round after two untimed
calls each, every model of a
round in one fresh process, rounds alternating between the checkouts. Each cell is the median
over rounds; the overhead is a model's over its plain twin's (``resnet20``), beside the
multiply-adds' (``keras_attn_zoo.flops``). Weights are seeded random, the same in both checkouts.
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("resnet20", "se_resnet20", "fa_resnet20", "fa_se_resnet20", "abn_resnet20", "paya_resnet20")
BATCHES = {1: 50, 128: 3}  # batch -> calls timed per round (after two untimed ones)


def worker(names, workdir, profile):
    """One round in this process: ``{name: {"tf": {batch: s}, "ort": {batch: s}, "macs": n}}``."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import onnxruntime as ort

    import keras_attn_zoo as zoo
    from keras_attn_zoo.export import export_model
    from keras_attn_zoo.flops import count_macs

    result = {}
    for name in names:
        keras.utils.set_random_seed(0)
        model = zoo.load(name)
        path = Path(workdir) / f"{name}.onnx"
        if not path.is_file():
            export_model(model, path, "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_profiling = profile
        options.profile_file_prefix = str(Path(workdir) / f"{name}_profile")  # not into the current folder
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        times = {"tf": {}, "ort": {}, "macs": count_macs(model), "params": zoo.count_trainable(model)}
        for batch, calls in BATCHES.items():
            x = np.random.default_rng(0).standard_normal((batch, 32, 32, 3)).astype("float32")
            for system, run in (("tf", lambda: model.predict_on_batch(x)), ("ort", lambda: session.run(None, {feed: x}))):
                run()
                run()
                start = time.process_time()
                for _ in range(calls):
                    run()
                times[system][batch] = (time.process_time() - start) / calls
        if profile:
            profile_file = Path(session.end_profiling())
            events = json.loads(profile_file.read_text())
            profile_file.unlink()
            by_type = collections.Counter()
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    by_type[e["args"]["op_name"]] += e["dur"]
            times["profile"] = dict(by_type.most_common())
        result[name] = times
    return result


def run_round(checkout, names, workdir, profile=False):
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [sys.executable, __file__, "--worker", workdir, *(["--profile"] if profile else []), *names]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=checkout)
    if proc.returncode != 0:
        raise RuntimeError(f"the round in {checkout} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rounds, label):
    names = list(rounds[0])
    base = names[0]
    med = lambda name, system, batch: statistics.median(r[name][system][str(batch)] for r in rounds)  # noqa: E731
    lines = [f"{label}: CPU ms per call, one thread (overhead over {base}); multiply-adds' overhead",
             "| model | multiply-adds | TF batch 1 | TF batch 128 | onnxruntime batch 1 | onnxruntime batch 128 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in names:
        cells = []
        for system in ("tf", "ort"):
            for batch in BATCHES:
                t, t0 = med(name, system, batch), med(base, system, batch)
                cells.append(f"{1000 * t:.2f} ({100 * (t / t0 - 1):+.0f}%)")
        flops = 100 * (rounds[0][name]["macs"] / rounds[0][base]["macs"] - 1)
        lines.append(f"| `{name}` | {flops:+.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(MODELS), help="the plain twin first (default: the depth-20 set)")
    parser.add_argument("--before", help="another checkout to compare with, round by round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="also onnxruntime's time per operator type (one round)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.names, args.worker, args.profile)))
        return 0
    checkouts = ([("before", Path(args.before).resolve())] if args.before else []) + [("this checkout", ROOT)]
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {label: tempfile.mkdtemp(dir=tmp) for label, _ in checkouts}
        rounds = {label: [] for label, _ in checkouts}
        for r in range(args.rounds):
            for label, checkout in checkouts:
                rounds[label].append(run_round(checkout, args.names, dirs[label]))
                print(f"round {r + 1}/{args.rounds}: {label}", file=sys.stderr)
        print(f"`python scripts/attention_overhead.py {' '.join(sys.argv[1:])}`, {args.rounds} rounds\n")
        for label, _ in checkouts:
            print(table(rounds[label], label) + "\n")
        if args.profile:
            profiled = run_round(ROOT, args.names, dirs[checkouts[-1][0]], profile=True)
            for name, times in profiled.items():
                total = sum(times["profile"].values())
                print(f"{name}: onnxruntime, batch 1 x 50 and 128 x 3 with warm-ups, {total / 1000:.0f} ms of operators: "
                      + ", ".join(f"{op} {100 * t / total:.1f}%" for op, t in times["profile"].items() if t / total >= 0.005))
    return 0


if __name__ == "__main__":
    sys.exit(main())
