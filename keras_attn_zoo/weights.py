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


def home():
    """The user's weight folder: ``$KERAS_ATTN_ZOO_HOME``, default ``~/.keras/keras_attn_zoo``."""
    return Path(os.environ.get("KERAS_ATTN_ZOO_HOME", Path.home() / ".keras" / "keras_attn_zoo"))


def local_weights(name, tag):
    """Where weights made on this machine (e.g. converted checkpoints) live: ``home()/NAME_TAG.weights.h5``."""
    return home() / f"{name}_{tag}.weights.h5"


def install_local(model, tag):
    """Save ``model``'s weights as the local ``tag`` weights of its registry name, with a
    ``.sha256`` file beside them so that a damaged copy is detected on load."""
    path = local_weights(model.name, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.weights.h5")
    model.save_weights(tmp)
    digest = sha256(tmp)
    os.replace(tmp, path)
    path.with_name(path.name + ".sha256").write_text(digest + "\n")
    return path


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
        local = local_weights(name, weights)
        if local.is_file():
            _verify(local, local.with_name(local.name + ".sha256").read_text().strip())
            return str(local)
        from keras_attn_zoo.registry import get_spec

        howto = get_spec(name).weight_sources.get(weights)
        if howto:
            raise ValueError(f"The {weights!r} weights of {name} are not on this machine ({local}). {howto}")
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
    _verify(path, row["sha256"])
    return str(path)


def _verify(path, expected):
    digest = sha256(path)
    if digest != expected:
        raise ValueError(
            f"{path} is damaged: its sha256 is {digest}, expected {expected}. Restore or "
            "re-create the file and try again."
        )


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
