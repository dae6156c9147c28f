"""``keras-attn-zoo benchmark``: every system of every model, each in a fresh process, in
interleaved rounds, with the CPU's load recorded; ``benchmark_report`` turns the result into
markdown.

How it measures:

1. **Prepare** (one fresh TensorFlow process per model): one set of seeded random weights, the
   exports and the PyTorch reference's state dict (``keras_attn_zoo.benchmark.prepare``), each
   checked against the Keras model.
2. **Rounds**: the cells (``peak``, then per model each inference system, training system and
   objective) run in the same order in every round, A, B, C, A, B, C, ...
   (:func:`schedule`), so that a busy spell of a shared machine hits all of them alike; each
   cell is one fresh process (``keras-attn-zoo benchmark-worker``: no model slows the next, and
   the JAX and PyTorch backends get their own ``KERAS_BACKEND``). Before each cell the runner can
   wait for a quiet CPU (``quiet``); during it, ``cpuload.CpuWindow`` records the steal, the
   nice share (background jobs at nice 19) and what other processes used.
3. Each cell reports its timed calls per batch; the report takes each round's median, then the
   median over rounds with the rounds' min-max.

The result is one JSON-serialisable dict (the *measurement*), which ``-o FILE.json`` keeps, so
the report can be written again without measuring (``--from-json``).
"""

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

from keras_attn_zoo.cpuload import CpuWindow, busy_now, wait_for_quiet
from keras_attn_zoo.model_index import MODELS

# system -> what it times (the report's words)
INFERENCE_SYSTEMS = {
    "keras-tf": "Keras 3 on TensorFlow: `model.predict_on_batch` (Keras' predict function, a `tf.function`; no XLA on a CPU)",
    "keras-tf-xla": "Keras 3 on TensorFlow: the model called in `tf.function(jit_compile=True)` (XLA-compiled)",
    "keras-jax": "Keras 3 on JAX (`KERAS_BACKEND=jax`): `predict_on_batch` (`jax.jit`)",
    "keras-torch": "Keras 3 on PyTorch (`KERAS_BACKEND=torch`): `predict_on_batch` (eager, no gradients)",
    "onnxruntime": "the ONNX export (`keras-attn-zoo export --format onnx`) in onnxruntime's CPU provider",
    "tflite": "the float32 TFLite export in ai-edge-litert's interpreter, one thread per core",
    "tflite-int8": "the int8 TFLite export (weights and activations; float32 input and output) in ai-edge-litert, one thread per core",
    "torch-reference": "the PyTorch reference of the same architecture with the same weights (see References), eval mode, `torch.inference_mode`",
}
TRAINING_SYSTEMS = {
    "keras-tf": "a Keras training step on TensorFlow as the trainer runs it: `CoupledSGD` (lr 0.01, Nesterov momentum 0.9, coupled weight decay 5e-4), cross-entropy from logits (ABN: plus the attention branch's; PAYA: its own loss), `fit` on normalised arrays",
    "torch-reference": "the PyTorch reference's step: `torch.optim.SGD` with the same settings, `CrossEntropyLoss` (ABN: both branches'), BatchNorm in training mode",
}
# how a keras-tf training cell is fed (``--modes``; benchmark.training runs them)
TRAINING_MODES = {
    "model": "the bare model on normalised float arrays",
    "wrapper": "the trainer's `images -> augmentation -> normalisation -> model` on uint8 arrays",
    "pipeline": "the wrapper fed by the trainer's own batches (a `PyDataset`)",
    "trainer": "`training.train` itself: its epoch as its log times it (the steps, the validation on a fifth as "
               "many test images as it trains on, CIFAR's proportion), over its steps",
}
# system -> the objective modes (benchmark.OBJECTIVE_MODES) it runs: TensorFlow refuses the second
# order through BatchNormalization, JAX computes it
OBJECTIVE_SYSTEMS = {"keras-tf": ("cross_entropy", "dat"), "keras-jax": ("cross_entropy", "dat", "dat_second_order")}
BACKENDS = {"keras-jax": "jax", "keras-torch": "torch"}  # others run on TensorFlow (or none)
RESULT = "BENCHMARK-RESULT "  # the line a worker ends with
DOCS_MODELS = ("resnet20", "se_resnet20", "fa_resnet20", "fa_se_resnet20", "abn_resnet20", "paya_resnet20",
               "abn_resnet56", "abn_resnet110", "abn_resnet152")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One measurement of a round: ``kind`` "peak", "inference", "training" or "objective"."""

    kind: str
    model: str = ""
    system: str = ""
    mode: str = ""

    @property
    def label(self):
        return " ".join(part for part in (self.kind, self.model, self.system, self.mode) if part)


def plan(models, systems=tuple(INFERENCE_SYSTEMS), kinds=("inference",), training_systems=tuple(TRAINING_SYSTEMS),
         training_models=None, modes=("model",)):
    """The cells of one round, in the order every round runs them: the peak, then per model its
    inference systems, training systems (``training_models``: default all) and objectives.

    Raises:
        ValueError: for an unknown kind or system, naming the known ones.
    """
    for kind in kinds:
        if kind not in ("inference", "training", "objective"):
            raise ValueError(f"Unknown benchmark kind {kind!r}; expected inference, training or objective.")
    for given, known in ((systems, INFERENCE_SYSTEMS), (training_systems, TRAINING_SYSTEMS)):
        unknown = [s for s in given if s not in known]
        if unknown:
            raise ValueError(f"Unknown systems {unknown}; expected some of {list(known)}.")
    cells = [Cell("peak")]
    for model in models:
        if "inference" in kinds:
            cells += [Cell("inference", model, system) for system in systems]
        if "training" in kinds and (training_models is None or model in training_models):
            for system in training_systems:
                cells += [Cell("training", model, system, mode) for mode in (modes if system == "keras-tf" else ("model",))]
        if "objective" in kinds:
            cells += [Cell("objective", model, system, mode) for system, modes in OBJECTIVE_SYSTEMS.items()
                      for mode in modes]
    return cells


def schedule(cells, rounds):
    """``[(round, cell)]``: every round runs all cells in the same order (A, B, C, A, B, C...)."""
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}.")
    return [(r, cell) for r in range(1, rounds + 1) for cell in cells]


def worker_command(task):
    """The fresh process that runs one task: the command line's hidden worker."""
    return [sys.executable, "-m", "keras_attn_zoo.cli", "benchmark-worker", json.dumps(task)]


def thread_environment(threads):
    """Environment variables that give the OpenMP, MKL, OpenBLAS and XLA thread pools of a fresh
    process ``threads`` threads (the worker sets TensorFlow's, PyTorch's, onnxruntime's and
    TFLite's own); empty for None (every runtime's default)."""
    if threads is None:
        return {}
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} "
                         f"intra_op_parallelism_threads={n}"}


def run_worker(task, backend="tensorflow", timeout=None, log=print):
    """Run one task in a fresh process (``KERAS_BACKEND=backend``, the task's ``threads``) and
    return its result: the JSON its last ``BENCHMARK-RESULT`` line holds; the worker's other
    output goes to ``log``.

    Raises:
        RuntimeError: when the worker fails or gives no result, with the end of its stderr.
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           **thread_environment(task.get("threads"))}
    try:
        proc = subprocess.run(worker_command(task), capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"the {task['task']} worker took longer than {timeout} s") from e
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
        elif line.strip():
            log(f"  {line}")
    if proc.returncode != 0 or result is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise RuntimeError(f"the {task['task']} worker failed (exit {proc.returncode}): {tail}")
    return result


def versions():
    """Versions of Python and of the packages the systems run on (installed ones only)."""
    found = {"python": platform.python_version()}
    for package in ("keras", "tensorflow", "tensorflow-cpu", "jax", "torch", "onnxruntime", "ai-edge-litert",
                    "tf2onnx", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def machine():
    """The machine in words: CPU model, the cores this process may use, whether it is a VM."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    simd = [f for f in ("avx512f", "avx2", "fma") if f" {f}" in flags]
    virtual = " hypervisor" in flags
    return {"cpu": model, "cores": cores, "simd": simd, "virtual_machine": virtual,
            "kernel": platform.release(), "nice": os.nice(0)}


@dataclasses.dataclass
class Settings:
    """What the runner measures and how (the ``benchmark`` command's options)."""

    models: tuple
    systems: tuple = tuple(INFERENCE_SYSTEMS)
    kinds: tuple = ("inference", "training")
    training_systems: tuple = tuple(TRAINING_SYSTEMS)
    training_models: tuple | None = None
    modes: tuple = ("model",)
    batch_sizes: tuple = (1, 128)
    rounds: int = 3
    repeats: int = 10
    warmup: int = 2
    max_seconds: float | None = 20.0
    train_batch_size: int = 128
    steps: int = 5
    data: str | None = None
    data_dir: str | None = None
    quiet: float | None = None
    quiet_timeout: float = 600.0
    cell_timeout: float | None = 3600.0
    model_batch_sizes: dict = dataclasses.field(default_factory=dict)
    threads: int | None = None

    def batches_for(self, model):
        return tuple(self.model_batch_sizes.get(model, self.batch_sizes))


def _task(cell, settings, info):
    base = {"model": cell.model, "image_shape": info["input_shape"] if info else None, "threads": settings.threads,
            "repeats": settings.repeats, "warmup": settings.warmup, "max_seconds": settings.max_seconds}
    if cell.kind == "peak":
        return {"task": "peak", "threads": settings.threads}
    if cell.kind == "inference":
        return {**base, "task": "inference", "system": cell.system, "batches": settings.batches_for(cell.model),
                "weights": info["weights"], "file": info["files"].get(cell.system),
                "reference": (info["reference"] or {}).get("config")}
    return {**base, "task": cell.kind, "system": cell.system, "mode": cell.mode, "batch": settings.train_batch_size,
            "steps": settings.steps, "data": settings.data, "data_dir": settings.data_dir,
            "reference": (info["reference"] or {}).get("config")}


def _skip_reason(cell, info):
    """Why a cell cannot run (a system without its file), or None."""
    if cell.kind == "peak":
        return None
    if cell.system == "torch-reference" and not info["reference"]["config"]:
        return f"no reference ({info['reference']['description']})"
    error = info["checks"].get(cell.system, {}).get("error")
    if cell.kind == "inference" and error:
        return f"no file: the export failed ({error})"
    return None


def recheck(measurement, log=print, runner=run_worker, workdir=None):
    """Export every model of a saved measurement again and replace its checks (not its times).

    The exports are made as :func:`run` made them (same seeded weights, systems and
    calibration data), by the code installed now: after a change to the export's parity
    criterion, the page then reports what today's code finds, while the timings stay those
    that were measured. ``measurement["rechecked"]`` records when; the report says so.
    """
    import tempfile

    settings = measurement["settings"]
    needs = {s for s in settings["systems"] if "inference" in settings["kinds"]}
    if "training" in settings["kinds"]:
        needs |= set(settings["training_systems"])
    with tempfile.TemporaryDirectory(prefix="keras-attn-zoo-recheck-") as tmp:
        root = workdir or tmp
        for model, info in measurement["models"].items():
            log(f"benchmark: re-exporting {model} for its checks")
            task = {"task": "prepare", "model": model, "dir": os.path.join(root, model), "systems": sorted(needs),
                    "data": settings["data"], "data_dir": settings["data_dir"]}
            info["checks"] = runner(task, "tensorflow", settings["cell_timeout"], log)["checks"]
    measurement["rechecked"] = {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": versions()}
    return measurement


def run(settings, command="", log=print, runner=run_worker, workdir=None):
    """Prepare every model, then run the rounds; returns the measurement (see the module doc).

    Args:
        settings: a :class:`Settings`.
        command: the command line, for the report.
        log: where progress goes. Defaults to ``print``.
        runner: ``runner(task, backend, timeout, log) -> result`` (default :func:`run_worker`).
        workdir: where the prepared files go. Defaults to a temporary folder, removed after.
    """
    import tempfile

    for model in settings.models:
        if model not in MODELS:
            raise ValueError(f"Unknown model name {model!r}: see `keras-attn-zoo list`.")
    cells = plan(settings.models, settings.systems, settings.kinds, settings.training_systems,
                 settings.training_models, settings.modes)
    measurement = {
        "command": command, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(), "versions": versions(), "settings": dataclasses.asdict(settings),
        "load_before": busy_now(2.0), "models": {}, "results": [],
        # how a training cell's step seconds are summarised (measurements saved without this field:
        # each Keras cell had one value, its timed epoch over its steps, and the report took means)
        "step_statistic": "median",
    }
    with tempfile.TemporaryDirectory(prefix="keras-attn-zoo-benchmark-") as tmp:
        root = workdir or tmp
        needs = {s for s in settings.systems if "inference" in settings.kinds}
        if "training" in settings.kinds:
            needs |= set(settings.training_systems)
        for model in settings.models:
            log(f"benchmark: preparing {model} (weights, exports, reference)")
            task = {"task": "prepare", "model": model, "dir": os.path.join(root, model), "systems": sorted(needs),
                    "data": settings.data, "data_dir": settings.data_dir}
            measurement["models"][model] = runner(task, "tensorflow", settings.cell_timeout, log)
        for r, cell in schedule(cells, settings.rounds):
            info = measurement["models"].get(cell.model)
            entry = {"round": r, **dataclasses.asdict(cell)}
            reason = _skip_reason(cell, info)
            if reason:
                measurement["results"].append({**entry, "skipped": reason})
                continue
            if settings.quiet is not None:
                entry["waited_s"], entry["load_before"] = wait_for_quiet(settings.quiet, settings.quiet_timeout, log=log)
            log(f"benchmark: round {r}/{settings.rounds}: {cell.label}")
            with CpuWindow() as window:
                try:
                    entry["result"] = runner(_task(cell, settings, info), BACKENDS.get(cell.system, "tensorflow"),
                                             settings.cell_timeout, log)
                except RuntimeError as e:
                    entry["error"] = str(e)
                    log(f"benchmark: {cell.label}: {e}")
            entry["cpu"] = window.shares
            measurement["results"].append(entry)
    measurement["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return measurement
