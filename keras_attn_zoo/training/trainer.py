"""Train a registry model with a paper's recipe: ``keras-attn-zoo train NAME --data SRC``.

A run writes into its output folder (default ``runs/<name>``):

| file | what |
| --- | --- |
| ``<name>.weights.h5`` | the final weights of the bare registry model (load with ``keras_attn_zoo.load``) |
| ``<name>.json`` | the training record: data, normalisation, recipe, measured accuracy, hardware, time, command, commit, date (what ``publish`` turns into a manifest row) |
| ``<name>.best.weights.h5`` | the weights of the epoch with the best validation top-1 |
| ``training_log.csv`` | one row per epoch (numbered from 1, as the console counts): loss, top-1 / top-5 (top-5 with more than 5 classes), validation, learning rate, seconds |
| ``tensorboard/`` | TensorBoard logs (when TensorFlow and tensorboard are installed, as the ``tf`` / ``tf-cpu`` extras do) |
| ``backup/`` | the checkpoints of the last two finished epochs (``epoch-<n>.weights.h5``: model and optimizer), the best epoch so far and the commit the run started with; a run killed at any moment, started again with the same command, resumes from the newest readable checkpoint (and a run killed after its last epoch only saves, measures and writes its record); removed once the record is written, kept when training diverges |
| ``.training.lock`` | the pid of the run writing into the folder, while it runs: a second run into the same folder is refused |

The model trains inside a wrapper ``images -> augmentation -> normalisation -> model`` built from
Keras layers, so augmentation runs on the device on every backend, and the bare model's weight
file stays the published format.
"""

import csv
import datetime
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras

from keras_attn_zoo.data import (
    IMAGENET_STATS,
    augmentation_layers,
    channel_stats,
    load_splits,
    normalization_layer,
)
from keras_attn_zoo.models.abn import ABNModel, abn_training_outputs
from keras_attn_zoo.models.paya import PAYAModel, paya_training_outputs
from keras_attn_zoo.registry import get_spec, load
from keras_attn_zoo.training.checkpoints import (
    START_OVER,
    Checkpoints,
    adopt_keras_backup,
    checkpoint_epoch,
    finite,
    read_json,
    remove_paths,
    run_lock,
    save_weights,
    trim_log,
    write_json,
)
from keras_attn_zoo.training.dat import dat_model, objective_config, objective_record
from keras_attn_zoo.training.distribute import get_distribution, synchronize_batch_norm
from keras_attn_zoo.training.optimizers import CoupledSGD
from keras_attn_zoo.training.recipes import get_recipe, learning_rate_schedule
from keras_attn_zoo.weights import sha256

MIXED_PRECISION = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
STATS_SAMPLE = 50_000  # images used to measure mean / std of streamed data sets
LOG_FILE = "training_log.csv"
START_FILE = "started.json"  # in backup/: the commit and date a run started with


def training_model(model, stats, augmentation="none", seed=None, objective=None):
    """Wrap a model as ``images (0..255) -> augmentation -> normalisation -> model``.

    An ABN model's wrapper is itself an :class:`~keras_attn_zoo.models.abn.ABNModel` with both
    branches' outputs, so its ``fit`` trains with L_att + L_per (Eq. 3) and its ``predict`` /
    ``evaluate`` use the perception branch. A PAYA model's wrapper is a
    :class:`~keras_attn_zoo.models.paya.PAYAModel` with the gated log-probabilities and the
    modules' logits, so its ``fit`` trains with the authors' loss (and the regulariser the
    modules add), its ``predict`` / ``evaluate`` with the class scores.

    Args:
        model: a registry model.
        stats: the :class:`~keras_attn_zoo.data.ChannelStats` to normalise with.
        augmentation: "cifar", "imagenet", "flip" or "none". With "imagenet" the wrapper takes
            images of any size at least the model's (random-resized crop in training, center
            crop otherwise). Defaults to "none" (the inference wrapper).
        seed: augmentation seed. Defaults to None.
        objective: None (the model's own losses) or the discriminative-attention objective,
            "dat" or its settings (:mod:`keras_attn_zoo.training.dat`): the wrapper is then a
            ``DATModel`` whose ``fit`` adds the attention terms. Defaults to None.

    Returns:
        A ``keras.Model`` named ``<model>_training`` that shares ``model``'s layers.
    """
    shape = tuple(model.input_shape[1:])
    input_shape = (None, None, shape[-1]) if augmentation == "imagenet" else shape
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for layer in augmentation_layers(augmentation, shape, seed):
        x = layer(x)
    x = normalization_layer(stats)(x)
    if objective_config(objective) is not None:
        return dat_model(model, inputs, x, objective, name=f"{model.name}_training")
    # float32 outputs under mixed precision: losses and top-k metrics need them.
    for model_class, training_outputs in ((ABNModel, abn_training_outputs), (PAYAModel, paya_training_outputs)):
        if isinstance(model, model_class):
            # Every output the loss reads, so that the wrapper's fit trains as the bare model's does.
            outputs = training_outputs(model)(x)
            outputs = {key: keras.layers.Activation("linear", dtype="float32", name=f"{key}_float32")(value)
                       for key, value in outputs.items()}
            return model_class(inputs, outputs, name=f"{model.name}_training")
    outputs = keras.layers.Activation("linear", dtype="float32", name="outputs_float32")(model(x))
    return keras.Model(inputs, outputs, name=f"{model.name}_training")


def compile_for_evaluation(wrapper, model):
    """Compile a wrapper of ``model`` for ``evaluate``: cross-entropy and top-1 / top-5.

    The loss reads logits or softmax scores, whichever ``model``'s last layer gives.
    """
    activation = getattr(model.layers[-1], "activation", None)
    from_logits = getattr(activation, "__name__", "") != "softmax"
    wrapper.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=classification_metrics(model.output_shape[-1]),
    )


def compile_training(wrapper, recipe, steps_per_epoch, num_classes):
    """Compile a training wrapper for ``fit`` with a recipe: :class:`CoupledSGD` on the recipe's
    learning-rate schedule (``steps_per_epoch`` optimizer steps an epoch), cross-entropy from
    logits, top-1 / top-5 (ABN and PAYA wrappers add their own losses to it)."""
    optimizer = CoupledSGD(
        learning_rate_schedule(recipe, steps_per_epoch), momentum=recipe.momentum,
        nesterov=recipe.nesterov, weight_decay=recipe.weight_decay,
    )
    wrapper.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=classification_metrics(num_classes),
    )


def training_stats(split, seed=0):
    """The normalisation a run trains with: ImageNet's published mean / std for ImageNet, else
    measured on (up to ``STATS_SAMPLE`` images of) the training split."""
    if split.dataset == "imagenet":
        return IMAGENET_STATS
    return channel_stats(split.sample_images(STATS_SAMPLE, seed=seed))


def classification_metrics(num_classes):
    """Top-1 ("accuracy") and, with more than 5 classes, top-5 ("top5") on integer labels: with 5
    or fewer every label is in the top 5, so top-5 would always say 1.0."""
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
    return metrics


def accuracy_text(accuracy):
    """A measurement of :func:`evaluate_split` in words: top-1, its error and (with more than 5
    classes) top-5."""
    top5 = f", top-5 {accuracy['top5']:.4f}" if "top5" in accuracy else ""
    return f"top-1 {accuracy['top1']:.4f} (error {accuracy['top1_error']:.2f}%){top5}"


def data_transforms(augmentation, image_size):
    """How train and test images are loaded for a recipe's augmentation.

    CIFAR-style: both at the model's size. ImageNet: training images at 8/7 of it (256 for 224,
    ABN's 256x256) for the on-device random-resized crop; test images resized to 256 on the
    shorter side and center-cropped to 224.

    Returns:
        (train ``load_split`` kwargs, test ``load_split`` kwargs).
    """
    size = tuple(image_size)
    if augmentation == "imagenet":
        load = round(size[0] * 8 / 7)
        return {"image_size": (load, load)}, {"image_size": size, "resize_shorter": load}
    return {"image_size": size}, {"image_size": size}


class EpochInfo(keras.callbacks.Callback):
    """Adds the epoch's seconds and its first step's learning rate to the logs (before the CSV
    logger)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = round(time.perf_counter() - self.start, 3)
        logs["learning_rate"] = self.learning_rate


class EpochLog(keras.callbacks.CSVLogger):
    """Keras' CSV log with its epochs numbered from 1, as the console ("Epoch 1/15"), the
    checkpoints (``epoch-0001``) and the records (``best_epoch``, ``epochs_completed``) count
    them (Keras' own ``CSVLogger`` writes 0 for the first)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class BestWeights(keras.callbacks.Callback):
    """Saves the bare model's weights whenever validation top-1 improves (in an epoch whose loss
    is finite); survives resumes."""

    def __init__(self, model, path, state_file):
        super().__init__()
        self.bare, self.path, self.state_file = model, Path(path), Path(state_file)
        self.best = (read_json(self.state_file, "the best epoch so far", "val_accuracy")["val_accuracy"]
                     if self.state_file.is_file() else -1.0)

    def on_epoch_end(self, epoch, logs=None):
        value, loss = (logs or {}).get("val_accuracy"), (logs or {}).get("loss", 0.0)
        if value is not None and value > self.best and finite(float(loss)):  # not a diverged epoch
            self.best = float(value)
            save_weights(self.bare, self.path)
            write_json(self.state_file, {"epoch": epoch + 1, "val_accuracy": self.best})


def _tensorboard_available():
    """Keras' TensorBoard callback needs TensorFlow and the ``tensorboard`` package (the ``tf`` /
    ``tf-cpu`` extras declare both); without them a run writes no TensorBoard logs and says so."""
    try:
        import tensorboard  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def verbosity(verbose):
    """Keras' ``verbose`` for "auto": a progress bar on a terminal, a line per epoch otherwise."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return verbose


def evaluate_split(model, split, stats, batch_size=256, verbose="auto"):
    """Top-1 and top-5 accuracy of a model on a split.

    Give it a model with logits (``classifier_activation=None``): softmax scores that saturate
    to exactly 0 tie, and Keras counts tied classes as inside the top 5.

    Args:
        model: a registry model.
        split: a ``keras_attn_zoo.data.Split``.
        stats: the ``ChannelStats`` the weights were trained with.
        batch_size: evaluation batch size. Defaults to 256.
        verbose: 1 for a progress bar, 2 for one line, 0 for silence; "auto" is a progress bar
            on a terminal, one line otherwise. Defaults to "auto".

    Returns:
        ``{"top1", "top5", "top1_error" (%), "split", "images", "data"}``; no ``"top5"`` for 5
        or fewer classes.
    """
    if model.output_shape[-1] != split.num_classes:
        raise ValueError(
            f"{model.name} has {model.output_shape[-1]} classes, {split.description} has {split.num_classes}."
        )
    wrapper = training_model(model, stats, "none")
    compile_for_evaluation(wrapper, model)
    results = wrapper.evaluate(split.batches(batch_size), return_dict=True, verbose=verbosity(verbose))
    top1 = float(results["accuracy"])
    return {
        "top1": round(top1, 6),
        **({"top5": round(float(results["top5"]), 6)} if "top5" in results else {}),
        "top1_error": round(100 * (1 - top1), 4),
        "split": split.split,
        "images": split.num_examples,
        "data": split.description,
    }


def train(
    name,
    data,
    recipe="fanet_cifar",
    *,
    output_dir=None,
    limit=None,
    eval_limit=None,
    image_size=None,
    data_dir=None,
    manual_dir=None,
    strategy="auto",
    tpu=None,
    mixed_precision=None,
    seed=0,
    init_weights=None,
    overwrite=False,
    verbose="auto",
    command=None,
    objective=None,
    model_options=None,
    skip_bad_images=False,
    sync_bn=False,
    **recipe_overrides,
):
    """Train a registered model on a data set with a recipe and measure it on the test split.

    Args:
        name: a registered model name, e.g. "resnet20".
        data: a data source for ``keras_attn_zoo.data.load_split`` (folder, archive,
            "cifar10-jpeg", a tensorflow-datasets name); its "train" split trains, its "test"
            split validates every epoch and is measured at the end.
        recipe: a recipe name (``keras_attn_zoo.training.RECIPES``). Defaults to "fanet_cifar".
        output_dir: the run's folder. Defaults to ``runs/<name>``. Running the same command
            again resumes an interrupted run from its last finished epoch.
        limit: train on a seeded random subset of this many images.
        eval_limit: validate and measure on a seeded subset of this many test images.
        image_size: the model's input side. Defaults to the registry's (32) or 224 for the
            "imagenet" augmentation.
        data_dir: folder of local archives / tensorflow-datasets' data.
        manual_dir: tensorflow-datasets' manual folder (ImageNet).
        strategy: a ``keras_attn_zoo.training.distribute`` strategy name. Defaults to "auto".
        tpu: TPU name for the "tpu" strategy.
        mixed_precision: None, "float16" or "bfloat16". Defaults to None (float32).
        seed: seed of weights, augmentation, shuffling and subsets. Defaults to 0.
        init_weights: weights to start from (a tag or a path; another number of classes loads
            all but the classifier). Defaults to None (random initialisation).
        overwrite: start over: remove this run's files in ``output_dir``, of a finished run or
            of an unfinished one (its checkpoints). Defaults to False.
        verbose: Keras ``fit`` verbosity; "auto" is a progress bar on a terminal, one line per
            epoch otherwise.
        command: the command line to record. Defaults to this call's description.
        objective: None (cross-entropy, ABN: L_att + L_per) or "dat" / DAT settings (a dict or
            ``DATConfig``): the discriminative-attention objective, Eq. 9 of Wang et al.; the
            log then has a column per term and the record says which settings trained.
            Defaults to None.
        model_options: further builder arguments, recorded with the run, e.g.
            ``{"auxiliary_weight": 0.3}`` (a PAYA model's per-module cross-entropy, ours, not
            the paper's). Defaults to None.
        skip_bad_images: leave out (and name, on stderr and in the record) the images of a
            folder or archive that cannot be used; without it they fail before any training, all
            of them named in one error. Defaults to False.
        sync_bn: compute BatchNormalization's batch statistics over all replicas of a
            tf.distribute strategy rather than per replica
            (:func:`~keras_attn_zoo.training.distribute.synchronize_batch_norm`; TensorFlow
            only). Defaults to False.
        **recipe_overrides: recipe fields: ``epochs``, ``batch_size``, ``learning_rate``,
            ``schedule``, ``milestones``, ``weight_decay``, ``momentum``, ``augmentation``...

    Returns:
        The training record (a dict, also written to ``<output_dir>/<name>.json``); None in a
        ``multi_worker`` cluster's workers other than the chief, which train and write nothing
        (they read the chief's checkpoints in ``output_dir`` to resume, so in a cluster of
        several machines it must be a folder they all see).

    Raises:
        FloatingPointError: when the loss stops being finite; the last good checkpoint is kept.
        ValueError: for bad arguments or data, damaged resume state (naming the file and the
            fix), or an output folder another run is writing into.

    Example:
    >>> record = train("resnet20", "cifar10-jpeg", epochs=1, data_dir="/data")
    >>> record["accuracy"]["top1"]
    """
    spec = get_spec(name)
    name = spec.name
    recipe = get_recipe(recipe, **recipe_overrides)
    objective_config(objective)  # bad settings fail before any data is read
    model_options = dict(model_options or {})
    if any(not isinstance(key, str) for key in model_options):
        raise ValueError(f"model_options must map builder argument names to values, got {model_options!r}.")
    if mixed_precision not in (None, *MIXED_PRECISION):
        raise ValueError(f"mixed_precision must be None, 'float16' or 'bfloat16'; got {mixed_precision!r}.")
    if not isinstance(sync_bn, bool):
        raise ValueError(f"sync_bn must be True or False, got {sync_bn!r}.")
    # Before anything runs on the backend: MultiWorkerMirroredStrategy configures TensorFlow at
    # start-up, JAX's processes connect before their first computation.
    distribution = get_distribution(strategy, tpu)
    if model_options:  # unknown, fixed or bad builder arguments fail before any data is read
        load(name, **model_options)
    out = Path(output_dir) if output_dir is not None else Path("runs") / name
    paths = run_paths(out, name)
    options = dict(limit=limit, eval_limit=eval_limit, image_size=image_size, data_dir=data_dir,
                   manual_dir=manual_dir, distribution=distribution, mixed_precision=mixed_precision, seed=seed,
                   init_weights=init_weights, overwrite=overwrite, verbose=verbose, command=command,
                   objective=objective, model_options=model_options, skip_bad_images=skip_bad_images,
                   sync_bn=sync_bn)
    if not distribution.is_chief:
        # A worker of a cluster other than its chief runs every step the chief runs, its saves
        # too (a save takes part in the strategy's collective ops), into a temporary folder
        # removed at the end; it resumes from the chief's checkpoint.
        if not overwrite and paths["record"].exists():
            raise ValueError(f"{out} holds a finished run ({paths['record'].name}); pass overwrite=True (--overwrite) or another output folder.")
        with tempfile.TemporaryDirectory(prefix=f"{name}-worker-") as folder:
            _train(spec, name, data, recipe, Path(folder), run_paths(Path(folder), name), chief=False,
                   restore_from=None if overwrite else paths["backup"], **{**options, "overwrite": False})
        return None
    with run_lock(out):
        return _train(spec, name, data, recipe, out, paths, **options)


def run_paths(out, name):
    """The files of a run of ``name`` in its folder ``out`` (see the module's docstring)."""
    return {
        "weights": out / f"{name}.weights.h5",
        "record": out / f"{name}.json",
        "best": out / f"{name}.best.weights.h5",
        "log": out / LOG_FILE,
        "backup": out / "backup",
        "tensorboard": out / "tensorboard",
    }


def _train(spec, name, data, recipe, out, paths, *, limit, eval_limit, image_size, data_dir, manual_dir,
           distribution, mixed_precision, seed, init_weights, overwrite, verbose, command, objective,
           model_options, skip_bad_images, sync_bn, chief=True, restore_from=None):
    """:func:`train`'s work in ``out``, holding its lock; with ``chief=False`` (another worker
    of a cluster) in a temporary folder, resuming from the checkpoint in ``restore_from``, and
    without measuring or writing a record."""
    if overwrite:  # start over: a finished run, or an unfinished one's resume state
        remove_paths(*(paths[key] for key in ("weights", "record", "best", "log", "backup", "tensorboard")))
    elif paths["record"].exists():
        raise ValueError(f"{out} holds a finished run ({paths['record'].name}); pass overwrite=True (--overwrite) or another output folder.")
    adopt_keras_backup(paths["backup"])
    if checkpoint_epoch(paths["backup"]) is None:  # a fresh start: nothing of an earlier attempt
        remove_paths(*(paths[key] for key in ("log", "tensorboard", "best", "backup")))

    # The code the run started with (a long run outlives later commits; a resumed one keeps it).
    commit, started = git_commit(), paths["backup"] / START_FILE
    if started.is_file():
        started_with = read_json(started, "the commit the run started with", "commit")["commit"]
    else:
        started_with = commit
        write_json(started, {"commit": commit, "date": utc_now()})
    keras.utils.set_random_seed(seed)
    side = image_size or (224 if recipe.augmentation == "imagenet" else spec.input_shape[0])
    model_shape = (side, side, spec.input_shape[-1])
    train_kwargs, test_kwargs = data_transforms(recipe.augmentation, model_shape[:2])
    common = {"seed": seed, "data_dir": data_dir, "manual_dir": manual_dir}
    splits = load_splits(data, {"train": ("train", {"limit": limit, **train_kwargs}),
                                "test": ("test", {"limit": eval_limit, **test_kwargs})},
                         skip_bad_images=skip_bad_images, **common)
    train_split, test_split = splits["train"], splits["test"]
    if train_split.class_names != test_split.class_names:
        raise ValueError(f"The train and test splits of {data} have different classes.")
    stats = training_stats(train_split, seed)
    print(f"{name}: {train_split.description} -> {test_split.description}; {recipe.summary()}; "
          f"{distribution.description}")

    drop_train, drop_test = _drop_remainders(distribution, recipe.batch_size, train_split, test_split)
    train_batches = distribution.share(
        train_split.batches(recipe.batch_size, shuffle=True, seed=seed, drop_remainder=drop_train))
    test_batches = distribution.share(test_split.batches(recipe.batch_size, drop_remainder=drop_test))
    steps_per_epoch = (train_split.num_examples // recipe.batch_size if drop_train
                       else math.ceil(train_split.num_examples / recipe.batch_size))

    previous_policy = keras.mixed_precision.global_policy()
    if mixed_precision:
        keras.mixed_precision.set_global_policy(MIXED_PRECISION[mixed_precision])
    start = time.perf_counter()
    checkpoints = Checkpoints(paths["backup"])
    try:
        with distribution.scope():
            model = load(name, weights=init_weights, num_classes=train_split.num_classes,
                         input_shape=model_shape, classifier_activation=None, **model_options)
            if sync_bn:
                synchronize_batch_norm(model)
            wrapper = training_model(model, stats, recipe.augmentation, seed, objective)
            compile_training(wrapper, recipe, steps_per_epoch, train_split.num_classes)
            distribution.prepare(wrapper)
            if chief:
                resume_epoch = checkpoints.restore(wrapper)
            else:  # the chief's checkpoint, if any
                resume_epoch = checkpoints.epoch = restore_from and Checkpoints(restore_from).restore(wrapper)
            if resume_epoch is not None:
                if resume_epoch > recipe.epochs:
                    raise ValueError(f"{paths['backup']} holds a checkpoint after epoch {resume_epoch}, more than "
                                     f"the {recipe.epochs} epochs asked for: pass the run's own --epochs, or "
                                     f"{START_OVER}.")
                print(f"Resuming from the checkpoint after epoch {resume_epoch} in {paths['backup']}"
                      + (": training had finished; saving, measuring and writing the record"
                         if resume_epoch == recipe.epochs else ""))
                trim_log(paths["log"], resume_epoch)
                if hasattr(train_batches, "set_epoch"):
                    train_batches.set_epoch(resume_epoch)  # the shuffling order the uninterrupted run had
            callbacks = [
                EpochInfo(),
                BestWeights(model, paths["best"], paths["backup"] / "best.json"),
                EpochLog(str(paths["log"]), append=True),
                keras.callbacks.TerminateOnNaN(),
            ]
            if _tensorboard_available():
                callbacks.append(keras.callbacks.TensorBoard(str(paths["tensorboard"])))
            elif chief:
                print("TensorBoard logs skipped: TensorFlow and tensorboard are not both installed "
                      '(pip install -e ".[tf-cpu]").', file=sys.stderr)
            callbacks.append(checkpoints)  # last: an epoch is done once all its files are written
            if (resume_epoch or 0) < recipe.epochs:
                # shuffle=False: the batches are shuffled already, by seed and epoch (Batches); Keras'
                # own shuffle would reorder them with Python's global random state, which neither a
                # resumed run nor the other processes of a cluster share.
                wrapper.fit(train_batches, validation_data=test_batches, epochs=recipe.epochs, shuffle=False,
                            initial_epoch=resume_epoch or 0, callbacks=callbacks, verbose=verbosity(verbose))
            if checkpoints.diverged:
                last = (f"the checkpoint after epoch {checkpoints.epoch} is kept in {paths['backup']}: run again "
                        "to resume from it (with a lower learning rate, say), or with --overwrite to start over"
                        if checkpoints.epoch else "there is no earlier checkpoint to resume from")
                raise FloatingPointError(
                    f"Training {name} diverged in epoch {checkpoints.diverged[0] + 1} (the loss is not finite); "
                    f"no weights or record were written, and {last}."
                )
            save_weights(model, paths["weights"])
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    wall = time.perf_counter() - start
    if not chief:
        print(f"{name}: trained as a worker of {distribution.description}; the chief writes the "
              "weights and the record")
        return None

    # Measure the saved file, not the in-memory model: what users load is what is reported.
    evaluated = load(name, weights=str(paths["weights"]), num_classes=train_split.num_classes,
                     input_shape=model_shape, classifier_activation=None, **model_options)
    accuracy = evaluate_split(evaluated, test_split, stats, batch_size=recipe.batch_size, verbose=verbose)
    log_rows = read_log(paths["log"])
    command = command or f"keras_attn_zoo.training.train({name!r}, {os.fspath(data)!r}, {recipe.name!r}, ...)"
    record = run_record(
        name, paths["weights"], train_split, test_split, model_shape, stats, test_kwargs, accuracy, command, recipe,
        log_rows,
        objective=objective_record(getattr(wrapper, "dat_config", objective)),  # layers resolved
        model_options=model_options,
        epochs_completed=checkpoints.epoch,
        wall_time_last_run_s=round(wall, 1),
        resumed_after_epoch=resume_epoch,
        strategy=distribution.description,
        mixed_precision=mixed_precision,
        sync_batch_norm=sync_bn,
        seed=seed,
        commit=started_with,
        **({"resumed_with_commit": commit} if commit != started_with else {}),
    )
    if len(log_rows) != checkpoints.epoch:
        print(f"WARNING: {paths['log']} has {len(log_rows)} rows for {checkpoints.epoch} epochs", file=sys.stderr)
    write_json(paths["record"], record)
    shutil.rmtree(paths["backup"])  # only now: a kill before the record resumes (and finishes) the run
    print(f"Wrote {paths['weights']} and {paths['record']}: {accuracy['data']}: {accuracy_text(accuracy)}")
    return record


def run_record(name, weights_file, train_split, test_split, model_shape, stats, test_kwargs, accuracy, command,
               recipe, log_rows, **training):
    """A run's training record (``<name>.json`` beside its weights; what ``publish`` reads).

    Args:
        name: the registry name.
        weights_file: the saved bare model's ``.weights.h5``.
        train_split: the split it trained on.
        test_split: the split it was measured on.
        model_shape: the model's input shape.
        stats: the ``ChannelStats`` it trained with.
        test_kwargs: how test images were loaded (``data_transforms``).
        accuracy: :func:`evaluate_split`'s measurement of the saved file.
        command: the command line that ran it.
        recipe: the :class:`~keras_attn_zoo.training.recipes.Recipe`.
        log_rows: the per-epoch log's rows (their ``epoch_seconds`` add up to ``time_s``).
        **training: the run's other facts (``epochs_completed``, ``strategy``, ``seed``,
            ``commit``...), in the record's ``training`` section.
    """
    weights_file = Path(weights_file)
    return {
        "model": name,
        "file": weights_file.name,
        "sha256": sha256(weights_file),
        "size": weights_file.stat().st_size,
        "num_classes": train_split.num_classes,
        "input_shape": list(model_shape),
        "class_names": list(train_split.class_names),
        "dataset": train_split.dataset,
        "preprocessing": {**stats.to_dict(), "eval": {k: (list(v) if isinstance(v, tuple) else v) for k, v in test_kwargs.items()}},
        "accuracy": {**accuracy, "command": command, "date": utc_now()},
        "training": {
            "data": train_split.description,
            **({"skipped_images": list(dict.fromkeys([*train_split.skipped, *test_split.skipped]))}
               if train_split.skipped or test_split.skipped else {}),
            "recipe": recipe.to_dict(),
            "time_s": round(sum(float(r.get("epoch_seconds") or 0) for r in log_rows), 1),
            "hardware": hardware(),
            "software": f"keras {keras.__version__}, backend {backend_version()}",
            "command": command,
            **training,
            "date": utc_now(),
        },
    }


def _drop_remainders(distribution, batch_size, *splits):
    """Whether each split must drop its last batch: JAX shards every batch evenly over the
    devices, so a batch size must divide by their number (tf.distribute takes any batch)."""
    if distribution.distribution is None:
        return (False,) * len(splits)
    replicas = distribution.num_replicas
    if batch_size % replicas:
        raise ValueError(f"The batch size {batch_size} must be a multiple of the {replicas} devices.")
    return tuple(split.num_examples % batch_size % replicas != 0 for split in splits)


def read_log(path):
    """The rows of a run's ``training_log.csv`` (dicts of strings), none if it has no log yet."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def utc_now():
    """The time now, UTC, to the second, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def backend_version():
    """The backend and its version, e.g. "tensorflow 2.21.0" (the name alone if not importable)."""
    backend = keras.backend.backend()
    try:
        module = __import__(backend if backend != "torch" else "torch")
        return f"{backend} {module.__version__}"
    except ImportError:
        return backend


def hardware():
    """The machine in words: CPU model and cores, and accelerators if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    accelerators = []
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            accelerators.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
    elif backend == "jax":
        import jax

        accelerators = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
    text = f"{cores} CPU cores ({cpu})"
    if accelerators:
        text += ", " + ", ".join(f"{accelerators.count(a)} x {a}" for a in sorted(set(accelerators)))
    return text


def git_commit():
    """The repository's commit (with "-dirty" if tracked files changed), or "unknown"."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


# The checkout this package runs from (None when installed elsewhere): records name paths
# relative to it, as a user of the repository types them.
CHECKOUT = Path(__file__).resolve().parents[2]
CHECKOUT = CHECKOUT if (CHECKOUT / "setup.cfg").is_file() and (CHECKOUT / "keras_attn_zoo").is_dir() else None


def _as_typed(argument, root):
    """``argument`` with an absolute path (alone, or after ``--option=``) in ``root`` or beside
    it (``../shared``, ``../runs``) made relative to ``root``; anything else unchanged."""
    option, equals, value = argument.partition("=") if argument.startswith("--") else ("", "", argument)
    if root is None or not os.path.isabs(value):
        return argument
    relative = os.path.relpath(value, root)
    if relative.startswith(os.path.join(os.pardir, os.pardir)):  # beyond the checkout's folder (/tmp/...)
        return argument
    return f"{option}{equals}{relative}"


def command_line(prog, argv, root=CHECKOUT):
    """A shell-quoted command line for records, as a user of the repository would type it: an
    absolute path in or beside the checkout ``root`` (this machine's ``/work/shared/data/...``)
    is written relative to it (``../shared/data/...``); others (``/tmp/...``) stay absolute. Defaults to the checkout this package runs from;
    None keeps every argument as given."""
    return " ".join(shlex.quote(_as_typed(a, root)) for a in [prog, *argv])
