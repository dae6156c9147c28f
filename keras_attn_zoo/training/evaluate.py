"""Top-1 / top-5 of weights on a data split, top-1, per-class recall and the confusion matrix of a
fine-tuned ``.keras`` file on an image folder, and ``docs/results.md``: our measured error beside
the paper's for every published weight.

The paper's numbers come from the registry's ``PaperResult`` rows, ours from the manifest: the
results page is generated from those two, never typed.
"""

import datetime
import math
import re
from pathlib import Path

import numpy as np

import keras

from keras_attn_zoo import weights as weights_lib
from keras_attn_zoo.data import load_split, recorded_stats
from keras_attn_zoo.modelfile import read_metadata
from keras_attn_zoo.registry import PAPERS, get_spec, load_for_inference
from keras_attn_zoo.training.trainer import evaluate_split, training_model

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results.md"


def _weights_record(name, weights):
    """The :class:`~keras_attn_zoo.weights.WeightRecord` of the weights: their classes, input
    shape, class names, normalisation and evaluation transform."""
    record = weights_lib.weight_record(name, weights)
    if record is None:
        raise FileNotFoundError(
            f"{weights} has no training record {weights_lib.record_path(weights)}; evaluate needs "
            "its number of classes and normalisation (files written by `keras-attn-zoo train` have one)."
        )
    return record


def evaluate(name, weights, data, split="test", *, batch_size=256, limit=None, data_dir=None,
             manual_dir=None, seed=0, verbose="auto", skip_bad_images=False, per_class=False):
    """Measure weights of a model on a data split, with the weights' own preprocessing.

    Args:
        name: a registered model name.
        weights: a published tag or a ``.weights.h5`` file written by ``keras-attn-zoo train``.
        data: a data source (see ``keras_attn_zoo.data.load_split``).
        split: the split to measure on. Defaults to "test".
        batch_size: Defaults to 256.
        limit: measure on a seeded random subset of this many images.
        data_dir, manual_dir: as in ``load_split``.
        seed: seed of ``limit``. Defaults to 0.
        verbose: as in :func:`evaluate_split`. Defaults to "auto".
        skip_bad_images: as in ``load_split``. Defaults to False.
        per_class: also count the confusion matrix (a second pass over the split): the result
            then has "class_names", "recall" and "confusion" as :func:`evaluate_model_file`'s.
            Defaults to False.

    Returns:
        ``{"top1", "top5", "top1_error", "split", "images", "data"}`` (no "top5" for 5 or fewer
        classes), and with ``per_class`` the per-class entries.
    """
    name = get_spec(name).name
    record = _weights_record(name, weights)
    # evaluate measures with the recorded normalisation only: it says so (no --mean / --std here)
    recorded_stats(name, weights, fix="evaluate reads it from there (the \"preprocessing\" mean and std "
                                      "that `keras-attn-zoo train` records)")
    transform = {"image_size": record.input_shape[:2], **record.eval_transform}
    data_split = load_split(data, split, limit=limit, seed=seed, data_dir=data_dir,
                            manual_dir=manual_dir, skip_bad_images=skip_bad_images, **transform)
    # Logits, not softmax scores: saturated scores tie, and ties count as hits in top-k.
    loaded = load_for_inference(name, weights, classifier_activation=None)
    if loaded.class_names and tuple(data_split.class_names) != loaded.class_names:
        raise ValueError(
            f"The classes of {data_split.description} ({', '.join(data_split.class_names[:5])}...) "
            f"are not those the weights were trained on ({', '.join(loaded.class_names[:5])}...)."
        )
    result = evaluate_split(loaded.model, data_split, loaded.normalization, batch_size=batch_size, verbose=verbose)
    if per_class:
        names = list(loaded.class_names or data_split.class_names)
        result.update(per_class_counts(confusion_matrix(loaded.model, data_split, loaded.normalization, batch_size),
                                       names))
    return result


def per_class_counts(matrix, names):
    """``{"class_names", "recall", "confusion"}`` of a confusion matrix (rows: true class)."""
    totals = matrix.sum(axis=1)
    return {
        "class_names": list(names),
        "recall": [round(float(matrix[i, i] / totals[i]), 6) if totals[i] else None for i in range(len(names))],
        "confusion": matrix.tolist(),
    }


def confusion_matrix(model, split, stats, batch_size=256):
    """Counts of (true class, predicted class) of a model's top-1 on a split.

    Args:
        model: a classifier taking normalised images.
        split: a ``keras_attn_zoo.data.Split`` with as many classes as the model.
        stats: the ``ChannelStats`` the model was trained with.
        batch_size: Defaults to 256.

    Returns:
        An int64 array (classes, classes): row i counts the images of class i by predicted class.
    """
    classes = model.output_shape[-1]
    if classes != split.num_classes:
        raise ValueError(f"{model.name} has {classes} classes, {split.description} has {split.num_classes}.")
    wrapper = training_model(model, stats, "none")
    batches = split.batches(batch_size)
    items = ((batches[i] for i in range(len(batches))) if isinstance(batches, keras.utils.PyDataset)
             else batches.as_numpy_iterator())
    matrix = np.zeros((classes, classes), "int64")
    for x, y in items:
        predicted = np.argmax(keras.ops.convert_to_numpy(wrapper.predict_on_batch(x)), axis=-1)
        np.add.at(matrix, (np.asarray(y, "int64"), predicted), 1)
    return matrix


def evaluate_model_file(path, data, split="test", *, batch_size=256, limit=None, data_dir=None,
                        skip_bad_images=False, normalization=None):
    """Measure a fine-tuned ``.keras`` file (``keras-attn-zoo finetune``) on an image folder.

    The file's own record gives the class names (the data's must be the same), the normalisation,
    and, for a folder without split folders, the hold-out fraction and seed it was trained with,
    so that "val" / "test" are the images it was validated on.

    Args:
        path: the ``.keras`` file.
        data: a folder or archive of class folders (see ``keras_attn_zoo.data.load_split``).
        split: "train", "val" / "validation" or "test". Defaults to "test".
        batch_size: Defaults to 256.
        limit: measure on a seeded subset of this many images.
        data_dir, skip_bad_images: as in ``load_split``.
        normalization: a ``ChannelStats`` for a file that records none (see
            ``registry.load_for_inference``). Defaults to None.

    Returns:
        ``{"top1", "images", "data", "split", "class_names", "recall" (per class), "confusion"
        (rows: true class, columns: predicted, as lists)}``.
    """
    loaded = load_for_inference(path, normalization=normalization)  # the file's names and normalisation, or an error
    model, stats, metadata = loaded.model, loaded.normalization, read_metadata(path)
    image_size = tuple(model.input_shape[1:3])
    # files fine-tuned before the record held them: fine_tune's defaults (the description says which)
    data_split = load_split(data, split, image_size=image_size, limit=limit, data_dir=data_dir,
                            holdout=metadata.get("validation_split", 0.2), seed=metadata.get("seed", 0),
                            skip_bad_images=skip_bad_images)
    names = list(loaded.class_names or data_split.class_names)
    if list(data_split.class_names) != names:
        raise ValueError(f"The classes of {data_split.description} ({', '.join(data_split.class_names)}) are not "
                         f"those {path} was trained on ({', '.join(names)}).")
    matrix = confusion_matrix(model, data_split, stats, batch_size)
    return {
        "top1": round(float(np.trace(matrix) / matrix.sum()), 6),
        "images": int(matrix.sum()),
        "data": data_split.description,
        "split": data_split.split,
        **per_class_counts(matrix, names),
    }


def confusion_text(result):
    """Per-class recall and the confusion matrix of :func:`evaluate_model_file` (or of
    :func:`evaluate` with ``per_class``) as console lines."""
    names, matrix = result["class_names"], np.asarray(result["confusion"])
    width = max(len(n) for n in names)
    cell = max(6, len(str(matrix.max())) + 2, *(len(n) + 2 for n in names))
    lines = ["per-class recall (the share of each class's images predicted as that class):"]
    for i, (name, recall) in enumerate(zip(names, result["recall"])):
        value = "-" if recall is None else f"{recall:.4f}"
        lines.append(f"  {name:<{width}}  {value:>6}  ({matrix[i, i]}/{matrix[i].sum()})")
    lines.append("confusion matrix (rows: true class, columns: predicted class):")
    lines.append(f"  {'':<{width}}" + "".join(f"{n:>{cell}}" for n in names))
    for name, row in zip(names, matrix):
        lines.append(f"  {name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


def save_confusion_matrix(path, result, title):
    """Draw :func:`evaluate_model_file`'s confusion matrix (counts, rows: true class) as a PNG."""
    from keras_attn_zoo.explain.plots import require_matplotlib

    _, Figure = require_matplotlib("the confusion-matrix picture")
    names, matrix = result["class_names"], np.asarray(result["confusion"])
    side = 2.5 + 0.6 * len(names)
    figure = Figure(figsize=(side + 1.5, side))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, label="images")
    axes.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted class", ylabel="true class",
             title=title)
    axes.title.set_fontsize(10)
    axes.set_xticklabels(names, rotation=45, ha="right")
    axes.set_yticklabels(names)
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center",
                  color="white" if value > matrix.max() / 2 else "black")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return Path(path)


def verify_published(data, *, manifest=None, limit=None, batch_size=256, data_dir=None, verbose=0):
    """Re-measure every published weight of ``data``'s data set and compare with its manifest row.

    Args:
        data: the data source the rows were measured on (e.g. the CIFAR-10 JPEG archive).
        manifest: Defaults to ``weights/manifest.json``.
        limit, batch_size, data_dir, verbose: as in :func:`evaluate` (``limit`` for rows measured
            on a seeded subset).

    Returns:
        A list of ``{"model", "tag", "recorded", "measured", "match"}``: top-1 as recorded and as
        measured now; ``match`` when they agree to the 4 decimals the results page prints.
    """
    dataset = load_split(data, "test", limit=1, data_dir=data_dir).dataset
    checked = []
    for record in weights_lib.published_weights(manifest=manifest):
        if record.dataset != dataset:
            continue
        measured = evaluate(record.model, record.tag, data, record.accuracy.get("split", "test"),
                            batch_size=batch_size, limit=limit, data_dir=data_dir, verbose=verbose)
        recorded = record.accuracy["top1"]
        checked.append({"model": record.model, "tag": record.tag, "recorded": recorded,
                        "measured": measured["top1"], "images": measured["images"],
                        "match": abs(measured["top1"] - recorded) < 5e-5
                        and measured["images"] == record.accuracy["images"]})
    if not checked:
        raise ValueError(f"No published weights were measured on the data set of {data}.")
    return checked


def record_accuracy(name, tag, accuracy, command, manifest=None):
    """Store a new measurement of published weights in their manifest row.

    Returns:
        The updated row.
    """
    manifest = Path(manifest) if manifest is not None else weights_lib.MANIFEST
    rows = weights_lib.published_rows(manifest)
    matches = [r for r in rows if r["model"] == name and r["tag"] == tag]
    if not matches:
        raise ValueError(f"{manifest} has no row {name}:{tag} to record a measurement in.")
    matches[0]["accuracy"] = {**accuracy, "command": command,
                              "date": datetime.date.today().isoformat()}
    weights_lib.write_manifest(rows, manifest)
    return matches[0]


def paper_errors(name, dataset):
    """The paper's reported top-1 errors for the same architecture and data set."""
    def short(paper):
        found = re.search(r"\(([^()]+)\)$", PAPERS[paper])
        return found.group(1) if found else paper

    rows = [r for r in get_spec(name).results if r.dataset == dataset]
    return "; ".join(f"{r.top1_error:.2f}% ({short(r.paper)} Table {r.table})" for r in rows) or "-"


def recipe_text(training):
    """A published run's recipe in words (from its record's ``training``), with what the run set
    beyond the recipe: an objective other than cross-entropy (DAT), builder arguments (a PAYA
    model's ``auxiliary_weight``), a seed other than 0; two tags of one model say how they differ.

    >>> recipe_text({"recipe": {"name": "onecycle", "epochs": 40, "batch_size": 128, "schedule": "onecycle",
    ...              "learning_rate": 0.1, "weight_decay": 0.0005}, "objective": {"name": "dat"}, "seed": 1})
    'onecycle: epochs 40, batch 128, onecycle lr 0.1, wd 0.0005; objective dat; seed 1'
    """
    recipe = training.get("recipe", {})
    text = (f"{recipe.get('name', '?')}: epochs {training.get('epochs_completed', recipe.get('epochs', '?'))}, "
            f"batch {recipe.get('batch_size', '?')}, {recipe.get('schedule', '?')} lr "
            f"{recipe.get('learning_rate', '?')}, wd {recipe.get('weight_decay', '?')}")
    objective = (training.get("objective") or {}).get("name", "cross_entropy")
    extras = [f"objective {objective}"] if objective != "cross_entropy" else []
    extras += [f"{key}={value}" for key, value in (training.get("model_options") or {}).items()]
    if training.get("seed"):
        extras.append(f"seed {training['seed']}")
    return "; ".join([text, *extras])


def results_markdown(rows):
    """The results page for manifest rows: our error beside the paper's, data and recipe.

    Args:
        rows: manifest rows (``weights.published_rows``).

    Returns:
        Markdown text.
    """
    lines = [
        "# Results",
        "",
        "Generated from `weights/manifest.json` (our measurements) and the registry's paper",
        "results by `keras-attn-zoo publish` / `keras-attn-zoo evaluate --record`; do not edit.",
        "Errors are top-1 on the data named in each row; a number measured on the JPEG copy",
        "of CIFAR-10 is not exactly comparable with one measured on the original images.",
        "",
        "| model | weights | our top-1 error | paper's top-1 error | measured on | recipe | trained on |",
        "| --- | --- | ---: | --- | --- | --- | --- |",
    ]
    for record in sorted(map(weights_lib.WeightRecord.from_row, rows), key=lambda r: (r.model, r.tag)):
        acc, training = record.accuracy, record.training
        trained = f"{training.get('hardware', '?')}; {training.get('time_s', 0) / 60:.1f} min"
        lines.append(
            f"| `{record.model}` | {record.tag} | {acc['top1_error']:.2f}% | "
            f"{paper_errors(record.model, record.dataset)} | {acc['data']} | {recipe_text(training)} | {trained} |"
        )
    if not rows:
        lines.append("| (no weights are published yet) | | | | | | |")
    lines += ["", "## Run-to-run noise", "",
              "Two runs of one recipe that differ only in their seed differ by chance alone: that spread is the",
              "scale for every other difference between single runs of the same model on the same data. Two seeds",
              "are one draw of it, not its distribution: a difference within it is noise, one beyond it is a hint,",
              "not yet a finding.", ""]
    lines += noise_lines(list(map(weights_lib.WeightRecord.from_row, rows))) or [
        "No model is published with two seeds of one recipe yet: no difference in the table above is "
        "stated with its noise."]
    return "\n".join(lines) + "\n"


def noise_lines(records):
    """Markdown list items: for every model published with several seeds of one recipe (the same
    :func:`recipe_text` but for the seed, measured on the same data), their errors and spread, and
    each other tag of that model on that data against the seeds' mean. Beside the spread stands
    the test set's own sampling error of one run at the seeds' mean error, the binomial standard
    error ``sqrt(p (1 - p) / n)`` over its ``n`` images (from the records' ``images``)."""
    def error(record):
        return record.accuracy["top1_error"]

    groups = {}
    for record in records:
        groups.setdefault((record.model, record.accuracy.get("data")), []).append(record)
    lines = []
    for (model, data), group in sorted(groups.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        runs = {}
        for record in group:
            runs.setdefault(recipe_text({**record.training, "seed": 0}), []).append(record)
        for recipe, seeds in runs.items():
            if len(seeds) < 2:
                continue
            seeds.sort(key=lambda r: r.training.get("seed") or 0)
            errors = [error(r) for r in seeds]
            mean, spread = sum(errors) / len(errors), max(errors) - min(errors)
            listed = ", ".join(f"{r.tag} (seed {r.training.get('seed') or 0}) {error(r):.2f}%" for r in seeds)
            images = seeds[0].accuracy.get("images")
            sampling = (f"; the test set's sampling error of one run: {100 * math.sqrt(mean / 100 * (1 - mean / 100) / images):.2f} "
                        f"points (binomial standard error, {images:,} images)" if images else "")
            lines.append(f"- `{model}`, {recipe}, {data}: {listed}; spread **{spread:.2f} points**, mean {mean:.2f}%"
                         f"{sampling}.")
            for other in sorted((r for r in group if r not in seeds), key=lambda r: r.tag):
                lines.append(f"  - {other.tag} ({recipe_text(other.training)}): {error(other):.2f}%, "
                             f"{error(other) - mean:+.2f} points from the seeds' mean.")
    return lines


def write_results(path=None, manifest=None):
    """Write the results page for a manifest (defaults: ``docs/results.md``, the repository's).

    Returns:
        The path written.
    """
    path = Path(path) if path is not None else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_markdown(weights_lib.published_rows(manifest)))
    return path
