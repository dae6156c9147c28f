"""``.keras`` files that remember what their model needs: class names and input normalisation.

A fine-tuned model is only usable if whoever loads it knows its classes and how its inputs were
normalised. :func:`save_model` writes a standard Keras ``.keras`` file (``keras.saving.load_model``
reads it as usual) with one extra member, ``keras_attn_zoo.json``, holding that record;
:func:`load_model` returns the model with it, and ``predict`` / ``explain`` / ``export`` use it.

>>> save_model(model, "flowers.keras", {"class_names": ["daisy", "rose"], "preprocessing": stats.to_dict()})
>>> model, metadata = load_model("flowers.keras")
>>> metadata["class_names"]
['daisy', 'rose']
"""

import json
import zipfile
from pathlib import Path

import keras

import keras_attn_zoo.layers  # noqa: F401  (registers the zoo's layers for deserialization)
import keras_attn_zoo.models.abn  # noqa: F401  (registers ABNModel)
from keras_attn_zoo.files import replacing
from keras_attn_zoo.normalization import ChannelStats

METADATA_MEMBER = "keras_attn_zoo.json"


def save_model(model, path, metadata):
    """Save ``model`` as a ``.keras`` file with ``metadata`` (a JSON-able dict) inside it.

    The file is written under a temporary name and renamed, so an interrupted save never leaves
    a partial file at ``path``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Expected a path ending in .keras, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))
    return path


def read_metadata(path):
    """The zoo's record inside a ``.keras`` file, or ``{}`` for a file saved by plain Keras."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such model file: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_MEMBER not in archive.namelist():
                return {}
            return json.loads(archive.read(METADATA_MEMBER))
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a .keras file (not a zip archive): {e}") from e


def load_model(path):
    """Load a ``.keras`` file; returns ``(model, metadata)`` (metadata ``{}`` if it has none)."""
    metadata = read_metadata(path)
    return keras.saving.load_model(path), metadata


def metadata_stats(metadata):
    """The :class:`~keras_attn_zoo.data.ChannelStats` recorded in ``metadata``, or None."""
    preprocessing = metadata.get("preprocessing")
    return ChannelStats.from_dict(preprocessing) if preprocessing else None
