"""Top-k class predictions for image files, with class names: what ``keras-attn-zoo predict`` prints,
as text for people or as CSV / JSON for programs (:func:`format_predictions`).

>>> import keras_attn_zoo as zoo
>>> model = zoo.load("fa_resnet20")
>>> results, failed = predict_files(model, ["photo.jpg"], k=3)  # doctest: +SKIP
>>> results[0].top  # doctest: +SKIP
[('cat', 0.41), ('dog', 0.22), ('frog', 0.09)]
"""

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np

from keras_attn_zoo.explain.outputs import run
from keras_attn_zoo.images import model_image_size, preprocess, read_images
from keras_attn_zoo.registry import get_spec


@dataclasses.dataclass
class Prediction:
    """One image's top classes: ``top`` is a list of ``(class name, score)``, best first;
    ``exit`` is where the image left a PAYA model under early exit (a module's name, or
    "full"), None without early exit."""

    path: Path
    top: list
    exit: str = None


def read_class_names(path):
    """Class names from a text file, one per line in label order (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Class names file not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path} lists no class names (one per line expected).")
    return names


def class_names(model, path=None, saved=None):
    """The names of ``model``'s classes: from ``path`` if given, else ``saved`` (the names a
    fine-tuned ``.keras`` file records), else the registry's when the model is a registered one
    with that many classes, else None (classes are then numbered).

    Raises:
        ValueError: if the file lists a different number of names than the model has classes.
    """
    n = model.output_shape[-1]
    if path is not None:
        names = read_class_names(path)
        if len(names) != n:
            raise ValueError(f"{path} lists {len(names)} class names; {model.name} has {n} classes.")
        return names
    if saved:
        if len(saved) != n:
            raise ValueError(f"The model file records {len(saved)} class names; {model.name} has {n} classes.")
        return list(saved)
    try:
        names = get_spec(model.name).class_names
    except ValueError:
        return None
    return list(names) if len(names) == n else None


def top_k(scores, k, names=None):
    """The ``k`` best ``(name, score)`` pairs of one score vector; names default to "class i"."""
    order = np.argsort(scores)[::-1][:k]
    return [(names[i] if names is not None else f"class {i}", float(scores[i])) for i in order]


def predict_files(model, paths, k=3, names=None, batch_size=32, normalization=None, early_exit=None):
    """Predict the top-``k`` classes of every readable image among ``paths``.

    Images are resized to the model's input and preprocessed by
    ``keras_attn_zoo.images.preprocess``.

    Args:
        model: a classifier ``keras.Model`` taking images.
        paths: image files and folders (searched recursively for images).
        k: how many classes per image. Defaults to 3.
        names: class names in label order. Defaults to "class i".
        batch_size: images per forward pass. Defaults to 32.
        normalization: the weights' recorded normalisation (``images.normalization_for``), or
            None to scale to [0, 1]. Defaults to None.
        early_exit: for a PAYA model, a confidence threshold: each image leaves at the first
            attention module whose own softmax reaches it (``keras_attn_zoo.early_exit``).
            Defaults to None (the full model).

    Returns:
        ``(predictions, failed)``: a :class:`Prediction` per readable image, and
        ``(path, message)`` for each file that could not be read.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    height, width, channels = model_image_size(model)
    pixels, read, failed = read_images(paths, (height, width), channels)
    if not read:
        return [], failed
    x = preprocess(pixels, normalization)
    if early_exit is None:
        scores = run(model, x, batch_size)
        return [Prediction(path, top_k(s, k, names)) for path, s in zip(read, scores)], failed
    from keras_attn_zoo.early_exit import EarlyExit

    result = EarlyExit(model).predict(x, early_exit, batch_size)
    exits = [result.exit_names[i] for i in result.exit_index]
    return [Prediction(path, top_k(s, k, names), e) for path, s, e in zip(read, result.scores, exits)], failed


PREDICTION_FORMATS = ("text", "csv", "json")


def format_predictions(predictions, failed=(), fmt="text"):
    """:func:`predict_files`' answer as ``keras-attn-zoo predict --format`` prints it.

    Args:
        predictions: :class:`Prediction` objects.
        failed: ``(path, message)`` of the files that could not be read (only JSON lists them;
            the command line prints them on stderr). Defaults to ().
        fmt: "text" (``path: class score, ...`` lines, scores to 3 decimals, for people), "csv"
            (a header and one row per image and rank: ``path,rank,class,score``, plus ``exit``
            under early exit; quoted by the csv module, so any path reads back) or "json" (one
            document ``{"predictions": [{"path", "top": [{"class", "score"}], "exit"?}],
            "skipped": [{"path", "error"}]}``). Defaults to "text".

    Returns:
        The text, ending in a newline unless it is empty.
    """
    if fmt == "json":
        document = {
            "predictions": [{"path": str(p.path), "top": [{"class": name, "score": score} for name, score in p.top],
                             **({"exit": p.exit} if p.exit is not None else {})} for p in predictions],
            "skipped": [{"path": str(path), "error": message} for path, message in failed],
        }
        return json.dumps(document, indent=2) + "\n"
    if fmt == "csv":
        exits = any(p.exit is not None for p in predictions)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["path", "rank", "class", "score", *(["exit"] if exits else [])])
        for p in predictions:
            for rank, (name, score) in enumerate(p.top, 1):
                writer.writerow([p.path, rank, name, score, *([p.exit] if exits else [])])
        return text.getvalue()
    if fmt != "text":
        raise ValueError(f"Unknown format {fmt!r}: expected one of {', '.join(PREDICTION_FORMATS)}.")
    return "".join(f"{p.path}: " + ", ".join(f"{name} {score:.3f}" for name, score in p.top)
                   + (f" (exit: {p.exit})" if p.exit is not None else "") + "\n" for p in predictions)
