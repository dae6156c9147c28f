"""Finding and loading weight files, strictly: never a silent fall-back to random weights.

The published-weights manifest lives in the repository's ``weights/manifest.json`` (one row
per published weight). Until weights are published it lists none, and asking for a tag is an
error that says what exists.
"""

import hashlib
import json
import os
import warnings
from pathlib import Path

MANIFEST = Path(__file__).resolve().parent.parent / "weights" / "manifest.json"


def _manifest():
    if not MANIFEST.exists():
        return []
    with open(MANIFEST) as f:
        return json.load(f)["weights"]


def published_tags(name):
    """Tags of the published weights of a registered model (e.g. ["cifar10"])."""
    return sorted(row["tag"] for row in _manifest() if row["model"] == name)


def resolve(name, weights):
    """The local path of the weights a ``load()`` call asks for, or None for random init."""
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be None, a .weights.h5 path or a published tag, got {type(weights).__name__}."
        )
    weights = os.fspath(weights)
    if weights.endswith(".h5") or os.sep in weights or os.path.exists(weights):
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"Weights file not found: {weights}")
        return weights
    rows = [r for r in _manifest() if r["model"] == name and r["tag"] == weights]
    if not rows:
        available = ", ".join(repr(t) for t in published_tags(name)) or "none yet"
        raise ValueError(
            f"No published weights {weights!r} for {name!r} (published tags: {available}). "
            "Pass weights=None for a randomly initialised model, or the path of a "
            ".weights.h5 file."
        )
    row = rows[0]
    path = MANIFEST.parent / row["file"]
    if not path.is_file():
        raise FileNotFoundError(f"The manifest lists {row['file']} for {name}:{weights}, but {path} is missing.")
    digest = sha256(path)
    if digest != row["sha256"]:
        raise ValueError(
            f"{path} is damaged: its sha256 is {digest}, the manifest says {row['sha256']}. "
            "Restore the file (git checkout weights/) and try again."
        )
    return str(path)


def sha256(path):
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_weights_file(model, path):
    """Load a ``.weights.h5`` file into ``model`` strictly: all of it or nothing.

    Keras only warns when parts of a file do not match the model ("Skipping ...", leaving
    those layers freshly initialised); here any such warning is an error, and on any error the
    model's previous weights are restored, so a model is never half-loaded.
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"Expected a Keras '.weights.h5' file, got {path!r}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path}")
    before = model.get_weights()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(path)
        skipped = [str(w.message) for w in caught if "skipping" in str(w.message).lower()]
        if skipped:
            raise ValueError(f"{len(skipped)} part(s) of the file did not match, e.g. {skipped[0]}")
    except (OSError, ValueError, KeyError) as e:
        model.set_weights(before)
        raise ValueError(
            f"Could not load {path} into {model.name}: {e}. The file is damaged or was saved "
            "from a different architecture or number of classes."
        ) from e
