"""Finding, fetching, loading and publishing weight files: never a silent fall-back to random
weights.

The manifest ``weights/manifest.json`` has one row per published weight (its fields are listed
in ``weights/README.md``). ``load(name, weights=TAG)`` finds the row for (model, tag) and
resolves its file in this order: the user's cache (``$KERAS_ATTN_ZOO_HOME/weights``, default
``~/.keras/keras_attn_zoo/weights``), the repository's ``weights/`` folder, then a download from
``$KERAS_ATTN_ZOO_WEIGHTS_URL`` + file name (a mirror) or the row's ``url``, verified by size
and sha256 and written atomically into the cache. ``KERAS_ATTN_ZOO_OFFLINE=1`` forbids the
download. A file that is missing, truncated or altered is an error that names it and says what
to do.
"""

import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path

from keras_attn_zoo import config

MANIFEST = Path(__file__).resolve().parent.parent / "weights" / "manifest.json"

# Where published files are downloaded from when neither the environment (a mirror) nor the
# manifest row (``url``) says: no public host is set up yet, so there is no default.
DEFAULT_BASE_URL = None
DOWNLOAD_TIMEOUT_S = 60
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _manifest(path=None):
    path = Path(path) if path is not None else MANIFEST
    if not path.exists():
        return []
    with open(path) as f:
        return json.load(f)["weights"]


def published_tags(name):
    """Tags of the published weights of a registered model (e.g. ["cifar10"])."""
    return sorted(row["tag"] for row in _manifest() if row["model"] == name)


def published_rows(manifest=None):
    """All rows of a manifest (default: the repository's), sorted by model and tag."""
    return sorted(_manifest(manifest), key=lambda r: (r["model"], r["tag"]))


def manifest_row(name, tag):
    """The manifest row of ``name``'s weights ``tag``; an unknown tag says what exists, and how
    to make it when the registry knows (e.g. by converting the authors' checkpoint)."""
    rows = [r for r in _manifest() if r["model"] == name and r["tag"] == tag]
    if not rows:
        from keras_attn_zoo.registry import get_spec

        howto = get_spec(name).weight_sources.get(tag)
        if howto:
            raise ValueError(
                f"The {tag!r} weights of {name} are not on this machine ({local_weights(name, tag)}). {howto}"
            )
        available = ", ".join(repr(t) for t in published_tags(name)) or "none yet"
        raise ValueError(
            f"No published weights {tag!r} for {name!r} (published tags: {available}). "
            "Pass weights=None for a randomly initialised model, or the path of a "
            ".weights.h5 file."
        )
    return rows[0]


def is_path(weights):
    """Whether a ``weights`` argument names a file rather than a published tag."""
    weights = os.fspath(weights)
    return weights.endswith(".h5") or os.sep in weights or os.path.exists(weights)


def cache_dir():
    """The user's weights cache: ``$KERAS_ATTN_ZOO_HOME/weights``."""
    return config.home() / "weights"


def local_weights(name, tag):
    """Weights made on this machine rather than published (e.g. a converted checkpoint):
    ``cache_dir()/NAME_TAG.weights.h5``, with its sha256 in a ``.sha256`` file beside it."""
    return cache_dir() / f"{name}_{tag}.weights.h5"


def install_local(model, tag):
    """Save ``model``'s weights as the local ``tag`` weights of its registry name (atomic write,
    sha256 beside the file), so that ``load(model.name, weights=tag)`` finds them."""
    path = local_weights(model.name, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.part.weights.h5")
    try:
        model.save_weights(tmp)
        digest = sha256(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").write_text(digest + "\n")
    return path


def _local_file(name, tag):
    """The verified local weights of (name, tag), or None when there are none."""
    path = local_weights(name, tag)
    digest_file = path.with_name(path.name + ".sha256")
    if not path.is_file() or not digest_file.is_file():
        return None
    expected = digest_file.read_text().strip()
    verify(path, {"sha256": expected}, "Delete it and create it again (e.g. run the converter).")
    return path


def resolve(name, weights):
    """The local path of the weights a ``load()`` call asks for, or None for random init.

    Args:
        name: a registered model name.
        weights: None, the path of a ``.weights.h5`` file, or a published tag.

    Returns:
        The path as a string (verified against the manifest for a tag), or None.
    """
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be None, a .weights.h5 path or a published tag, got {type(weights).__name__}."
        )
    weights = os.fspath(weights)
    if is_path(weights):
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"Weights file not found: {weights}")
        return weights
    if weights not in published_tags(name):
        local = _local_file(name, weights)
        if local is not None:
            return str(local)
    return str(fetch(manifest_row(name, weights)))


def fetch(row):
    """The verified local file of a manifest row: cache, then ``weights/``, then download.

    Args:
        row: a manifest row.

    Returns:
        A ``Path``.
    """
    spec = f"{row['model']}:{row['tag']}"
    cached, bundled = cache_dir() / row["file"], MANIFEST.parent / row["file"]
    if cached.is_file():
        verify(cached, row, f"Delete it and run `keras-attn-zoo download {spec}` to fetch it again.")
        return cached
    if bundled.is_file():
        verify(bundled, row, "Restore it from the repository (git checkout weights/) and try again.")
        return bundled
    where = f"not in the cache ({cached}) nor in {bundled.parent}"
    if config.offline():
        raise FileNotFoundError(
            f"The weights {spec} ({row['file']}) are {where}, and {config.OFFLINE_ENV} forbids "
            f"downloading them. Run `keras-attn-zoo download {spec}` where there is a network, "
            f"or copy the file to {cached}."
        )
    url = weights_url(row)
    if url is None:
        raise FileNotFoundError(
            f"The weights {spec} ({row['file']}) are {where}, and no download location is known: "
            f"set {config.WEIGHTS_URL_ENV} to a mirror that serves {row['file']}, or copy the "
            f"file to {cached}."
        )
    return download_file(url, cached, row.get("sha256"), row.get("size"))


def weights_url(row):
    """Where a row's file is downloaded from: a mirror (env), the row's ``url``, or the default."""
    mirror = os.environ.get(config.WEIGHTS_URL_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{row['file']}"
    if row.get("url"):
        return row["url"]
    if DEFAULT_BASE_URL:
        return f"{DEFAULT_BASE_URL.rstrip('/')}/{row['file']}"
    return None


def verify(path, row, fix):
    """Check a file's size and sha256 against its manifest row; ``fix`` says what to do if not."""
    size = os.path.getsize(path)
    if row.get("size") is not None and size != row["size"]:
        kind = "truncated" if size < row["size"] else "damaged"
        raise ValueError(
            f"{path} is {kind}: it has {size:,} bytes, the manifest says {row['size']:,}. {fix}"
        )
    digest = sha256(path)
    if digest != row["sha256"]:
        raise ValueError(
            f"{path} is damaged: its sha256 is {digest}, the manifest says {row['sha256']}. {fix}"
        )


def download_file(url, dest, expected_sha256, expected_size=None):
    """Download ``url`` to ``dest`` atomically, verifying its size and sha256.

    The bytes go to a temporary file beside ``dest``, which replaces ``dest`` only when complete
    and verified; on any failure it is removed and nothing is left at ``dest``.

    Args:
        url: http(s) or file URL.
        dest: final path.
        expected_sha256: hex digest the file must have.
        expected_size: bytes the file must have, if known.

    Returns:
        ``dest`` as a ``Path``.
    """
    if config.offline():
        raise OSError(f"{config.OFFLINE_ENV} forbids downloading {url}.")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    digest, count = hashlib.sha256(), 0
    print(f"Downloading {url} to {dest}", file=sys.stderr)
    cut = (f"The download of {url} was cut short (truncated after {{:,}} of {{}} bytes). Try "
           f"again, or fetch the file by hand into {dest}.")
    try:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as f:
                declared = response.headers.get("Content-Length")
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    digest.update(chunk)
                    count += len(chunk)
        except http.client.IncompleteRead as e:
            raise ValueError(cut.format(count + len(e.partial), e.expected + count + len(e.partial))) from e
        except (urllib.error.URLError, OSError) as e:
            raise OSError(f"Could not download {url}: {e}. Check the network or the mirror URL.") from e
        if declared is not None and count < int(declared):
            raise ValueError(cut.format(count, f"{int(declared):,}"))
        if expected_size is not None and count != expected_size:
            raise ValueError(
                f"The download of {url} is truncated or damaged: {count:,} bytes, the manifest "
                f"says {expected_size:,}. Try again, or fetch the file by hand into {dest}."
            )
        if digest.hexdigest() != expected_sha256:
            raise ValueError(
                f"The download of {url} has sha256 {digest.hexdigest()}, the manifest says "
                f"{expected_sha256}: the server's file is not the published one (a stale or "
                "tampered mirror?). Nothing was saved."
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def download(name, tag=None):
    """Make the published weights ``name:tag`` available locally (``keras-attn-zoo download``).

    Args:
        name: a registered model name.
        tag: a published tag. Defaults to the model's only one.

    Returns:
        The verified local path.
    """
    from keras_attn_zoo.registry import get_spec

    name = get_spec(name).name
    if tag is None:
        tags = published_tags(name)
        if len(tags) != 1:
            raise ValueError(
                f"{name} has {'no' if not tags else len(tags)} published weights "
                f"({', '.join(tags) or 'none yet'}): say which, as {name}:TAG."
            )
        tag = tags[0]
    return fetch(manifest_row(name, tag))


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


def file_num_classes(path):
    """The classifier size stored in a zoo model's weight file, or None if it cannot be told.

    A registry model has one top-level Dense layer, its classifier; Keras stores it as
    ``layers/dense/vars/0`` (kernel: features x classes).
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            dense = [k for k in f.get("layers", {}) if re.fullmatch(r"dense(_\d+)?", k)]
            if len(dense) == 1:
                return int(f["layers"][dense[0]]["vars"]["0"].shape[-1])
    except OSError:
        return None
    return None


def load_pretrained(model, spec, path, weights, build_kwargs, new_head=False):
    """Load weights into a registry model; all but the classifier when the heads differ.

    Loading is strict (:func:`load_weights_file`) when the model's classifier matches the
    file's. When the model has another number of classes, or no classifier
    (``include_top=False``), the file is loaded strictly into a twin with the file's head and
    every other layer is copied by name; the skipped layers are reported in a warning.

    Args:
        model: the freshly built model.
        spec: its ``ModelSpec``.
        path: the resolved ``.weights.h5`` path.
        weights: what the caller asked for (a tag or a path).
        build_kwargs: the extra builder arguments the model was built with.
        new_head: leave the class-sized layers freshly initialised even when the model has the
            file's number of classes (fine-tuning to other classes). Defaults to False.

    Returns:
        The names of the layers not loaded (empty for a strict load).
    """
    names = {layer.name for layer in model.layers}
    has_top = spec.classifier in names
    if is_path(weights) or weights not in published_tags(spec.name):  # a file, or made locally
        file_classes = file_num_classes(path)
    else:
        file_classes = manifest_row(spec.name, weights).get("num_classes")
    model_classes = model.get_layer(spec.classifier).units if has_top else None
    if has_top and not new_head and (file_classes is None or file_classes == model_classes):
        load_weights_file(model, path)
        return []
    if file_classes is None:
        raise ValueError(
            f"Cannot tell the number of classes of {path}, so it cannot be loaded into "
            f"{model.name} without its classifier. Load it with its own num_classes first."
        )
    kwargs = {k: v for k, v in build_kwargs.items() if k not in ("include_top", "pooling", "classes", "input_shape")}
    twin = spec.build(
        classes=file_classes, input_shape=model.input_shape[1:], name=spec.name, **kwargs
    )
    load_weights_file(twin, path)
    class_sized = set()
    if has_top and file_classes == model_classes:  # new_head: which layers depend on the classes?
        probe = spec.build(classes=file_classes + 1, input_shape=model.input_shape[1:], name=spec.name, **kwargs)
        class_sized = {layer.name for layer in probe.layers
                       if [w.shape for w in layer.weights] != [w.shape for w in twin.get_layer(layer.name).weights]}
    skipped = [spec.classifier] if has_top else []
    for layer in twin.layers:
        if layer.name not in names:
            if layer.weights:
                skipped.append(layer.name)
            continue
        if layer.name == spec.classifier:
            continue
        if layer.name in class_sized:
            skipped.append(layer.name)
            continue
        target = model.get_layer(layer.name)
        values = layer.get_weights()
        if [tuple(w.shape) for w in target.weights] != [v.shape for v in values]:
            skipped.append(layer.name)  # class-sized, e.g. ABN's attention-branch convolutions
            continue
        target.set_weights(values)
    if has_top and new_head:
        message = (
            f"Loaded {path} into {model.name} except {', '.join(repr(n) for n in skipped)}: "
            f"new class-sized layers for the model's {model_classes} classes were asked for."
        )
    elif has_top:
        message = (
            f"Loaded {path} into {model.name} except {', '.join(repr(n) for n in skipped)}: the "
            f"file has {file_classes} classes, the model {model_classes}, so those class-sized "
            "layers keep their fresh initialisation."
        )
    else:
        message = (
            f"Loaded {path} into {model.name} except {', '.join(skipped)}, which the model "
            "does not have (include_top=False)."
        )
    warnings.warn(message, stacklevel=3)
    return skipped


def publish(weights_file, tag, manifest=None, overwrite=False, url=None):
    """Add trained weights to the manifest: copy the file, hash it, write its row.

    Takes the output of ``keras-attn-zoo train`` (the ``.weights.h5`` file and the training
    record ``.json`` beside it), checks that the file is the one trained and loads strictly
    into its architecture, copies it into the manifest's folder as
    ``<model>_<tag>.weights.h5`` (and the run's ``training_log.csv`` as
    ``logs/<model>_<tag>.training_log.csv``) and writes the row (see ``weights/README.md``).

    Args:
        weights_file: the trained ``.weights.h5``.
        tag: the tag users will load it by, e.g. "cifar10".
        manifest: the manifest to write. Defaults to the repository's ``weights/manifest.json``.
        overwrite: replace an existing row of the same model and tag. Defaults to False.
        url: where the file will be downloadable from, if not from the default location.

    Returns:
        The manifest row (a dict).
    """
    from keras_attn_zoo.data.preprocessing import record_path
    from keras_attn_zoo.registry import load

    manifest = Path(manifest) if manifest is not None else MANIFEST
    weights_file = Path(weights_file)
    if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag) or tag.endswith(".h5"):
        raise ValueError(f"A tag is lower-case letters, digits, '_', '-' and '.', e.g. 'cifar10'; got {tag!r}.")
    if not weights_file.is_file():
        raise FileNotFoundError(f"Weights file not found: {weights_file}")
    record_file = Path(record_path(weights_file))
    if not record_file.is_file():
        raise FileNotFoundError(
            f"{weights_file} has no training record {record_file.name}: publish takes the output "
            "of `keras-attn-zoo train`, which writes both."
        )
    record = json.loads(record_file.read_text())
    digest = sha256(weights_file)
    if digest != record["sha256"]:
        raise ValueError(
            f"{weights_file} has sha256 {digest}, its training record says {record['sha256']}: "
            "the file changed after training, so the record does not describe it."
        )
    rows = _manifest(manifest)
    model = record["model"]
    if any(r["model"] == model and r["tag"] == tag for r in rows) and not overwrite:
        raise ValueError(f"{manifest} already has {model}:{tag}; pass overwrite=True (--overwrite) to replace it.")
    # The row must never point to a file that does not load into its architecture.
    load(model, weights=str(weights_file), num_classes=record["num_classes"],
         input_shape=tuple(record["input_shape"]))
    file_name = f"{model}_{tag}.weights.h5"
    dest = manifest.parent / file_name
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{file_name}.{uuid.uuid4().hex}.part")
    shutil.copyfile(weights_file, tmp)
    os.replace(tmp, dest)
    log = weights_file.parent / "training_log.csv"  # the per-epoch history stays with the weights
    log_name = f"logs/{model}_{tag}.training_log.csv"
    if log.is_file():
        (manifest.parent / "logs").mkdir(exist_ok=True)
        shutil.copyfile(log, manifest.parent / log_name)
    row = {
        "model": model,
        "tag": tag,
        "file": file_name,
        "sha256": digest,
        "size": dest.stat().st_size,
        **{k: record[k] for k in ("num_classes", "input_shape", "class_names", "preprocessing",
                                  "dataset", "accuracy", "training")},
        **({"training_log": log_name} if log.is_file() else {}),
        "published": datetime.date.today().isoformat(),
        **({"url": url} if url else {}),
    }
    rows = [r for r in rows if not (r["model"] == model and r["tag"] == tag)] + [row]
    write_manifest(rows, manifest)
    return row


def write_manifest(rows, manifest=None):
    """Write manifest rows (sorted by model and tag) atomically."""
    manifest = Path(manifest) if manifest is not None else MANIFEST
    rows = sorted(rows, key=lambda r: (r["model"], r["tag"]))
    tmp = manifest.with_name(f".{manifest.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"weights": rows}, indent=2) + "\n")
    os.replace(tmp, manifest)
