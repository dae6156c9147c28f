"""Speed of registry models in this process: what ``keras-attn-zoo benchmark`` runs in each of
its fresh processes (``keras_attn_zoo/benchmark_suite.py`` runs them in interleaved rounds).

:func:`prepare` writes, once per model and with one set of random weights, what every system
needs (the weights file, the ONNX and TFLite exports, the PyTorch reference's state dict) and
checks that each computes the Keras model's function; :func:`keras_inference` times the Keras
model on the current backend. The measurements below are each the median of repeated timings
after a warm-up (tracing and first-call costs excluded):

| kind | what is timed |
| --- | --- |
| ``inference`` | ``predict_on_batch`` (the compiled predict function) at batch 1 (latency, ms) and at a large batch (images/s) |
| ``training`` | training steps of the trainer's optimizer (``CoupledSGD``) and loss, fed four ways, to show where time goes: ``model`` (the bare model on normalised float arrays), ``wrapper`` (the trainer's ``images -> augmentation -> normalisation -> model`` on uint8 arrays), ``pipeline`` (the wrapper fed by the trainer's own batches, a ``PyDataset``) and ``trainer`` (``training.train`` itself, on a data set: its epoch as its log times it, with the validation on a fifth as many test images as it trains on, CIFAR's proportion, and its callbacks); a step's time is the median step (the trainer: its epoch over its steps) |
| ``objective`` | the cost of the discriminative-attention objective: the trainer's wrapper on uint8 arrays trained with plain cross-entropy, with DAT (first order) and with DAT in second order (skipped on TensorFlow, which refuses it through BatchNormalization); each row gives its step time as a multiple of the plain one |

Weights are random: speed does not depend on them. Training data are a seeded random subset of a
data set's train split when ``data`` is given (e.g. the CIFAR-10 JPEG copy), else seeded random
uint8 images; the report names which.

>>> rows = inference("resnet20", batch_sizes=(1, 128))
>>> rows[0]["latency_ms"]  # batch 1  # doctest: +SKIP
"""

import json
import statistics
import time
from pathlib import Path

import numpy as np

import keras

from keras_attn_zoo import benchmark_suite
from keras_attn_zoo.convert.to_torch import reference_config, torch_state_dict
from keras_attn_zoo.cpuload import CpuWindow
from keras_attn_zoo.data import channel_stats, load_split
from keras_attn_zoo.data.sources import ArraySplit
from keras_attn_zoo.export import export_model
from keras_attn_zoo.flops import count_macs
from keras_attn_zoo.images import preprocess
from keras_attn_zoo.registry import count_trainable, get_spec, load
from keras_attn_zoo.timing import random_inputs, time_calls
from keras_attn_zoo.training.optimizers import CoupledSGD
from keras_attn_zoo.training.trainer import backend_version, hardware, training_model, utc_now

TRAINING_MODES = tuple(benchmark_suite.TRAINING_MODES)
VALIDATION_SHARE = 5  # the trainer mode validates on 1/5 as many images as it trains on (CIFAR: 10,000 / 50,000)
OBJECTIVE_MODES = {"cross_entropy": None, "dat": "dat", "dat_second_order": {"second_order": True}}


def inference(name, batch_sizes=(1, 128), repeats=20, warmup=3, input_shape=None):
    """Latency and throughput of ``predict_on_batch`` for each batch size.

    Args:
        name: a registry model name.
        batch_sizes: batch sizes to time. Defaults to (1, 128).
        repeats: timed calls per batch size (the median is reported). Defaults to 20.
        warmup: untimed calls first. Defaults to 3.
        input_shape: the model's input shape. Defaults to the registry's.

    Returns:
        One dict per batch size: model, kind, batch, latency_ms (median per call), images_per_s,
        cpu_steal_pct (see ``_Steal``).
    """
    _check_counts(repeats=repeats, warmup=warmup)
    spec = get_spec(name)
    shape = tuple(input_shape or spec.input_shape)
    model = load(spec.name, weights=None, input_shape=shape)
    rng = np.random.default_rng(0)
    rows = []
    for batch in batch_sizes:
        _check_counts(batch=batch)
        x = rng.standard_normal((batch, *shape)).astype("float32")
        with _Steal() as steal:
            seconds = _median_seconds(lambda: model.predict_on_batch(x), repeats, warmup)
        rows.append({"model": spec.name, "kind": "inference", "batch": batch,
                     "latency_ms": round(1000 * seconds, 3), "images_per_s": round(batch / seconds, 1),
                     "cpu_steal_pct": steal.percent})
    return rows


def training(name, data=None, batch_size=128, steps=10, epochs=4, modes=TRAINING_MODES, data_dir=None):
    """Training images/s of a CIFAR-size model, fed as the ``modes`` say (see the module doc).

    Each mode fits ``epochs`` epochs of ``steps`` batches; the first is warm-up (tracing), the
    median step of the others is reported (the trainer mode: the median epoch, validation
    included, over its steps).

    Args:
        name: a registry model name.
        data: a data source for ``load_split`` (e.g. the CIFAR-10 archive), or None for seeded
            random uint8 images.
        batch_size: images per step. Defaults to 128 (the CIFAR recipes').
        steps: steps per epoch. Defaults to 10.
        epochs: epochs per mode, the first untimed. Defaults to 4.
        modes: which of ``TRAINING_MODES`` to run. Defaults to all.
        data_dir: as in ``load_split``.

    Returns:
        One dict per mode: model, kind ("training/<mode>"), batch, step_ms, images_per_s,
        cpu_steal_pct, data.
    """
    _check_counts(batch_size=batch_size, steps=steps)
    if not isinstance(epochs, int) or epochs < 2:
        raise ValueError(f"epochs must be an integer of at least 2 (one warm-up, one timed), got {epochs!r}.")
    unknown = set(modes) - set(TRAINING_MODES)
    if unknown:
        raise ValueError(f"Unknown training modes {sorted(unknown)}; expected some of {TRAINING_MODES}.")
    spec = get_spec(name)
    count = batch_size * steps
    if "trainer" in modes and data is None:
        raise ValueError("The trainer mode runs the trainer itself, which reads a data set: give data (--data).")
    x, y, description = _training_arrays(spec, data, count, data_dir)
    stats = channel_stats(x)
    normalised = preprocess(x, stats)  # what the wrapper's normalisation layer computes

    rows = []
    for mode in modes:
        if mode == "trainer":
            with _Steal() as steal:
                seconds, description = _trainer_epochs(spec.name, data, batch_size, steps, epochs, data_dir)
            rows.append({"model": spec.name, "kind": "training/trainer", "batch": batch_size,
                         "step_ms": round(1000 * statistics.median(seconds[1:]) / steps, 1),
                         "images_per_s": round(count / statistics.median(seconds[1:]), 1),
                         "first_epoch_extra_s": round(seconds[0] - statistics.median(seconds[1:]), 2),
                         "cpu_steal_pct": steal.percent, "data": description})
            continue
        keras.utils.set_random_seed(0)
        model = load(spec.name, weights=None, classifier_activation=None)
        if mode == "model":
            net, fit_args = model, {"x": normalised, "y": y, "batch_size": batch_size}
        else:
            net = training_model(model, stats, "cifar", seed=0)
            if mode == "wrapper":
                fit_args = {"x": x, "y": y, "batch_size": batch_size}
            else:
                fit_args = {"x": ArraySplit(x, y, tuple(map(str, range(spec.num_classes))), "train",
                                            "benchmark").batches(batch_size, shuffle=True)}
        net.compile(optimizer=CoupledSGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        timer = _EpochTimer()
        with _Steal() as steal:
            net.fit(**fit_args, epochs=epochs, callbacks=[timer], verbose=0)
        step_seconds, seconds = timer.timed_steps()
        rows.append({"model": spec.name, "kind": f"training/{mode}", "batch": batch_size,
                     "step_ms": round(1000 * seconds, 1), "images_per_s": round(batch_size / seconds, 1),
                     "step_seconds": [round(t, 5) for t in step_seconds],
                     "first_epoch_extra_s": round(timer.seconds[0] - statistics.median(timer.seconds[1:]), 2),
                     "cpu_steal_pct": steal.percent, "data": description})
    return rows


def _trainer_epochs(name, data, batch_size, steps, epochs, data_dir):
    """``(seconds of each epoch, data description)`` of ``training.train`` on ``batch_size *
    steps`` training images of ``data`` and a ``VALIDATION_SHARE``-th as many test images, with
    the depth-20 set's recipe (onecycle; speed does not depend on the schedule), as its own log
    times them (``epoch_seconds``: the steps and the validation; the checkpoint and log files
    written after it take milliseconds)."""
    import tempfile

    from keras_attn_zoo.training.trainer import LOG_FILE, read_log, train

    with tempfile.TemporaryDirectory(prefix="benchmark-trainer-") as folder:
        record = train(name, data, "onecycle", output_dir=folder, limit=batch_size * steps,
                       eval_limit=max(1, batch_size * steps // VALIDATION_SHARE), data_dir=data_dir, epochs=epochs,
                       batch_size=batch_size, verbose=0)
        seconds = [float(row["epoch_seconds"]) for row in read_log(Path(folder) / LOG_FILE)]
    return seconds, f"{record['training']['data']} (validation: {record['accuracy']['data']})"


def objective(name, data=None, batch_size=128, steps=10, epochs=4, modes=tuple(OBJECTIVE_MODES), data_dir=None):
    """Step time of the DAT objective against plain training (the trainer's wrapper on uint8
    arrays, ``CoupledSGD``), first and second order; arguments as in :func:`training`.

    Returns:
        One dict per mode that runs (second order is skipped on TensorFlow): model, kind
        ("objective/<mode>, <ratio>x plain"), batch, step_ms, images_per_s, cpu_steal_pct,
        data, ratio (step time / the plain one's, when "cross_entropy" ran first).
    """

    _check_counts(batch_size=batch_size, steps=steps)
    if not isinstance(epochs, int) or epochs < 2:
        raise ValueError(f"epochs must be an integer of at least 2 (one warm-up, one timed), got {epochs!r}.")
    unknown = set(modes) - set(OBJECTIVE_MODES)
    if unknown:
        raise ValueError(f"Unknown objective modes {sorted(unknown)}; expected some of {tuple(OBJECTIVE_MODES)}.")
    spec = get_spec(name)
    x, y, description = _training_arrays(spec, data, batch_size * steps, data_dir)
    stats = channel_stats(x)
    rows, plain = [], None
    for mode in modes:
        if mode == "dat_second_order" and keras.backend.backend() == "tensorflow":
            print("objective/dat_second_order skipped: TensorFlow refuses second-order DAT through "
                  "BatchNormalization (run with KERAS_BACKEND=jax)")
            continue
        keras.utils.set_random_seed(0)
        model = load(spec.name, weights=None, classifier_activation=None)
        net = training_model(model, stats, "cifar", seed=0, objective=OBJECTIVE_MODES[mode])
        net.compile(optimizer=CoupledSGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        timer = _EpochTimer()
        with _Steal() as steal:
            net.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=[timer], verbose=0)
        step_seconds, seconds = timer.timed_steps()
        plain = seconds if mode == "cross_entropy" else plain
        ratio = None if plain is None else round(seconds / plain, 2)
        rows.append({"model": spec.name, "kind": f"objective/{mode}" + (f", {ratio}x plain" if ratio and mode != "cross_entropy" else ""),
                     "batch": batch_size, "step_ms": round(1000 * seconds, 1),
                     "images_per_s": round(batch_size / seconds, 1), "step_seconds": [round(t, 5) for t in step_seconds],
                     "cpu_steal_pct": steal.percent, "data": description, "ratio": ratio})
    return rows


# what prepare() writes for each system that runs a file: system -> (file name, export arguments)
EXPORTS = {
    "onnxruntime": ("model.onnx", {"format": "onnx"}),
    "tflite": ("model.tflite", {"format": "tflite"}),
    "tflite-int8": ("model_int8.tflite", {"format": "tflite", "quantize": "int8"}),
}
REFERENCE_FILES = ("reference.npz", "reference.json")


def prepare(name, workdir, systems=tuple(EXPORTS) + ("torch-reference",), input_shape=None, data=None,
            data_dir=None, calibration_images=32, seed=0):
    """Write what the benchmark's systems need for one model, with one set of random weights.

    In ``workdir``: ``model.weights.h5`` (the weights every system runs; seeded random
    initialisation), the exports of :data:`EXPORTS` that ``systems`` name (each checked against
    Keras by ``export_model``), and for ``"torch-reference"`` the reference's state dict
    (``reference.npz``) and configuration (``reference.json``), its logits compared with ours.

    Args:
        name: a registry name.
        workdir: a folder (made if missing).
        systems: the systems to prepare for. Defaults to every one with a file.
        input_shape: the model's input shape. Defaults to the registry's.
        data: a data source whose test images calibrate the int8 export, or None for seeded
            random inputs (the speed does not depend on them; the int8 check then agrees less).
        data_dir: as in ``load_split``.
        calibration_images: images for the int8 calibration and the exports' checks. Defaults to 32.
        seed: the weights' seed. Defaults to 0.

    Returns:
        A dict: model, input_shape, macs, params, weights (the file), files (system -> file),
        checks (system -> what its check found, or the export's ``error``: that system then
        has no file), reference (config, description).
    """
    spec = get_spec(name)
    shape = tuple(input_shape or spec.input_shape)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    logits_model = load(spec.name, weights=None, input_shape=shape, classifier_activation=None)
    weights = workdir / "model.weights.h5"
    logits_model.save_weights(weights)
    model = load(spec.name, weights=str(weights), input_shape=shape)
    info = {"model": spec.name, "input_shape": list(shape), "macs": count_macs(model, shape),
            "params": count_trainable(model), "weights": str(weights), "files": {}, "checks": {}}
    samples = _sample_images(spec, shape, data, data_dir, calibration_images)
    for system in (s for s in systems if s in EXPORTS):
        file_name, arguments = EXPORTS[system]
        try:
            report = export_model(model, workdir / file_name, representative_images=samples, **arguments)
        except ValueError as e:  # e.g. an operation TFLite has no built-in for: the report says so
            info["checks"][system] = {"ok": False, "error": str(e)}
            continue
        info["files"][system] = str(report.path)
        info["checks"][system] = {"ok": report.ok, "criterion": report.criterion, "samples": report.samples,
                                  "max_abs_diff": max(report.max_abs_diff.values()),
                                  "top1_agreement": report.top1_agreement}
    config, description = reference_config(logits_model, spec.name)
    info["reference"] = {"config": config, "description": description}
    if "torch-reference" in systems and config is not None:
        info["files"]["torch-reference"] = str(workdir / REFERENCE_FILES[0])
        info["checks"]["torch-reference"] = _write_reference(logits_model, spec.name, config, samples[:4], workdir)
    return info


def _sample_images(spec, shape, data, data_dir, count):
    """Model inputs for int8 calibration and the exports' checks: ``data``'s test images
    (normalised by their own statistics), or seeded random ones."""
    if data is None:
        return random_inputs(count, shape, seed=1)
    split = load_split(data, "test", image_size=shape[:2], limit=count, data_dir=data_dir)
    pixels, _ = split.batches(count)[0]
    return preprocess(pixels, channel_stats(pixels))


def _write_reference(logits_model, name, config, x, workdir):
    """Save the reference's state dict and config; its logits against ours on ``x``."""
    from keras_attn_zoo import torch_reference

    state = torch_state_dict(logits_model, name)
    np.savez(workdir / REFERENCE_FILES[0], **state)
    (workdir / REFERENCE_FILES[1]).write_text(json.dumps(config))
    module = torch_reference.load_numpy_state(torch_reference.build(config), state).eval()
    theirs = torch_reference.logits(module, x)
    ours = keras.ops.convert_to_numpy(logits_model(x, training=False))
    diff = float(np.max(np.abs(theirs - ours)))
    scale = float(np.max(np.abs(ours))) or 1.0
    return {"ok": diff <= 1e-4 * max(1.0, scale), "criterion": "max |logits diff| <= 1e-4 x max |logit|",
            "samples": f"{len(x)} of the calibration inputs", "max_abs_diff": diff, "max_abs_logit": scale}


def set_backend_threads(threads):
    """Give the current Keras backend ``threads`` threads (before it runs anything): TensorFlow's
    intra-op pool (inter-op 1), PyTorch's ``set_num_threads``; JAX reads its threads from
    ``XLA_FLAGS`` at start (``benchmark_suite.thread_environment``)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


def keras_inference(name, weights, batches, input_shape=None, compiled=False, repeats=10, warmup=2,
                    max_seconds=None):
    """``{batch: [seconds per call]}`` of the Keras model with ``weights`` on the current backend:
    ``predict_on_batch`` (Keras' predict function: a ``tf.function`` without XLA on a CPU,
    ``jax.jit`` on JAX, eager under ``no_grad`` on PyTorch), or with ``compiled`` (TensorFlow
    only) the model called in ``tf.function(jit_compile=True)`` (XLA)."""
    spec = get_spec(name)
    shape = tuple(input_shape or spec.input_shape)
    model = load(spec.name, weights=weights, input_shape=shape)
    if compiled:
        if keras.backend.backend() != "tensorflow":
            raise ValueError(f"compiled=True (XLA through tf.function) needs the TensorFlow backend, not {keras.backend.backend()}.")
        import tensorflow as tf

        function = tf.function(lambda x: model(x, training=False), jit_compile=True)
        run = lambda x: function(x).numpy()  # noqa: E731
    else:
        run = model.predict_on_batch
    times = {}
    for batch in batches:
        x = random_inputs(batch, shape)
        times[batch] = time_calls(lambda: run(x), repeats, warmup, max_seconds)
    return times


def _training_arrays(spec, data, count, data_dir):
    """``(uint8 images, labels, description)``: ``count`` images of ``data``'s train split, or
    seeded random ones."""

    if data is not None:
        split = load_split(data, "train", image_size=spec.input_shape[:2], limit=count, data_dir=data_dir)
        if split.num_examples < count:
            raise ValueError(f"{split.description} has fewer than the {count} images asked for.")
        x, y = split.batches(count)[0]
        return x, y, split.description
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (count, *spec.input_shape), dtype="uint8")
    y = rng.integers(0, spec.num_classes, count).astype("int32")
    return x, y, f"seeded random uint8 images, {count}"


def markdown(rows, command=None):
    """A markdown report of ``rows`` with the machine, software and the command that made it."""
    lines = ["# Speed", "",
             "Written by `keras-attn-zoo benchmark` (`keras_attn_zoo/benchmark.py` says what each row "
             "times); do not edit.", "",
             f"Measured {utc_now()} on {hardware()}, keras {keras.__version__}, backend {backend_version()}."]
    if command:
        lines.append(f"Command: `{command}`")
    lines += ["", "CPU steal: the share of this machine's CPU time the hypervisor gave to other machines "
                  "while the row ran (a shared virtual machine's timings vary with it).",
              "", "| model | kind | batch | ms per call / step | images/s | CPU steal | data |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        ms = row.get("latency_ms", row.get("step_ms"))
        steal = "-" if row.get("cpu_steal_pct") is None else f"{row['cpu_steal_pct']}%"
        lines.append(f"| {row['model']} | {row['kind']} | {row['batch']} | {ms} | {row['images_per_s']} | "
                     f"{steal} | {row.get('data', 'random float32')} |")
    return "\n".join(lines) + "\n"


class _EpochTimer(keras.callbacks.Callback):
    """Seconds of every epoch, and of every step of every epoch. A callback with a batch-level
    hook makes Keras hand it each step's logs as Python numbers (no asynchronous dispatch of
    callbacks), so a step has finished on every backend, JAX's asynchronous one too, when its
    end is timed."""

    def __init__(self):
        super().__init__()
        self.seconds, self.steps = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.steps.append([])

    def on_train_batch_begin(self, batch, logs=None):
        self.step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1].append(time.perf_counter() - self.step_start)

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)

    def timed_steps(self):
        """``(the steps' seconds after the first epoch, their median)``. The median: Keras makes a
        new data iterator for every epoch, and on TensorFlow the step after it stalls by seconds
        at random (3-5 s on this project's CPU; in the trainer's 391-step epochs with validation
        no such stall shows), which a short timed epoch's mean would charge to every step."""
        steps = [t for epoch_steps in self.steps[1:] for t in epoch_steps]
        return steps, statistics.median(steps)


class _Steal:
    """The share of CPU time the hypervisor gave to other machines while the block ran, in
    percent (``keras_attn_zoo.cpuload``); None where /proc/stat is missing."""

    def __enter__(self):
        self.window = CpuWindow().__enter__()
        return self

    def __exit__(self, *exc):
        self.window.__exit__(*exc)
        self.percent = self.window.shares["steal"]


def _median_seconds(call, repeats, warmup):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _check_counts(**counts):
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}.")
