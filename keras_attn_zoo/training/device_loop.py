"""Training with the data set and its augmentation on one accelerator (JAX backend, no TensorFlow):
the engine of ``scripts/accelerator_train.py``, for GPUs lent for a few minutes at a time.

``keras-attn-zoo train`` feeds ``fit`` from the host, batch by batch. Here the training and test
splits go to the device once, as uint8 arrays; each batch is gathered there, and a whole epoch
is one compiled ``jax.lax.scan`` over the training wrapper's own Keras ``train_step``
(:func:`~keras_attn_zoo.training.trainer.training_model`: augmentation, normalisation, the
model's losses, ABN's and PAYA's included, and :class:`CoupledSGD` on the recipe's schedule, as
``fit`` runs them). The batches are the trainer's (``Batches.indices``: the order of the seed and
the epoch), and the run ends with the trainer's record (``run_record``), so ``keras-attn-zoo
publish`` takes its ``.weights.h5``, which loads under every backend.

A run stops before an epoch that would overrun ``deadline`` and leaves a checkpoint,
``<name>.checkpoint-<epochs>-<i>of<n>.npz`` in ``output_dir`` (one part, or as many as keep each
file under ``max_file_bytes``), that holds every variable of the training state
(the model's, the optimizer's with its step counter, so the learning-rate schedule continues,
and the augmentation's seed generators', so the random crops continue as an unbroken run's
would) and, as JSON, the run's settings, its log and its sessions. It is written every
``checkpoint_every`` epochs and at every stop, each part under a temporary name and then renamed,
the older checkpoint removed only after that, so a kill always leaves a whole checkpoint. Given to ``resume=``, it continues the run where it stopped;
several short sessions add up to one recipe (on CPU the result is bit-identical to an unbroken
run's, ``tests/test_device_loop.py``; a GPU's reductions may differ in the last bits).
"""

import json
import math
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np

import keras

from keras_attn_zoo.data import ArraySplit, ChannelStats, load_split
from keras_attn_zoo.registry import get_spec, load
from keras_attn_zoo.files import replacing
from keras_attn_zoo.training.checkpoints import save_weights, write_csv, write_json
from keras_attn_zoo.training.recipes import get_recipe, learning_rate_schedule
from keras_attn_zoo.training.trainer import (
    LOG_FILE,
    MIXED_PRECISION,
    compile_training,
    data_transforms,
    evaluate_split,
    git_commit,
    hardware,
    run_record,
    training_model,
    training_stats,
    utc_now,
)

CHECKPOINT_FORMAT = 1
# Settings a checkpoint must share with the command that resumes it.
RESUME_SETTINGS = ("model", "recipe", "data", "test_data", "seed", "mixed_precision")
# Time kept free after the last epoch for saving, measuring and writing the record, and after
# any other epoch for the checkpoint.
FINAL_RESERVE_S = 60.0
CHECKPOINT_RESERVE_S = 10.0
PART_RESERVE_BYTES = 1 << 20  # room in a checkpoint part for its settings and log (JSON)


def checkpoint_files(folder, name):
    """The checkpoints of ``name`` in ``folder``, newest first: ``[(epochs, [part paths])]``."""
    pattern = re.compile(rf"{re.escape(name)}\.checkpoint-(\d+)-(\d+)of(\d+)\.npz")
    found = {}
    for path in Path(folder).glob(f"{name}.checkpoint-*.npz"):
        match = pattern.fullmatch(path.name)
        if match:
            found.setdefault((int(match[1]), int(match[3])), []).append(path)
    return [(epoch, sorted(paths)) for (epoch, _), paths in sorted(found.items(), reverse=True)]


def read_checkpoint(path):
    """A checkpoint's settings and arrays, ``(meta dict, list of arrays)``, from any of its parts
    (``<name>.checkpoint-<epochs>-<i>of<n>.npz``; the others are read from beside it).

    Raises:
        ValueError: naming the file, when it is not a readable checkpoint of this format or a
            part is missing.
    """
    path = Path(path)
    match = re.fullmatch(r"(.+)\.checkpoint-(\d+)-(\d+)of(\d+)\.npz", path.name)
    if not match:
        raise ValueError(f"{path} is not a training checkpoint: expected <name>.checkpoint-<epochs>-<i>of<n>.npz.")
    parts = [path.with_name(f"{match[1]}.checkpoint-{match[2]}-{i}of{match[4]}.npz") for i in range(1, int(match[4]) + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise ValueError(f"{path} is part of a checkpoint in {len(parts)} files, and {', '.join(missing)} is not beside "
                         "it: copy all its parts.")
    meta, arrays = None, {}
    for part in parts:
        try:
            with np.load(part, allow_pickle=False) as data:
                part_meta = json.loads(str(data["meta"]))
                arrays.update({int(key[1:]): data[key] for key in data.files if key != "meta"})
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{part} is not a readable training checkpoint ({type(e).__name__}: {e}).") from e
        if part_meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{part} is a checkpoint of format {part_meta.get('format')!r}; this code reads "
                             f"format {CHECKPOINT_FORMAT}.")
        if meta is not None and part_meta != meta:
            raise ValueError(f"{part} belongs to another checkpoint than {parts[0].name}.")
        meta = part_meta
    if sorted(arrays) != list(range(len(meta["variables"]))):
        raise ValueError(f"{path}'s parts hold {len(arrays)} of the checkpoint's {len(meta['variables'])} arrays.")
    return meta, [arrays[i] for i in range(len(arrays))]


def write_checkpoint(folder, name, meta, arrays, max_part_bytes=None):
    """Write a checkpoint after ``meta["epochs_completed"]`` epochs as few files as hold at most
    ``max_part_bytes`` of arrays each (one without a limit), then remove the older ones.

    Each part is written under a temporary name and renamed; the older checkpoint is removed
    only once every part is in place, so a kill leaves a whole checkpoint, old or new.

    Returns:
        The paths of the parts.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    groups, size = [[]], 0
    for index, array in enumerate(arrays):
        if max_part_bytes and groups[-1] and size + array.nbytes > max_part_bytes:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += array.nbytes
    epoch, count = meta["epochs_completed"], len(groups)
    paths = [folder / f"{name}.checkpoint-{epoch:04d}-{i}of{count}.npz" for i in range(1, count + 1)]
    for path, group in zip(paths, groups):
        with replacing(path) as tmp:
            np.savez(tmp, meta=np.asarray(json.dumps(meta)), **{f"v{i:05d}": arrays[i] for i in group})
    remove_checkpoints(folder, name, keep=paths)
    return paths


def remove_checkpoints(folder, name, keep=()):
    """Remove the checkpoints of ``name`` in ``folder`` (but the files in ``keep``)."""
    for _, parts in checkpoint_files(folder, name):
        for part in parts:
            if part not in keep:
                part.unlink(missing_ok=True)


def _state_variables(wrapper):
    """The variables a checkpoint holds, in a fixed order: trainable, non-trainable (batch-norm
    statistics, seed generators), the optimizer's."""
    return [*wrapper.trainable_variables, *wrapper.non_trainable_variables, *wrapper.optimizer.variables]


def _describe(variables):
    return [[v.path, list(v.shape), str(v.dtype)] for v in variables]


def _check_resume(meta, settings, variables, path):
    """Refuse a checkpoint made by another command or model, naming what differs."""
    differs = [f"{key}: the checkpoint has {meta.get(key)!r}, this command {settings[key]!r}"
               for key in RESUME_SETTINGS if meta.get(key) != settings[key]]
    if differs:
        raise ValueError(f"{path} was written by another run: " + "; ".join(differs)
                         + ". Resume with the command that started it (same model, recipe, data, --limit, "
                         "--seed, --mixed-precision).")
    have, want = meta["variables"], _describe(variables)
    if [v[1:] for v in have] != [v[1:] for v in want]:
        first = next((i for i, (a, b) in enumerate(zip(have, want)) if a[1:] != b[1:]), min(len(have), len(want)))
        raise ValueError(f"{path} holds {len(have)} variables, this model {len(want)}; the first that differs is "
                         f"number {first}: {have[first] if first < len(have) else '-'} against "
                         f"{want[first] if first < len(want) else '-'}.")


def _file_sizes(model, variables):
    """Bytes of the final weight file and of a checkpoint (their arrays; headers add a little)."""
    nbytes = (lambda vs: sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in vs))
    return nbytes(model.weights), nbytes(variables)


def _write_log(path, rows):
    """The per-epoch log as CSV (columns: epoch, then the rest sorted, as Keras' CSVLogger)."""
    write_csv(path, ["epoch", *sorted({k for row in rows for k in row} - {"epoch"})], rows)


class _Steps:
    """The wrapper's Keras ``train_step`` / ``test_step`` compiled over batches gathered on the
    device: an epoch of full batches is one ``lax.scan``; a last, smaller batch one more call."""

    def __init__(self, wrapper):
        import jax

        self.jax = jax

        def train_one(state, x, y, idx):
            return wrapper.train_step(state, (x[idx], y[idx]))[1]

        def train_many(state, x, y, indices):
            return jax.lax.scan(lambda s, idx: (train_one(s, x, y, idx), None), state, indices)[0]

        def test_one(state, x, y, idx):
            return wrapper.test_step(state, (x[idx], y[idx]))[1]

        def test_many(state, x, y, indices):
            return jax.lax.scan(lambda s, idx: (test_one(s, x, y, idx), None), state, indices)[0]

        self.train = (jax.jit(train_many), jax.jit(train_one))
        self.test = (jax.jit(test_many), jax.jit(test_one))

    def run(self, which, state, x, y, batches):
        """``state`` after every batch (lists of indices) in order."""
        many, one = self.train if which == "train" else self.test
        full = [b for b in batches if len(b) == len(batches[0])]
        if full:
            state = many(state, x, y, self.jax.numpy.asarray(np.stack(full)))
        for rest in batches[len(full):]:
            state = one(state, x, y, self.jax.numpy.asarray(rest))
        self.jax.block_until_ready(state)
        return state


def _metrics(wrapper, values, prefix=""):
    """The wrapper's metric results (loss, top-1, top-5) for metric variables ``values``."""
    for variable, value in zip(wrapper.metrics_variables, values):
        variable.assign(value)
    return {f"{prefix}{k}": float(v) for k, v in wrapper.get_metrics_result().items()}


def train_on_device(
    name,
    data,
    recipe="fanet_cifar",
    *,
    output_dir,
    resume=None,
    limit=None,
    eval_limit=None,
    data_dir=None,
    seed=0,
    mixed_precision=None,
    checkpoint_every=2,
    deadline=None,
    max_file_bytes=None,
    max_checkpoint_bytes=None,
    eval_batch_size=500,
    command=None,
    commit=None,
    **recipe_overrides,
):
    """Train a registry model with a recipe, its data and augmentation on one JAX device.

    Args:
        name: a registered model name, e.g. "resnet56".
        data: a ``load_split`` source whose splits fit in memory (the CIFAR-10 archive).
        recipe: a recipe name (``keras_attn_zoo.training.RECIPES``). Defaults to "fanet_cifar".
        output_dir: where the checkpoint, the log, and at the end the ``.weights.h5`` and its
            record go.
        resume: a checkpoint to continue from, any of its parts
            (``<name>.checkpoint-<epochs>-<i>of<n>.npz``, the others beside it); it must come
            from the same model, recipe, data, ``limit``, ``eval_limit``, seed and precision.
            Defaults to None (a fresh start).
        limit: train on a seeded subset of this many images (as the trainer's ``limit``).
        eval_limit: validate and measure on a seeded subset of this many test images.
        data_dir: folder of local archives. Defaults to ``$KERAS_ATTN_ZOO_DATA``.
        seed: seed of weights, augmentation, shuffling and subsets. Defaults to 0.
        mixed_precision: None (float32) or "bfloat16" (Keras' "mixed_bfloat16": bfloat16
            compute, float32 variables, losses and metrics). Defaults to None.
        checkpoint_every: write the checkpoint after every this many epochs (and at every
            stop). Defaults to 2.
        deadline: a ``time.monotonic()`` value: the run stops, with a checkpoint, before an
            epoch that would end after it (the next epoch is estimated by the last one; the
            last epoch also keeps ``FINAL_RESERVE_S`` for the final measurement). Defaults to
            None (no limit).
        max_file_bytes: the largest file to write: a model whose weight file would be larger
            is refused before training, and the checkpoint is split into parts no larger (a lent
            machine brings files of at most 16 MiB back). Defaults to None (no limit).
        max_checkpoint_bytes: refuse, before training, a model whose checkpoint would be larger
            in all (a lent machine carries 64 MiB in, the data and code included). Defaults to
            None (no limit).
        eval_batch_size: batch of the per-epoch validation. Defaults to 500.
        command: the command line to record. Defaults to this call's description.
        commit: the commit of the code, for the record (a copy of the checkout without its
            ``.git`` cannot tell). Defaults to ``git_commit()``.
        **recipe_overrides: recipe fields (``epochs``, ``batch_size``...).

    Returns:
        ``{"finished", "epochs_completed", "epochs", "checkpoint" (path or None), "record"
        (the training record once finished, else None)}``.

    Raises:
        ValueError: on a backend other than JAX, data that is not in memory, a checkpoint of
            another run, or files too large for ``max_file_bytes`` / ``max_checkpoint_bytes``.
        FloatingPointError: when the loss stops being finite (the last checkpoint is kept).
    """
    started = time.monotonic()
    if keras.backend.backend() != "jax":
        raise ValueError(f"train_on_device runs on the JAX backend (KERAS_BACKEND=jax), not {keras.backend.backend()}.")
    import jax

    spec = get_spec(name)
    name = spec.name
    recipe = get_recipe(recipe, **recipe_overrides)
    if mixed_precision not in (None, "bfloat16"):
        raise ValueError(f"mixed_precision must be None or 'bfloat16' on the device, got {mixed_precision!r}.")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}.")
    if recipe.augmentation == "imagenet":
        raise ValueError("train_on_device holds whole splits on the device, as arrays of one image size; the "
                         "'imagenet' recipe's data does not fit that: use keras-attn-zoo train.")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".*.tmp.{name}.checkpoint-*.npz"):  # of a run killed while writing
        stale.unlink()

    meta = arrays = None
    if resume is not None:
        meta, arrays = read_checkpoint(resume)
    model_shape = tuple(spec.input_shape)
    train_kwargs, test_kwargs = data_transforms(recipe.augmentation, model_shape[:2])
    common = {"seed": seed, "data_dir": data_dir}
    train_split = load_split(data, "train", limit=limit, **train_kwargs, **common)
    test_split = load_split(data, "test", limit=eval_limit, **test_kwargs, **common)
    for split in (train_split, test_split):
        if not isinstance(split, ArraySplit):
            raise ValueError(f"{split.description} is read from files batch by batch; train_on_device needs "
                             "splits that fit in memory (CIFAR-size data).")
    if train_split.class_names != test_split.class_names:
        raise ValueError(f"The train and test splits of {data} have different classes.")
    settings = {"model": name, "recipe": recipe.to_dict(), "data": train_split.description,
                "test_data": test_split.description, "seed": seed, "mixed_precision": mixed_precision}
    stats = ChannelStats.from_dict(meta["normalization"]) if meta else training_stats(train_split, seed)
    batches = train_split.batches(recipe.batch_size, shuffle=True, seed=seed)
    steps_per_epoch = len(batches)
    test_batches = test_split.batches(eval_batch_size)
    device = jax.devices()[0]
    print(f"{name}: {train_split.description} -> {test_split.description}; {recipe.summary()}; "
          f"one device ({device.device_kind}, {device.platform}), data and augmentation on it"
          + (f"; {mixed_precision}" if mixed_precision else ""), flush=True)

    keras.utils.set_random_seed(seed)
    previous_policy = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy(MIXED_PRECISION[mixed_precision])
    try:
        model = load(name, num_classes=train_split.num_classes, input_shape=model_shape, classifier_activation=None)
        wrapper = training_model(model, stats, recipe.augmentation, seed)
        compile_training(wrapper, recipe, steps_per_epoch, train_split.num_classes)
        wrapper._symbolic_build(data_batch=(train_split.x[:1], train_split.y[:1]))  # what fit builds first
        wrapper.optimizer.build(wrapper.trainable_variables)
        variables = _state_variables(wrapper)
        weights_bytes, checkpoint_bytes = _file_sizes(model, variables)
        too_large = []
        if max_file_bytes and weights_bytes > max_file_bytes:
            too_large.append(f"its weight file {weights_bytes / 2**20:.1f} MiB, over the "
                             f"{max_file_bytes / 2**20:g} MiB a file may have here")
        if max_checkpoint_bytes and checkpoint_bytes > max_checkpoint_bytes:
            too_large.append(f"its checkpoint {checkpoint_bytes / 2**20:.1f} MiB, over the "
                             f"{max_checkpoint_bytes / 2**20:g} MiB a checkpoint may have here")
        if too_large:
            raise ValueError(f"{name} would need {' and '.join(too_large)} (what a lent machine carries): train it "
                             "where its files can stay.")
        # the arrays of a part leave room for its settings and log
        max_part_bytes = max(max_file_bytes - PART_RESERVE_BYTES, max_file_bytes // 2) if max_file_bytes else None
        if meta is None:
            meta = {"format": CHECKPOINT_FORMAT, **settings, "normalization": stats.to_dict(),
                    "limit": limit, "eval_limit": eval_limit, "epochs_completed": 0, "log": [],
                    "sessions": [], "commit": commit or git_commit(), "variables": _describe(variables)}
        else:
            _check_resume(meta, settings, variables, resume)
            for variable, value in zip(variables, arrays):
                variable.assign(value)
            print(f"Resuming from {resume} after epoch {meta['epochs_completed']} of {recipe.epochs}", flush=True)
        wrapper.reset_metrics()
        # committed to the device, as the compiled steps' outputs are (else the second call compiles again)
        fresh_metrics = jax.device_put([v.value for v in wrapper.metrics_variables], device)
        state = jax.device_put(([v.value for v in wrapper.trainable_variables],
                                [v.value for v in wrapper.non_trainable_variables],
                                [v.value for v in wrapper.optimizer.variables]), device) + (fresh_metrics,)
        schedule = learning_rate_schedule(recipe, steps_per_epoch)
        iterations = next(i for i, v in enumerate(wrapper.optimizer.variables) if v is wrapper.optimizer.iterations)
        steps = _Steps(wrapper)
        x, y, x_test, y_test = jax.device_put((train_split.x, train_split.y, test_split.x, test_split.y), device)
        test_indices = [test_batches.indices(i) for i in range(len(test_batches))]

        session = {"from_epoch": meta["epochs_completed"], "hardware": hardware(), "date": utc_now()}
        meta["sessions"].append(session)

        def save_state():
            for variable, value in zip(variables, [*state[0], *state[1], *state[2]]):
                variable.assign(value)
            session.update(to_epoch=meta["epochs_completed"], wall_s=round(time.monotonic() - started, 1))
            parts = write_checkpoint(out, name, meta, [np.asarray(v.value) for v in variables], max_part_bytes)
            _write_log(out / LOG_FILE, meta["log"])
            return parts

        last_seconds = None
        while meta["epochs_completed"] < recipe.epochs:
            epoch = meta["epochs_completed"]
            reserve = FINAL_RESERVE_S if epoch + 1 == recipe.epochs else CHECKPOINT_RESERVE_S
            estimate = 1.25 * last_seconds if last_seconds is not None else 0.0  # the first: unknown
            if deadline is not None and time.monotonic() + estimate + reserve > deadline:
                parts = save_state()
                print(f"Stopped after epoch {epoch} of {recipe.epochs}: the next would end past the time limit. "
                      f"Resume with --resume {parts[0].name}"
                      + (f" (its {len(parts)} parts beside one another)" if len(parts) > 1 else "") + ".", flush=True)
                return {"finished": False, "epochs_completed": epoch, "epochs": recipe.epochs,
                        "checkpoint": str(parts[0]), "record": None}
            learning_rate = float(schedule(int(state[2][iterations])) if callable(schedule) else schedule)
            batches.set_epoch(epoch)
            begin = time.perf_counter()
            state = steps.run("train", (*state[:3], fresh_metrics), x, y,
                              [batches.indices(i) for i in range(steps_per_epoch)])
            train_seconds = time.perf_counter() - begin
            logs = _metrics(wrapper, state[3])
            evaluated = steps.run("test", (state[0], state[1], fresh_metrics), x_test, y_test, test_indices)
            logs.update(_metrics(wrapper, evaluated[2], prefix="val_"))
            last_seconds = time.perf_counter() - begin
            if not all(math.isfinite(v) for v in logs.values()):
                raise FloatingPointError(
                    f"Training {name} diverged in epoch {epoch + 1} (the loss is not finite); nothing of it was "
                    "saved" + (", and the last checkpoint in " + str(out) + " is kept"
                               if checkpoint_files(out, name) else "") + ".")
            meta["log"].append({"epoch": epoch + 1, **{k: round(v, 6) for k, v in logs.items()},
                                "learning_rate": learning_rate, "epoch_seconds": round(last_seconds, 3),
                                "train_seconds": round(train_seconds, 3)})
            meta["epochs_completed"] = epoch + 1
            print(f"Epoch {epoch + 1}/{recipe.epochs} - {last_seconds:.1f}s "
                  f"({train_split.num_examples / train_seconds:,.0f} img/s) - "
                  + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
            if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == recipe.epochs:
                save_state()
        if session.get("to_epoch") != meta["epochs_completed"]:  # resumed after the last epoch
            save_state()
        weights_file = out / f"{name}.weights.h5"
        save_weights(model, weights_file)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    # Measure the saved file, not the in-memory model, as the trainer does.
    evaluated_model = load(name, weights=str(weights_file), num_classes=train_split.num_classes,
                           input_shape=model_shape, classifier_activation=None)
    accuracy = evaluate_split(evaluated_model, test_split, stats, batch_size=eval_batch_size, verbose=0)
    command = command or f"keras_attn_zoo.training.device_loop.train_on_device({name!r}, {os.fspath(data)!r}, ...)"
    rows = meta["log"]
    commit = commit or git_commit()
    record = run_record(
        name, weights_file, train_split, test_split, model_shape, stats, test_kwargs, accuracy, command, recipe, rows,
        objective=None,
        epochs_completed=meta["epochs_completed"],
        images_per_second=round(statistics.median(train_split.num_examples / r["train_seconds"] for r in rows)),
        sessions=meta["sessions"],
        strategy=f"one device ({device.device_kind}), data and augmentation on it (training.device_loop)",
        mixed_precision=mixed_precision,
        sync_batch_norm=False,
        seed=seed,
        commit=meta["commit"],
        **({"resumed_with_commit": commit} if commit != meta["commit"] else {}),
    )
    write_json(out / f"{name}.json", record)
    remove_checkpoints(out, name)  # only now: the record is written
    print(f"Wrote {weights_file} and {out / f'{name}.json'}: {accuracy['data']}: top-1 {accuracy['top1']:.4f} "
          f"(error {accuracy['top1_error']:.2f}%), top-5 {accuracy['top5']:.4f}", flush=True)
    return {"finished": True, "epochs_completed": meta["epochs_completed"], "epochs": recipe.epochs,
            "checkpoint": None, "record": record}
