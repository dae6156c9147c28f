"""Top-1 / top-5 of weights on a data split, and ``docs/results.md``: our measured error beside
the paper's for every published weight.

The paper's numbers come from the registry's ``PaperResult`` rows, ours from the manifest: the
results page is generated from those two, never typed.
"""

import datetime
import re
from pathlib import Path

from keras_attn_zoo import weights as weights_lib
from keras_attn_zoo.data import load_split
from keras_attn_zoo.registry import PAPERS, get_spec, load_for_inference
from keras_attn_zoo.training.trainer import evaluate_split

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
             manual_dir=None, seed=0, verbose="auto"):
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

    Returns:
        ``{"top1", "top5", "top1_error", "split", "images", "data"}``.
    """
    name = get_spec(name).name
    record = _weights_record(name, weights)
    transform = {"image_size": record.input_shape[:2], **record.eval_transform}
    data_split = load_split(data, split, limit=limit, seed=seed, data_dir=data_dir,
                            manual_dir=manual_dir, **transform)
    # Logits, not softmax scores: saturated scores tie, and ties count as hits in top-k.
    loaded = load_for_inference(name, weights, classifier_activation=None)
    if loaded.class_names and tuple(data_split.class_names) != loaded.class_names:
        raise ValueError(
            f"The classes of {data_split.description} ({', '.join(data_split.class_names[:5])}...) "
            f"are not those the weights were trained on ({', '.join(loaded.class_names[:5])}...)."
        )
    return evaluate_split(loaded.model, data_split, loaded.normalization, batch_size=batch_size, verbose=verbose)


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
        recipe = training.get("recipe", {})
        recipe_text = (
            f"{recipe.get('name', '?')}: epochs {training.get('epochs_completed', recipe.get('epochs', '?'))}, "
            f"batch {recipe.get('batch_size', '?')}, {recipe.get('schedule', '?')} lr "
            f"{recipe.get('learning_rate', '?')}, wd {recipe.get('weight_decay', '?')}"
        )
        trained = f"{training.get('hardware', '?')}; {training.get('time_s', 0) / 60:.1f} min"
        lines.append(
            f"| `{record.model}` | {record.tag} | {acc['top1_error']:.2f}% | "
            f"{paper_errors(record.model, record.dataset)} | {acc['data']} | {recipe_text} | {trained} |"
        )
    if not rows:
        lines.append("| (no weights are published yet) | | | | | | |")
    return "\n".join(lines) + "\n"


def write_results(path=None, manifest=None):
    """Write the results page for a manifest (defaults: ``docs/results.md``, the repository's).

    Returns:
        The path written.
    """
    path = Path(path) if path is not None else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_markdown(weights_lib.published_rows(manifest)))
    return path
