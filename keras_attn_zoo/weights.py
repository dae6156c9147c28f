"""The weight files: their records, the manifest, and finding, fetching and verifying them.

This is the file layer: it knows files, rows and hashes, and nothing about models or the
registry (loading a file into a model is ``keras_attn_zoo.loading``'s job, publishing a trained
run ``keras_attn_zoo.training.publish``'s).

The manifest ``weights/manifest.json`` has one row per published weight (its fields are listed
in ``weights/README.md``). ``load(name, weights=TAG)`` finds the row for (model, tag) and
resolves its file in this order: the user's cache (``$KERAS_ATTN_ZOO_HOME/weights``, default
``~/.keras/keras_attn_zoo/weights``), the repository's ``weights/`` folder, then a download from
``$KERAS_ATTN_ZOO_WEIGHTS_URL`` + file name (a mirror) or the row's ``url``, verified by size
and sha256 and written atomically into the cache. ``KERAS_ATTN_ZOO_OFFLINE=1`` forbids the
download. A file that is missing, truncated or altered is an error that names it and says what
to do.
"""

import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import types
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from keras_attn_zoo import config
from keras_attn_zoo.files import replacing
from keras_attn_zoo.normalization import ChannelStats

MANIFEST = Path(__file__).resolve().parent.parent / "weights" / "manifest.json"

# Where published files are downloaded from when neither the environment (a mirror) nor the
# manifest row (``url``) says: no public host is set up yet, so there is no default.
DEFAULT_BASE_URL = None
DOWNLOAD_TIMEOUT_S = 60
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _manifest(path=None):
    """The raw rows of a manifest file (none when it does not exist), each checked by
    :meth:`WeightRecord.from_row`; a file that is not valid JSON is an error naming it."""
    path = Path(path) if path is not None else MANIFEST
    if not path.exists():
        return []
    with open(path) as f:
        try:
            content = json.load(f)
        except json.JSONDecodeError as e:
            restore = " (or restore it: git checkout weights/manifest.json)" if path == MANIFEST else ""
            raise ValueError(
                f"The manifest {path} is not valid JSON: {e.msg} at line {e.lineno}, column "
                f"{e.colno}. Fix it{restore}."
            ) from e
    rows = content.get("weights") if isinstance(content, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(
            f'The manifest {path} must be {{"weights": [row, ...]}} with one object per row.'
        )
    for row in rows:
        WeightRecord.from_row(row, manifest=path)
    return rows


def _frozen(value=None):
    return types.MappingProxyType(dict(value or {}))


@dataclasses.dataclass(frozen=True)
class WeightRecord:
    """The facts recorded with one weight file: a manifest row (published weights) or the
    training record that ``keras-attn-zoo train`` writes beside its file.

    Every reader of those facts (loading, preprocessing, predict, explain, export, fine-tuning,
    evaluation, the docs) reads them from this record; :meth:`from_row` is the one place that
    reads a row. Facts a row does not state are None (or empty).

    Attributes:
        model: the registry name.
        tag: the published tag ("cifar10"); None for a trained file.
        file: the file's name.
        sha256: its hex digest.
        size: its size in bytes.
        num_classes: the classifier's size.
        class_names: the class names in label order (empty when unknown).
        input_shape: (H, W, C) the weights were trained at.
        normalization: the :class:`~keras_attn_zoo.normalization.ChannelStats` inputs were
            normalised with.
        eval_transform: the ``load_split`` arguments of the evaluation images ("image_size"...).
        dataset: the data-set key ("cifar10").
        accuracy: the measurement (top1, top5, top1_error, images, data, command, date).
        training: how it was trained (recipe, epochs_completed, hardware, time_s...).
        training_log: the per-epoch log, relative to the manifest's folder.
        published: the date of publication.
        url: where the file is downloaded from, if the row says.
        fresh_layers: layers whose values the file holds but nothing trained: those a
            converted checkpoint had no counterpart for (an attention branch, SE layers added
            to torchvision's ResNet). Fine-tuning trains them as new layers; empty for a trained
            file.
        converted_from: the checkpoint a converted file was made from (file, sha256,
            architecture, layout; torchvision's weights name and URL when known).
    """

    model: str | None = None
    tag: str | None = None
    file: str | None = None
    sha256: str | None = None
    size: int | None = None
    num_classes: int | None = None
    class_names: tuple = ()
    input_shape: tuple | None = None
    normalization: ChannelStats | None = None
    eval_transform: types.MappingProxyType = dataclasses.field(default_factory=_frozen)
    dataset: str | None = None
    accuracy: types.MappingProxyType = dataclasses.field(default_factory=_frozen)
    training: types.MappingProxyType = dataclasses.field(default_factory=_frozen)
    training_log: str | None = None
    published: str | None = None
    url: str | None = None
    fresh_layers: tuple = ()
    converted_from: types.MappingProxyType = dataclasses.field(default_factory=_frozen)

    @classmethod
    def from_row(cls, row, manifest=None):
        """The record of a manifest row or a training record (a dict).

        Args:
            row: the dict.
            manifest: the manifest file ``row`` is read from, if it is a manifest row: then the
                fields every published weight needs (:data:`REQUIRED_FIELDS`) must be there,
                and an error names the file, the row (model:tag) and what is missing.
        """
        if manifest is not None:
            _check_row(row, manifest)
        preprocessing = row.get("preprocessing") or {}
        return cls(
            model=row.get("model"),
            tag=row.get("tag"),
            file=row.get("file"),
            sha256=row.get("sha256"),
            size=row.get("size"),
            num_classes=row.get("num_classes"),
            class_names=tuple(row.get("class_names") or ()),
            input_shape=tuple(row["input_shape"]) if row.get("input_shape") else None,
            normalization=ChannelStats.from_dict(preprocessing) if "mean" in preprocessing else None,
            eval_transform=_frozen({k: tuple(v) if isinstance(v, list) else v
                                    for k, v in preprocessing.get("eval", {}).items()}),
            dataset=row.get("dataset"),
            accuracy=_frozen(row.get("accuracy")),
            training=_frozen(row.get("training")),
            training_log=row.get("training_log"),
            published=row.get("published"),
            url=row.get("url"),
            fresh_layers=tuple(row.get("fresh_layers") or ()),
            converted_from=_frozen(row.get("converted_from")),
        )


# The fields every manifest row needs: what finds the row, its file, and what verifies it.
REQUIRED_FIELDS = ("model", "tag", "file", "sha256")


def _check_row(row, manifest):
    where = f"{row.get('model', '?')}:{row.get('tag', '?')}"
    missing = [field for field in REQUIRED_FIELDS if row.get(field) in (None, "")]
    if missing:
        raise ValueError(
            f"The manifest {manifest} has a row {where} without {', '.join(repr(f) for f in missing)} "
            f"(every row needs {', '.join(REQUIRED_FIELDS)}). Fix the row, or publish the "
            "weights again (keras-attn-zoo publish)."
        )
    if not (isinstance(row["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", row["sha256"])):
        raise ValueError(
            f"The manifest {manifest} has a row {where} whose 'sha256' is not 64 lowercase hex "
            f"digits: {row['sha256']!r}."
        )
    size = row.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ValueError(f"The manifest {manifest} has a row {where} whose 'size' is not a number "
                         f"of bytes: {size!r}.")


def published_rows(manifest=None):
    """All rows of a manifest (default: the repository's), sorted by model and tag: the raw
    dicts, for code that writes the manifest; readers use :func:`published_weights`."""
    return sorted(_manifest(manifest), key=lambda r: (r["model"], r["tag"]))


def published_weights(name=None, manifest=None):
    """The :class:`WeightRecord` of every published weight (of model ``name`` if given), sorted
    by model and tag."""
    return [WeightRecord.from_row(row) for row in published_rows(manifest)
            if name is None or row["model"] == name]


def published_tags(name):
    """Tags of the published weights of a registered model (e.g. ["cifar10"])."""
    return [record.tag for record in published_weights(name)]


def published_weight(name, tag, how_to=None):
    """The :class:`WeightRecord` of ``name``'s published weights ``tag``.

    Args:
        name: a registered model name.
        tag: a published tag.
        how_to: how to make the weights ``tag`` when they are made rather than published (the
            registry's ``weight_sources[tag]``, e.g. converting the authors' checkpoint), said in
            the error when there is no such row.

    Raises:
        ValueError: for an unknown tag; it says which tags exist, or ``how_to``.
    """
    for record in published_weights(name):
        if record.tag == tag:
            return record
    if how_to:
        raise ValueError(
            f"The {tag!r} weights of {name} are not on this machine ({local_weights(name, tag)}). {how_to}"
        )
    available = ", ".join(repr(t) for t in published_tags(name)) or "none yet"
    raise ValueError(
        f"No published weights {tag!r} for {name!r} (published tags: {available}). "
        "Pass weights=None for a randomly initialised model, or the path of a "
        ".weights.h5 file."
    )


def manifest_row(name, tag):
    """The raw manifest row (a dict) of ``name``'s weights ``tag``, for code that rewrites rows;
    readers use :func:`published_weight`, whose error an unknown tag raises here too."""
    published_weight(name, tag)
    return next(r for r in _manifest() if r["model"] == name and r["tag"] == tag)


def record_path(weights_path):
    """The training record written beside a weight file: ``x.weights.h5`` -> ``x.json``."""
    path = os.fspath(weights_path)
    stem = path[: -len(".weights.h5")] if path.endswith(".weights.h5") else os.path.splitext(path)[0]
    return stem + ".json"


def trained_record(weights_path):
    """The :class:`WeightRecord` of the training record beside a trained ``.weights.h5``
    file, or None when it has none."""
    record = record_path(weights_path)
    if not os.path.isfile(record):
        return None
    with open(record) as f:
        return WeightRecord.from_row(json.load(f))


def weight_record(name, weights):
    """The :class:`WeightRecord` of what a ``weights=`` argument names: a published tag's, a
    tag made on this machine (:func:`install_local`: the record beside its file, None if it has
    none), or a trained file's training record (None if it has none). An unknown tag is an
    error."""
    if is_path(weights):
        return trained_record(weights)
    if weights not in published_tags(name) and local_weights(name, weights).is_file():
        return trained_record(local_weights(name, weights))
    return published_weight(name, weights)


def recorded_stats(name, weights, fix=None):
    """The normalisation that the weights ``weights`` of model ``name`` were trained with.

    Args:
        name: a registered model name.
        weights: a published tag (read from the manifest row) or the path of a
            ``.weights.h5`` file written by the trainer (read from the training record beside
            it).
        fix: what the caller lets a user do instead when nothing is recorded (its own options,
            e.g. "pass mean= and std= explicitly"), added to the error. Defaults to None.

    Returns:
        A :class:`ChannelStats`: the record's (``weights.WeightRecord.normalization``).
    """
    end = f"; {fix}." if fix else "."
    if weights is None:
        tags = published_tags(name)
        hint = f" (published tags: {', '.join(tags)})" if tags else ""
        raise ValueError(
            f"Which weights of {name!r}? Pass weights= a published tag{hint} or a trained "
            f".weights.h5 file: a normalisation is never guessed{end}"
        )
    record = weight_record(name, weights)
    if record is None:
        raise FileNotFoundError(f"{weights} has no training record {record_path(weights)} with its normalisation{end}")
    if record.normalization is None:
        raise ValueError(f"The weights {weights!r} of {name!r} record no normalisation{end}")
    return record.normalization


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


def save_with_record(model, path, record=None):
    """Save ``model``'s weights to the ``.weights.h5`` file ``path`` atomically, with ``record``
    (a dict of :class:`WeightRecord` fields: ``preprocessing``, ``num_classes``...) beside it
    as :func:`record_path` names it, completed with the file's name, sha256 and size, so that
    ``trained_record(path)`` (and through it predict, explain, export, fine-tuning) reads it.

    Returns:
        The file's sha256.
    """
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"A weights file must end in .weights.h5, got {path}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.part.weights.h5")
    record_file = Path(record_path(path))
    tmp_record = record_file.with_name(f".{record_file.name}.{uuid.uuid4().hex}.tmp")
    try:
        model.save_weights(tmp)
        digest = sha256(tmp)
        if record is not None:
            full = {**record, "file": path.name, "sha256": digest, "size": tmp.stat().st_size}
            WeightRecord.from_row(full)  # a record its readers can read
            tmp_record.write_text(json.dumps(full, indent=2) + "\n")
        os.replace(tmp, path)
        if record is not None:
            os.replace(tmp_record, record_file)
        else:
            record_file.unlink(missing_ok=True)  # a stale record must not describe the new file
    finally:
        tmp.unlink(missing_ok=True)
        tmp_record.unlink(missing_ok=True)
    return digest


def install_local(model, tag, record=None):
    """Save ``model``'s weights as the local ``tag`` weights of its registry name (atomic write,
    sha256 beside the file, and ``record`` as :func:`save_with_record` writes it), so that
    ``load(model.name, weights=tag)`` finds them and :func:`weight_record` reads the record."""
    if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag) or tag.endswith(".h5"):
        raise ValueError(f"A tag is lower-case letters, digits, '_', '-' and '.', e.g. 'imagenet'; got {tag!r}.")
    path = local_weights(model.name, tag)
    digest = save_with_record(model, path, record)
    path.with_name(path.name + ".sha256").write_text(digest + "\n")
    return path


def _local_file(name, tag):
    """The verified local weights of (name, tag), or None when there are none."""
    path = local_weights(name, tag)
    digest_file = path.with_name(path.name + ".sha256")
    if not path.is_file() or not digest_file.is_file():
        return None
    expected = WeightRecord(model=name, tag=tag, file=path.name, sha256=digest_file.read_text().strip())
    verify(path, expected, "Delete it and create it again (e.g. run the converter).")
    return path


def resolve(name, weights, how_to=None):
    """The local path of the weights a ``load()`` call asks for, or None for random init.

    Args:
        name: a registered model name.
        weights: None, the path of a ``.weights.h5`` file, or a published tag.
        how_to: how to make the weights ``weights`` if they are made locally, not published
            (see :func:`published_weight`).

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
        if os.path.isdir(weights):
            found = sorted(p.name for p in Path(weights).glob("*.weights.h5"))
            hint = f" It holds {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}." if found else ""
            raise IsADirectoryError(
                f"weights={weights!r} is a directory: pass the path of a .weights.h5 file (such as "
                f"the one `keras-attn-zoo train` writes into its --output folder), or a published tag.{hint}"
            )
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"Weights file not found: {weights}")
        return weights
    if weights not in published_tags(name):
        local = _local_file(name, weights)
        if local is not None:
            return str(local)
    return str(fetch(published_weight(name, weights, how_to)))


def fetch(record, replace_damaged=False):
    """The verified local file of published weights: cache, then ``weights/``, then download.

    A damaged file in the cache (wrong size or sha256) is replaced by the verified copy in
    ``weights/`` when there is one, with a message; without one it is an error, unless
    ``replace_damaged`` (``keras-attn-zoo download``), which downloads the file again over it.

    Args:
        record: a :class:`WeightRecord` of the manifest.
        replace_damaged: download a damaged cached file again. Defaults to False.

    Returns:
        A ``Path``.
    """
    spec = f"{record.model}:{record.tag}"  # as `keras-attn-zoo download` takes it
    cached, bundled = cache_dir() / record.file, MANIFEST.parent / record.file
    damaged = file_problem(cached, record) if cached.is_file() else None
    if cached.is_file() and damaged is None:
        return cached
    if bundled.is_file():
        verify(bundled, record, "Restore it from the repository (git checkout weights/) and try again.")
        if damaged is not None:
            try:
                _copy_atomically(bundled, cached)
            except OSError as e:  # a read-only cache: the bundled copy serves all the same
                print(f"{damaged}. Could not replace it ({e}); using the verified copy {bundled}.",
                      file=sys.stderr)
                return bundled
            print(f"{damaged}. Replaced it with the verified copy {bundled}.", file=sys.stderr)
            return cached
        return bundled
    if damaged is not None and not replace_damaged:
        raise ValueError(f"{damaged}. Run `keras-attn-zoo download {spec}` to replace it.")
    where = f"not in the cache ({cached}) nor in {bundled.parent}"
    if damaged is not None:
        where = f"damaged in the cache ({damaged}) and not in {bundled.parent}"
    if config.offline():
        raise FileNotFoundError(
            f"The weights {spec} ({record.file}) are {where}, and {config.OFFLINE_ENV} forbids "
            f"downloading them. Run `keras-attn-zoo download {spec}` where there is a network, "
            f"or copy the file to {cached}."
        )
    url = weights_url(record)
    if url is None:
        raise FileNotFoundError(
            f"The weights {spec} ({record.file}) are {where}, and no download location is known: "
            f"set {config.WEIGHTS_URL_ENV} to a mirror that serves {record.file}, or copy the "
            f"file to {cached}."
        )
    if damaged is not None:
        print(f"{damaged}. Downloading it again.", file=sys.stderr)
    return download_file(url, cached, record.sha256, record.size)


def _copy_atomically(source, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    with replacing(dest) as tmp:
        shutil.copyfile(source, tmp)


def weights_url(record):
    """Where a record's file is downloaded from: a mirror (env), the row's ``url``, or the
    default."""
    mirror = os.environ.get(config.WEIGHTS_URL_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{record.file}"
    if record.url:
        return record.url
    if DEFAULT_BASE_URL:
        return f"{DEFAULT_BASE_URL.rstrip('/')}/{record.file}"
    return None


def file_problem(path, expected):
    """What is wrong with a file given its record (``expected``: anything with ``sha256`` and
    ``size`` attributes, size None when unknown): a sentence, or None when it matches."""
    size = os.path.getsize(path)
    if expected.size is not None and size != expected.size:
        kind = "truncated" if size < expected.size else "damaged"
        return f"{path} is {kind}: it has {size:,} bytes, the manifest says {expected.size:,}"
    digest = sha256(path)
    if digest != expected.sha256:
        return f"{path} is damaged: its sha256 is {digest}, the manifest says {expected.sha256}"
    return None


def verify(path, expected, fix):
    """Check a file's size and sha256 against its record (see :func:`file_problem`); ``fix``
    says what to do if they differ."""
    problem = file_problem(path, expected)
    if problem:
        raise ValueError(f"{problem}. {fix}")


class DownloadDeadlineError(TimeoutError):
    """A download took longer than its overall deadline."""


class _Progress:
    """A plain progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.shown_at = total, 0.0
        self.active = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, count, final=False):
        now = time.monotonic()
        if not self.active or (not final and now - self.shown_at < 0.1):
            return
        self.shown_at = now
        if self.total:
            done = min(count / self.total, 1.0)
            bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
            line = f"[{bar}] {count / 1e6:.1f} / {self.total / 1e6:.1f} MB {done:4.0%}"
        else:
            line = f"{count / 1e6:.1f} MB"
        self.stream.write(f"\r{line}" + ("\n" if final else ""))
        self.stream.flush()


@contextlib.contextmanager
def _sigterm_raises(message):
    """While active, SIGTERM (``kill``) raises SystemExit(143) instead of ending the process at
    once, so that ``finally`` blocks run. Only where SIGTERM has its default action and in the
    main thread (a handler of the program's own is left alone)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def handler(signum, frame):
        print(message, file=sys.stderr)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def download_file(url, dest, expected_sha256, expected_size=None, deadline_s=None):
    """Download ``url`` to ``dest`` atomically, verifying its size and sha256.

    The bytes go to a temporary ``.part`` file beside ``dest``, which replaces ``dest`` only
    when complete and verified; on any failure (an error, the deadline, more bytes than
    expected, SIGTERM, Ctrl-C) it is removed and ``dest`` is left as it was. A progress bar is
    drawn on stderr when it is a terminal.

    Args:
        url: http(s) or file URL.
        dest: final path.
        expected_sha256: hex digest the file must have.
        expected_size: bytes the file must have, if known; reading stops as soon as the server
            sends more.
        deadline_s: seconds the whole download may take. Defaults to
            ``$KERAS_ATTN_ZOO_DOWNLOAD_DEADLINE`` (1800).

    Returns:
        ``dest`` as a ``Path``.
    """
    if config.offline():
        raise OSError(f"{config.OFFLINE_ENV} forbids downloading {url}.")
    deadline_s = config.download_deadline() if deadline_s is None else deadline_s
    if not isinstance(deadline_s, (int, float)) or isinstance(deadline_s, bool) or not deadline_s > 0:
        raise ValueError(f"deadline_s must be a positive number of seconds, got {deadline_s!r}.")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    digest, count = hashlib.sha256(), 0
    print(f"Downloading {url} to {dest}", file=sys.stderr)
    cut = (f"The download of {url} was cut short (truncated after {{:,}} of {{}} bytes). Try "
           f"again, or fetch the file by hand into {dest}.")
    late = (f"The download of {url} did not finish within its deadline of {deadline_s:g} s "
            f"({{:,}} bytes received); nothing was saved. Try again on a faster connection, "
            f"raise {config.DOWNLOAD_DEADLINE_ENV} (seconds), or fetch the file by hand into {dest}.")
    too_big = (f"The server sent more than the manifest's {{:,}} bytes for {url} ({{}}): it is "
               "not the published file (a wrong or tampered mirror?). Reading stopped; nothing "
               "was saved.")
    end = time.monotonic() + deadline_s
    progress = _Progress(expected_size)
    try:
        with _sigterm_raises(f"Interrupted: removed the partial download of {url}."):
            try:
                timeout = min(DOWNLOAD_TIMEOUT_S, deadline_s)
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
                    declared = response.headers.get("Content-Length")
                    if expected_size is not None and declared is not None and int(declared) > expected_size:
                        raise ValueError(too_big.format(expected_size, f"it announced {int(declared):,}"))
                    read = getattr(response, "read1", None) or response.read
                    while True:
                        if time.monotonic() > end:
                            raise DownloadDeadlineError(late.format(count))
                        chunk = read(1 << 16)
                        if not chunk:
                            break
                        count += len(chunk)
                        if expected_size is not None and count > expected_size:
                            raise ValueError(too_big.format(expected_size, f"at least {count:,}"))
                        f.write(chunk)
                        digest.update(chunk)
                        progress.update(count)
                progress.update(count, final=True)
            except DownloadDeadlineError:
                raise
            except http.client.IncompleteRead as e:
                raise ValueError(cut.format(count + len(e.partial), e.expected + count + len(e.partial))) from e
            except (urllib.error.URLError, OSError) as e:
                if time.monotonic() > end:  # the last read's timeout ran past the deadline
                    raise DownloadDeadlineError(late.format(count)) from e
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
        tmp.unlink(missing_ok=True)
    return dest


def download(name, tag=None):
    """Make the published weights ``name:tag`` available locally (``keras-attn-zoo download``).

    Args:
        name: a registered model name (as the registry spells it: the command line normalises
            what users type with ``registry.get_spec``).
        tag: a published tag. Defaults to the model's only one.

    Returns:
        The verified local path.
    """
    if tag is None:
        tags = published_tags(name)
        if len(tags) != 1:
            raise ValueError(
                f"{name} has {'no' if not tags else len(tags)} published weights "
                f"({', '.join(tags) or 'none yet'}): say which, as {name}:TAG."
            )
        tag = tags[0]
    return fetch(published_weight(name, tag), replace_damaged=True)


def sha256(path):
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(rows, manifest=None):
    """Write manifest rows (sorted by model and tag) atomically."""
    manifest = Path(manifest) if manifest is not None else MANIFEST
    rows = sorted(rows, key=lambda r: (r["model"], r["tag"]))
    with replacing(manifest) as tmp:
        tmp.write_text(json.dumps({"weights": rows}, indent=2) + "\n")
