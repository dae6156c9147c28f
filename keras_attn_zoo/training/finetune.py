"""Fine-tune a pretrained registry model on your own images: ``keras-attn-zoo finetune``.
With ``weights=None`` (``--weights none``, ``--from-scratch``) the same recipe trains from random
initialisation: the baseline that says what the pretrained weights bring.

>>> from keras_attn_zoo import fine_tune
>>> result = fine_tune("fa_resnet20", "my_photos/", weights="cifar10")   # my_photos/<class>/*.jpg
>>> result.model_path, result.val_accuracy
(PosixPath('runs/fa_resnet20_finetune/fa_resnet20_finetuned.keras'), 0.93)

What it does, following Keras' transfer-learning guide:

1. Loads the model with its pretrained weights and new class-sized layers for your classes (the
   classifier and, for ABN, the attention branch's class-sized convolutions; for PAYA, every
   module's output heads, whose masks' and head gates' convolutions still come from the
   weights, and the global gate ``paya_gate``); everything else
   comes from the weights, and the report says which layers were reused and which are new
   (also new: the layers a converted checkpoint had nothing for, ``WeightRecord.fresh_layers``,
   such as the attention branch of an ABN model converted from torchvision's ResNet). The
   new classifier starts at zero (uniform scores): a random one maps the pretrained features to
   classes at random, which a short first phase may not undo.
2. Phase 1 (``freeze_epochs``): only the new layers train; the pretrained layers are frozen,
   their BatchNormalization layers in inference mode (``trainable=False`` in Keras 3).
3. Phase 2 (``epochs``): every pretrained layer is unfrozen except BatchNormalization, which
   stays in inference mode so that a small data set does not overwrite its statistics; the
   learning rate is lower.

Images are resized to the model's input and normalised with the statistics the pretrained
weights were trained with (recorded in their manifest row or training record); from random
initialisation, or from a weight file without a record, with ``mean`` / ``std`` if given, else
with those measured on the training split (for a weight file, said in a warning). The best epoch
(validation top-1) is saved as a ``.keras`` file that also holds the class names and that
normalisation (``keras_attn_zoo.modelfile``), so ``keras-attn-zoo predict photo.jpg --model
best.keras`` prints your class names. ABN models train with both branches' losses, PAYA models
with the authors' loss.

A run writes into ``output_dir``: ``<name>_finetuned.keras``, ``finetune.json`` (the record:
data, classes, reused / new layers, per-phase settings, validation accuracy of the best and of the
last epoch, the held-out test accuracy when there is a ``test/`` folder beside ``val/``, time),
``training_log.csv``; a killed run started again with the same call resumes from its last
finished epoch.
"""

import csv
import dataclasses
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import keras

from keras_attn_zoo.convert import (
    checkpoint_architecture, convert_torchvision_checkpoint, is_checkpoint, load_state_dict, target_spec,
)
from keras_attn_zoo.data import IMAGENET_STATS, ChannelStats, channel_stats, load_splits, split_folders
from keras_attn_zoo.loading import load_weights_file, weights_num_classes
from keras_attn_zoo.modelfile import save_model
from keras_attn_zoo.models.paya import PAYAModel, paya_layers, reset_gate, reuse_attention
from keras_attn_zoo.registry import get_spec, load_with_report
from keras_attn_zoo.training.checkpoints import (
    START_OVER,
    Checkpoints,
    adopt_keras_backup,
    checkpoint_epoch,
    read_json,
    remove_paths,
    run_lock,
    save_weights,
    trim_log,
    write_json,
)
from keras_attn_zoo.training.dat import objective_config, objective_record
from keras_attn_zoo.training.evaluate import confusion_matrix
from keras_attn_zoo.training.trainer import (
    LOG_FILE,
    STATS_SAMPLE,
    BestWeights,
    EpochInfo,
    EpochLog,
    classification_metrics,
    hardware,
    training_model,
    utc_now,
    verbosity,
)
from keras_attn_zoo.weights import (
    is_path, record_path, recorded_stats, resolve, sha256, trained_record, weight_record,
)

RECORD = "finetune.json"
CONVERTED = "converted_checkpoint.weights.h5"  # a checkpoint converted for the run, removed when it ends
UNSAFE_OPT_IN = ("convert it with python scripts/convert_torchvision.py CHECKPOINT --model {name} "
                 "-o converted.weights.h5 --unsafe-pickle and fine-tune from converted.weights.h5")
PHASES = ("frozen", "unfrozen")  # their checkpoints: backup/frozen, backup/unfrozen
PHASE_TEXTS = {  # (record name, what trains, console line) of each phase
    "pretrained": (("frozen backbone", "new layers", "new layers only (backbone frozen)"),
                   ("unfrozen backbone", "all but the pretrained BatchNormalization layers",
                    "backbone unfrozen, BatchNormalization frozen")),
    "scratch": (("all layers, learning_rate", "all layers", "every layer (random initialisation)"),
                ("all layers, fine_tune_learning_rate", "all layers",
                 "every layer (random initialisation), the fine-tuning learning rate")),
}


@dataclasses.dataclass
class FineTuneResult:
    """What :func:`fine_tune` made.

    Attributes:
        model: the best model (bare: takes normalised images, outputs class scores).
        model_path: the ``.keras`` file it was saved to (with class names and normalisation).
        class_names: the classes, in label order.
        val_accuracy: validation top-1 of the best epoch.
        reused_layers: names of the layers loaded from the pretrained weights.
        new_layers: names of the layers initialised fresh for the new classes.
        record: the run record written to ``finetune.json``.
    """

    model: keras.Model
    model_path: Path
    class_names: list
    val_accuracy: float
    reused_layers: list
    new_layers: list
    record: dict


def fine_tune(
    name,
    data,
    weights="cifar10",
    *,
    output_dir=None,
    epochs=10,
    freeze_epochs=5,
    batch_size=32,
    learning_rate=1e-3,
    fine_tune_learning_rate=1e-4,
    validation_split=0.2,
    image_size=None,
    augmentation="flip",
    limit=None,
    seed=0,
    overwrite=False,
    verbose="auto",
    objective=None,
    mean=None,
    std=None,
    skip_bad_images=False,
):
    """Fine-tune registry model ``name`` from pretrained ``weights`` on the images in ``data``.

    Args:
        name: a registered model name, e.g. "fa_resnet20".
        data: a folder (or archive) of ``<class>/<image>`` files (JPEG, PNG, any size), or with
            ``train/<class>/`` and ``val/<class>/`` (or ``test/``) split folders; with ``val/``
            and ``test/`` both, the best epoch is chosen on ``val/`` and ``test/`` is measured
            once, at the end, on the saved model.
        weights: a published tag (``list_models(pretrained=True)``), a tag made on this
            machine (``"torchvision"`` after ``scripts/convert_torchvision.py --tag
            torchvision``), a ``.weights.h5`` file (written by ``keras-attn-zoo train`` or a
            converter, or any other with ``mean`` / ``std``), torchvision's ResNet checkpoint
            itself (``resnet50-11ad3fa6.pth``, for the ImageNet ResNets of its depth: converted
            into ``output_dir`` first, its depth checked against the model's, normalised with
            torchvision's ImageNet mean and std unless ``mean`` / ``std`` are given), or None:
            the same recipe from random initialisation, every layer (BatchNormalization
            included) training from the first epoch. Layers the weights have nothing for (an
            attention branch or SE layers on torchvision's ResNet) train as new layers.
            Defaults to "cifar10".
        output_dir: the run's folder. Defaults to ``runs/<name>_finetune``.
        epochs: epochs with the backbone unfrozen (BatchNormalization stays frozen). 0 trains
            only the new layers. Defaults to 10.
        freeze_epochs: epochs before that with only the new layers training. Defaults to 5.
        batch_size: Defaults to 32.
        learning_rate: Adam's learning rate while the backbone is frozen. Defaults to 1e-3.
        fine_tune_learning_rate: Adam's learning rate once it is unfrozen. Defaults to 1e-4.
        validation_split: fraction of each class held out for validation (seeded) when ``data``
            has no split folders. Defaults to 0.2.
        image_size: the model's input side; images are resized to it. Defaults to the model's
            (32 for the CIFAR models).
        augmentation: "flip" (random horizontal flips), "cifar" (pad-and-crop and flips),
            "imagenet" or "none". Defaults to "flip".
        limit: use a seeded subset of this many training images.
        seed: seed of the split, the new layers, shuffling and augmentation. Defaults to 0.
        overwrite: start over: remove this run's files in ``output_dir``, of a finished run or
            of an unfinished one (its checkpoints); other files stay. Defaults to False.
        verbose: 1 for progress bars, 2 for a line per epoch, 0 for silence; "auto" is a
            progress bar on a terminal. Defaults to "auto".
        objective: None (cross-entropy) or "dat" / DAT settings: train both phases with the
            discriminative-attention objective (``keras_attn_zoo.training.dat``; in first order
            its terms reach only layers below the DAT layers, so they do nothing while the
            backbone is frozen). Defaults to None.
        mean, std: per-channel mean and standard deviation on the [0, 1] scale to normalise
            with, for ``weights=None`` or a weight file without a training record; weights that
            record theirs refuse others. Defaults to None: the record's, else measured on the
            training split.
        skip_bad_images: leave out (and name, on stderr and in the record) the images that cannot
            be used: not images, truncated, corrupt or over
            ``keras_attn_zoo.decoding.MAX_IMAGE_PIXELS``. Without it they fail before any
            training, all of them named in one error. Defaults to False.

    Returns:
        A :class:`FineTuneResult`.
    """
    spec = get_spec(name)
    name = spec.name
    for arg, value in (("epochs", epochs), ("freeze_epochs", freeze_epochs)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{arg} must be a non-negative integer, got {value!r}.")
    if epochs + freeze_epochs == 0:
        raise ValueError("Nothing to train: epochs and freeze_epochs are both 0.")
    objective_config(objective)  # bad settings fail before anything is loaded
    checkpoint = weights if is_checkpoint(weights) else None
    if checkpoint is not None:  # converted into the run's folder, under its lock
        state = load_state_dict(checkpoint, opt_in=UNSAFE_OPT_IN.format(name=name))
        target_spec(name, checkpoint_architecture(state))  # a checkpoint of another depth fails here
        del state
    # for a checkpoint, only mean / std (checked here; the converter records them or torchvision's)
    stats, stats_source = _normalization(name, None if checkpoint else weights, mean, std, spec.input_shape[-1])
    side = image_size or spec.input_shape[0]
    model_shape = (side, side, spec.input_shape[-1])
    out = Path(output_dir) if output_dir is not None else Path("runs") / f"{name}_finetune"
    model_path = out / f"{name}_finetuned.keras"
    paths = {"record": out / RECORD, "log": out / LOG_FILE, "best": out / "best.weights.h5",
             "frozen": out / "after_frozen_phase.weights.h5", "backup": out / "backup",
             "best_state": out / "best.json", "converted": out / CONVERTED,
             "converted_record": out / record_path(CONVERTED)}
    with run_lock(out):
        return _fine_tune(spec, name, data, weights, (stats, stats_source), out, model_path, paths, model_shape,
                          checkpoint, epochs=epochs, freeze_epochs=freeze_epochs, batch_size=batch_size,
                          learning_rate=learning_rate,
                          fine_tune_learning_rate=fine_tune_learning_rate, validation_split=validation_split,
                          augmentation=augmentation, limit=limit, seed=seed, overwrite=overwrite, verbose=verbose,
                          objective=objective, skip_bad_images=skip_bad_images)


def _fine_tune(spec, name, data, weights, known_stats, out, model_path, paths, model_shape, checkpoint, *, epochs,
               freeze_epochs, batch_size, learning_rate, fine_tune_learning_rate, validation_split, augmentation,
               limit, seed, overwrite, verbose, objective, skip_bad_images):
    """:func:`fine_tune`'s work, holding the output folder's lock; ``known_stats`` is
    :func:`_normalization`'s answer (for a torchvision ``checkpoint``, the ``mean`` / ``std``
    given with it, or none)."""
    called = time.perf_counter()
    if overwrite:  # start over: only this run's files (out may hold others), finished or not
        remove_paths(*paths.values(), model_path)
    elif paths["record"].exists():
        raise ValueError(f"{out} holds a finished fine-tuning run ({RECORD}); pass overwrite=True "
                         "(--overwrite) or another output folder.")
    if checkpoint is not None:
        given = known_stats[0]
        weights = str(_converted(spec, checkpoint, paths["converted"], stats=given or IMAGENET_STATS))
        known_stats = (recorded_stats(name, weights),
                       "given" if given else "torchvision's ImageNet mean and std, recorded by the converter")
    for phase in PHASES:
        adopt_keras_backup(paths["backup"] / phase)
    resuming = paths["frozen"].exists() or any(
        checkpoint_epoch(paths["backup"] / phase) is not None for phase in PHASES)
    if not resuming:
        remove_paths(paths["log"], paths["best"], paths["best_state"], paths["backup"])

    keras.utils.set_random_seed(seed)
    common = {"image_size": model_shape[:2], "holdout": validation_split, "seed": seed}
    folders = split_folders(data)
    requests = {"train": ("train", {"limit": limit})}
    if "test" in folders and folders & {"val", "validation"}:  # the test images stay unseen until the end
        requests.update(val=("validation", {}), test=("test", {}))
    else:
        requests["val"] = ("test", {})
    splits = load_splits(data, requests, skip_bad_images=skip_bad_images, **common)
    train_split, val_split, test_split = splits["train"], splits["val"], splits.get("test")
    if any(train_split.class_names != split.class_names for split in (val_split, test_split) if split is not None):
        raise ValueError(f"The training, validation and test images of {data} have different classes.")
    if train_split.num_classes < 2:
        raise ValueError(f"{data} has {train_split.num_classes} class; fine-tuning needs at least 2 class folders.")
    classes = list(train_split.class_names)
    stats, stats_source = _measured_stats(*known_stats, train_split, weights, seed)

    with warnings.catch_warnings():  # the report below says what was reused
        warnings.simplefilter("ignore")
        model, new_layers = load_with_report(name, weights, num_classes=len(classes), input_shape=model_shape,
                                             new_head=True, classifier_activation="softmax")
    if weights is None:  # from scratch: every layer is new
        new_layers = [layer.name for layer in model.layers if layer.weights]
    elif isinstance(model, PAYAModel):
        new_layers = _paya_new_layers(model, spec, weights, model_shape, new_layers)
    new = set(new_layers)
    if spec.classifier in new:  # start from uniform scores, not from a random mapping of good features
        classifier = model.get_layer(spec.classifier)
        classifier.set_weights([0 * w for w in classifier.get_weights()])
    reused = [layer.name for layer in model.layers if layer.weights and layer.name not in new]
    new_params = sum(math.prod(w.shape) for layer in model.layers if layer.name in new for w in layer.weights)
    new_text = (f"all {len(new_layers)} layers new" if weights is None
                else f"reused {len(reused)} layers, new {', '.join(new_layers)}")
    print(f"{name} ({weights or 'random initialisation'}) -> {len(classes)} classes {classes}: {new_text} "
          f"({new_params:,} parameters); {train_split.description} -> {val_split.description}; inputs "
          f"normalised with mean {list(stats.mean)}, std {list(stats.std)} ({stats_source})")
    if resuming:
        print(f"Resuming the interrupted run in {out}"
              + (" after its frozen-backbone phase" if paths["frozen"].exists() else ""))
    if paths["frozen"].exists():
        try:
            model.load_weights(paths["frozen"])
        except (OSError, ValueError) as e:
            raise ValueError(f"{paths['frozen']} (the weights after the frozen-backbone phase) cannot be read "
                             f"({type(e).__name__}: {e}): {START_OVER}.") from e

    train_batches = train_split.batches(batch_size, shuffle=True, seed=seed)
    val_batches = val_split.batches(batch_size)
    best = BestWeights(model, paths["best"], paths["best_state"])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    phases = []
    # Each phase's (record name, what trains, console line); from random initialisation every layer is new.
    frozen, unfrozen = PHASE_TEXTS["pretrained" if weights is not None else "scratch"]
    if freeze_epochs and not paths["frozen"].exists():
        _set_trainable(model, new, backbone=False)
        _fit(model, stats, augmentation, seed, train_batches, val_batches, learning_rate, freeze_epochs,
             paths["backup"] / "frozen", paths["log"], best, verbose, phase=frozen[2], objective=objective)
        save_weights(model, paths["frozen"])
    if freeze_epochs:
        phases.append({"phase": frozen[0], "epochs": freeze_epochs, "optimizer": "adam",
                       "learning_rate": learning_rate, "trainable": frozen[1]})
    if epochs:
        _set_trainable(model, new, backbone=True)
        _fit(model, stats, augmentation, seed, train_batches, val_batches, fine_tune_learning_rate, epochs,
             paths["backup"] / "unfrozen", paths["log"], best, verbose, phase=unfrozen[2],
             initial_epoch=freeze_epochs, objective=objective)
        phases.append({"phase": unfrozen[0], "epochs": epochs, "optimizer": "adam",
                       "learning_rate": fine_tune_learning_rate, "trainable": unfrozen[1]})
    wall = time.perf_counter() - start

    model.load_weights(paths["best"])
    for layer in model.layers:  # the saved model is ready for further training
        layer.trainable = True
    best_epoch = read_json(paths["best_state"], "the best epoch", "epoch")
    with open(paths["log"], newline="") as f:
        last = list(csv.DictReader(f))[-1]
    test = None
    if test_split is not None:
        matrix = confusion_matrix(model, test_split, stats, batch_size)
        test = {"top1": round(float(np.trace(matrix) / matrix.sum()), 6), "images": int(matrix.sum()),
                "data": test_split.description}
    record = {
        "model": name,
        "weights": None if weights is None else str(checkpoint or weights),
        "class_names": classes,
        "num_classes": len(classes),
        "input_shape": list(model_shape),
        "preprocessing": stats.to_dict(),
        "preprocessing_source": stats_source,
        "data": {"train": train_split.description, "validation": val_split.description,
                 **({"test": test_split.description} if test_split is not None else {})},
        "skipped_images": list(dict.fromkeys(m for split in splits.values() for m in split.skipped)),
        "validation_split": validation_split,
        "reused_layers": reused,
        "new_layers": list(new_layers),
        "augmentation": augmentation,
        "batch_size": batch_size,
        "phases": phases,
        "objective": objective_record(objective),
        "best_epoch": best_epoch["epoch"],
        "val_accuracy": round(best_epoch["val_accuracy"], 6),
        "last_epoch": freeze_epochs + epochs,
        "last_val_accuracy": round(float(last["val_accuracy"]), 6),
        "test_accuracy": test,
        "time_s": round(wall, 1),
        "hardware": hardware(),
        "software": f"keras {keras.__version__}, backend {keras.backend.backend()}",
        "seed": seed,
        "date": utc_now(),
    }
    save_model(model, model_path, {key: record[key] for key in (
        "model", "weights", "class_names", "preprocessing", "input_shape", "validation_split", "seed")})
    record["wall_time_s"] = round(time.perf_counter() - called, 1)
    write_json(paths["record"], record)
    for key in ("best", "frozen", "best_state", "converted", "converted_record"):
        paths[key].unlink(missing_ok=True)
    shutil.rmtree(paths["backup"], ignore_errors=True)
    print(f"Wrote {model_path}: best validation top-1 {record['val_accuracy']:.4f} at epoch {record['best_epoch']}, "
          f"last epoch ({record['last_epoch']}) {record['last_val_accuracy']:.4f}, on {val_split.description}. The "
          "best epoch is chosen on these same images, so its number is optimistic"
          + (f"; on the held-out test images, never used to choose, top-1 {test['top1']:.4f} ({test['data']})."
             if test else ": for an unbiased one, add a test/ folder beside train/ and val/ (measured once, at the end).")
          + f" Total wall time {record['wall_time_s']:.0f} s (training {record['time_s']:.0f} s).")
    return FineTuneResult(model, model_path, classes, record["val_accuracy"], reused, list(new_layers), record)


def _normalization(name, weights, mean, std, channels):
    """``(statistics, where they come from)`` as far as known before the data is read: the
    weights' record, else ``mean`` / ``std``; ``(None, None)`` to measure them on the training split."""
    if (mean is None) != (std is None):
        raise ValueError("Pass both mean and std (--mean and --std), or neither.")
    given = None
    if mean is not None:
        given = ChannelStats(tuple(mean), tuple(std))
        if len(given.mean) != channels:
            raise ValueError(f"mean and std need one value per input channel ({channels}), got {list(given.mean)}.")
    if weights is None:
        return given, given and "given"
    if is_path(weights):
        resolve(name, weights)  # a missing file or a folder fails here, before any data is read
    record = weight_record(name, weights)
    recorded = record.normalization if record is not None else None
    if recorded is None:
        return given, given and "given"
    if given is not None and given != recorded:
        raise ValueError(
            f"The weights {weights} were trained with mean {list(recorded.mean)} and std {list(recorded.std)} "
            "(their record): mean= and std= (--mean, --std) are for weights that record none, or none at all."
        )
    return recorded, "recorded with the weights"


def _measured_stats(stats, source, train_split, weights, seed):
    """``(stats, source)``, or, if ``stats`` is None, those of the training split (with a warning
    for weights without a record)."""
    if stats is not None:
        return stats, source
    images = train_split.sample_images(STATS_SAMPLE, seed=seed)
    stats, source = channel_stats(images), f"measured on the training split, {len(images):,} images"
    if weights is not None:
        where = (f"no training record {record_path(weights)}" if is_path(weights) and not os.path.isfile(
            record_path(weights)) else "a record without mean and std")
        print(f"WARNING: {weights} has {where}: its inputs are normalised with the mean and std of the "
              f"training split instead, {list(stats.mean)} and {list(stats.std)}. If you know those the "
              "weights were trained with, pass them: --mean R G B --std R G B (fine_tune(mean=, std=)).",
              file=sys.stderr)
    return stats, source


def _converted(spec, checkpoint, path, stats=IMAGENET_STATS):
    """torchvision's ResNet checkpoint converted into ``spec``'s model at ``path`` (its record
    beside it, with the normalisation ``stats``), or the file a killed run converted from the
    same checkpoint (by sha256) with the same ``stats``: its fresh layers keep the values the
    run started with."""
    record = trained_record(path) if path.is_file() else None
    if (record is not None and record.model == spec.name and record.normalization == stats
            and record.converted_from.get("sha256") == sha256(checkpoint)):
        return path
    result = convert_torchvision_checkpoint(checkpoint, spec.name, path, stats=stats,
                                            opt_in=UNSAFE_OPT_IN.format(name=spec.name))
    fresh = f"; fresh (trained as new layers): {', '.join(result.fresh_layers)}" if result.fresh_layers else ""
    print(f"Converted {checkpoint} ({result.architecture.title}, {result.record['converted_from']['layout']} "
          f"layout) into {path}{fresh}")
    return path


def _paya_new_layers(model, spec, weights, model_shape, new_layers):
    """PAYA: the modules (new: their output heads are class-sized) keep the pretrained masks'
    and head gates' convolutions; the global gate is new too. Returns the new layers' names."""
    path = resolve(spec.name, weights)
    file_classes = weights_num_classes(spec.name, weights, path)
    pretrained = spec.build(classes=file_classes, input_shape=model_shape, name=spec.name)
    load_weights_file(pretrained, path)
    modules = [layer.name for layer in paya_layers(model) if layer.name in new_layers]
    reuse_attention(model, pretrained, modules)
    reset_gate(model)
    if modules:
        print(f"PAYA: {', '.join(modules)} reuse their masks' and head gates' convolutions; their "
              "output heads and paya_gate are new.")
    return [*new_layers, *([] if "paya_gate" in new_layers else ["paya_gate"])]


def _set_trainable(model, new_layers, backbone):
    """New layers train; pretrained ones only with ``backbone``, and never their BatchNormalization
    (``trainable=False`` keeps a Keras 3 BatchNormalization layer in inference mode)."""
    for layer in model.layers:
        if layer.name in new_layers:
            layer.trainable = True
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = backbone


def _fit(model, stats, augmentation, seed, train_batches, val_batches, learning_rate, epochs, backup, log,
         best, verbose, phase, initial_epoch=0, objective=None):
    """One phase: a fresh wrapper (trainable flags are read when it compiles) trained with Adam,
    resumed from its checkpoint in ``backup`` if it has one. Epochs are numbered on across both
    phases (in the log and the checkpoints' names)."""
    wrapper = training_model(model, stats, augmentation, seed, objective)
    wrapper.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),  # the model ends in a softmax
        metrics=classification_metrics(model.output_shape[-1]),
    )
    checkpoints = Checkpoints(backup)
    restored = checkpoints.restore(wrapper)
    start, end = (initial_epoch if restored is None else restored), initial_epoch + epochs
    if not initial_epoch <= start <= end:
        raise ValueError(f"{backup} holds a checkpoint after epoch {restored}, outside this phase's epochs "
                         f"{initial_epoch + 1}-{end}: pass the run's own --epochs / --freeze-epochs, or {START_OVER}.")
    trim_log(log, start)  # the log's rows of an epoch killed before its checkpoint
    print(f"Phase: {phase}; {epochs} epochs, Adam lr {learning_rate}"
          + (f"; resuming after epoch {restored}" if restored is not None else ""))
    callbacks = [
        EpochInfo(),
        best,
        EpochLog(str(log), append=True),
        keras.callbacks.TerminateOnNaN(),
        checkpoints,  # last: an epoch is done once all its files are written
    ]
    if start < end:
        if hasattr(train_batches, "set_epoch"):
            train_batches.set_epoch(start)  # the shuffling order of an uninterrupted run
        # shuffle=False: the batches are shuffled already, by seed and epoch (as in the trainer)
        wrapper.fit(train_batches, validation_data=val_batches, epochs=end, initial_epoch=start, shuffle=False,
                    callbacks=callbacks, verbose=verbosity(verbose))
    if checkpoints.diverged:
        last = (f"the checkpoint after epoch {checkpoints.epoch} is kept in {backup}: run again to resume from it, "
                "or with --overwrite to start over" if checkpoints.epoch else "no checkpoint of this phase to resume from")
        raise FloatingPointError(f"Fine-tuning diverged in epoch {checkpoints.diverged[0] + 1} ({phase}: the loss "
                                 f"is not finite); no model or record was written, and {last}.")
