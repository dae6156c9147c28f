"""Where images come from: image folders, archives of them (the local CIFAR-10 copy) and
tensorflow-datasets.

``load_split(source, split)`` takes one ``source`` string and returns a :class:`Split`:

| source | what |
| --- | --- |
| a folder | ``<folder>/<split>/<class>/*.jpg`` (``train``, ``test`` or ``val``), or ``<folder>/<class>/*.jpg`` split into train / test by a seeded, class-stratified hold-out |
| a ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` file | the same layout inside an archive, read once into the cache (``$KERAS_ATTN_ZOO_HOME/datasets``) and reused |
| ``cifar10-jpeg`` | the real CIFAR-10 as JPEGs, ``cifar10-jpeg.tar.gz`` in ``data_dir`` or ``$KERAS_ATTN_ZOO_DATA`` |
| ``cifar10``, ``cifar100``, ``svhn_cropped``, ``imagenet2012`` (or ``tfds:<name>``) | tensorflow-datasets (needs the ``datasets`` extra and a network, or a prepared ``data_dir``; ImageNet needs ``manual_dir``) |

Images are RGB uint8. Splits small enough for memory (CIFAR, SVHN, Tiny ImageNet) are decoded
once into arrays; larger ones are decoded batch by batch. Archives are streamed, never read whole
into memory: one pass lists the image members and their uncompressed sizes, and when these add
up to at most 2 GiB (CIFAR-10's 60,000 JPEGs: 55 MB) a second pass decodes the split's members
one by one, and each split is cached as a decoded ``.npz``, without writing tens of thousands of
small files to disk; a larger archive is extracted once into the cache, member by member, and
read from there. A damaged archive's error names the member where reading stopped. Batches
are ``keras.utils.PyDataset`` objects, so they feed ``fit`` on every backend without TensorFlow;
only tensorflow-datasets' streaming splits use ``tf.data``.
"""

import dataclasses
import hashlib
import os
import shutil
import sys
import tarfile
import uuid
import zipfile
import zlib
from pathlib import Path

import numpy as np

import keras

from keras_attn_zoo import config
from keras_attn_zoo.data.splits import ArraySplit, Batches, Split
from keras_attn_zoo.data.tfds import TFDS_NAMES, tfds_split
from keras_attn_zoo.files import replacing
from keras_attn_zoo.decoding import check_header, decode_pixels
from keras_attn_zoo.weights import sha256

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val", "validation"), "validation": ("validation", "val")}
SPLIT_ALIASES = {"val": "validation"}
MAX_IN_MEMORY_BYTES = 4 << 30
# Archives whose image members take more than this uncompressed are extracted to files instead
# of being decoded from the archive into an array (their size as stored does not matter).
MAX_ARCHIVE_READ_BYTES = 2 << 30
# What reading a damaged (truncated, corrupt) archive raises; BadGzipFile is an OSError.
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)

# Local archives the zoo knows: file name -> (size, sha256, data-set key, description).
KNOWN_ARCHIVES = {
    "cifar10-jpeg.tar.gz": (
        19_642_502,
        "5bbd2193f3b9982b20b3e62de1fcb9691706d5884e1bfe2840596f4c5f9b9bec",
        "cifar10",
        "CIFAR-10 (JPEG copy, quality 75)",
    ),
}
LOCAL_NAMES = {"cifar10-jpeg": "cifar10-jpeg.tar.gz"}
SKIP_HINT = "pass skip_bad_images=True (--skip-bad-images) to leave them out"


class BadImagesError(ValueError):
    """Images that cannot be used (not images, truncated, corrupt, too large), all of them in one
    error, each by its decoding message (which names the file)."""

    def __init__(self, where, messages, count=None):
        self.where, self.messages, self.count = where, list(dict.fromkeys(messages)), count
        of = f" of {count:,}" if count is not None else ""
        super().__init__(f"{where}: {len(self.messages):,}{of} images cannot be used:\n"
                         + "".join(f"  {m}\n" for m in self.messages) + f"Remove or replace them, or {SKIP_HINT}.")


def _bad_images(where, messages, count, skip):
    """Raise a :class:`BadImagesError` for ``messages`` or, with ``skip``, name them on stderr."""
    if not messages:
        return
    if not skip:
        raise BadImagesError(where, messages, count)
    print(f"WARNING: {where}: left out {len(messages):,} of {count:,} images that cannot be used "
          "(skip_bad_images):\n" + "".join(f"  {m}\n" for m in messages), end="", file=sys.stderr)


@dataclasses.dataclass
class FileSplit(Split):
    """A split decoded from image files batch by batch (for data too large for memory).

    ``image_size`` (H, W) is what every image is brought to: resized to it, or, with
    ``resize_shorter``, resized so that its shorter side is ``resize_shorter`` and then
    center-cropped to it (the ImageNet evaluation transform). An image that fails to decode
    (a truncated one: files that are no image, or too large, are found from their headers
    before) stops its batch with an error naming it, or with ``skip_bad_images`` is left out of
    its batch, named on stderr and in ``skipped``.
    """

    files: list
    labels: np.ndarray
    class_names: tuple
    split: str
    source: str
    image_size: tuple
    resize_shorter: int = None
    dataset: str = None
    workers: int = 4
    skip_bad_images: bool = False
    skipped: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, "int32")
        self.image_shape = (*self.image_size, 3)
        self.skipped = list(self.skipped)

    @property
    def num_examples(self):
        return len(self.files)

    def _load(self, idx):
        images, kept, bad = [], [], []
        for i in idx:
            try:
                images.append(decode_image(self.files[i], self.image_size, self.resize_shorter))
                kept.append(i)
            except ValueError as e:
                bad.append(str(e))
        fresh = [m for m in bad if m not in self.skipped]
        self.skipped.extend(fresh)
        _bad_images(self.source, fresh, len(self.files), self.skip_bad_images)
        if not images:
            raise BadImagesError(self.source, bad)  # a batch of bad images only: nothing to train on
        return np.stack(images), self.labels[np.asarray(kept, "int64")]

    def batches(self, batch_size, shuffle=False, seed=0, drop_remainder=False):
        return Batches(len(self.files), self._load, batch_size, shuffle, seed, drop_remainder, workers=self.workers)

    def sample_images(self, count, seed=0):
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(self.files), min(count, len(self.files)), replace=False))
        return self._load(idx)[0]


def decode_image(source, image_size=None, resize_shorter=None, name=None):
    """One image as an RGB uint8 array.

    Decoded by :func:`keras_attn_zoo.decoding.decode_pixels`: an image whose header declares more
    than ``keras_attn_zoo.decoding.MAX_IMAGE_PIXELS`` pixels is refused before decoding, and
    16-bit images are scaled to 8 bits.

    Args:
        source: an image file path, or the file's bytes.
        image_size: (H, W) to bring it to, or None to keep its size.
        resize_shorter: if given, first resize so the shorter side has this length (keeping the
            aspect ratio), then center-crop ``image_size``.
        name: what to call the image in messages (an archive member). Defaults to the path.

    Returns:
        (H, W, 3) uint8 array.

    Raises:
        ValueError: naming the file, if it is not an image or is too large to decode.
    """
    from PIL import Image


    im = decode_pixels(source, "RGB", name=name)
    if resize_shorter:
        w, h = im.size
        factor = resize_shorter / min(w, h)
        im = im.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BILINEAR)
        w, h = im.size
        th, tw = image_size
        if th > h or tw > w:
            raise ValueError(f"Cannot center-crop {th}x{tw} from an image resized to {h}x{w}.")
        left, top = (w - tw) // 2, (h - th) // 2
        im = im.crop((left, top, left + tw, top + th))
    elif image_size is not None and im.size != (image_size[1], image_size[0]):
        im = im.resize((image_size[1], image_size[0]), Image.BILINEAR)
    return np.asarray(im, dtype="uint8")


def index_images(names):
    """The layout of a tree of image files, given their relative POSIX paths.

    Either ``[top/]<split>/<class>/.../<image>`` (split folders: train, test, val, validation)
    or ``[top/]<class>/.../<image>``; a single top folder around either is skipped.

    Args:
        names: relative paths of the image files (other files are ignored).

    Returns:
        ``{folder: (class_names, [names], labels)}``, with folder None for a tree without split
        folders; class names sorted, names (as given) sorted within each class.
    """
    entries = [(tuple(n.split("/")), n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    entries = [(p, n) for p, n in entries if not any(c.startswith(".") for c in p)]
    split_names = {name for names_ in SPLIT_FOLDERS.values() for name in names_}
    tops = {p[0] for p, _ in entries}
    if len(tops) == 1 and not tops & split_names and all(len(p) >= 3 for p, _ in entries):
        entries = [(p[1:], n) for p, n in entries]
    grouped = {}
    if any(p[0] in split_names and len(p) >= 3 for p, _ in entries):
        for p, n in entries:
            if p[0] in split_names and len(p) >= 3:
                grouped.setdefault(p[0], []).append((p[1:], n))
    else:
        grouped[None] = [(p, n) for p, n in entries if len(p) >= 2]
    index = {}
    for folder, members in grouped.items():
        classes = sorted({p[0] for p, _ in members})
        label_of = {c: i for i, c in enumerate(classes)}
        members = sorted(members, key=lambda m: (label_of[m[0][0]], m[0]))
        index[folder] = (
            tuple(classes),
            [n for _, n in members],
            np.asarray([label_of[p[0]] for p, _ in members], "int32"),
        )
    return index


def _folder_names(root):
    root = Path(root)
    return [p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]


def _empty_class_folders(root, classes, names, labels):
    """Folders beside the class folders of ``names`` (images of ``root``, relative paths, and
    their ``labels``) that hold no image, which an index of images never sees; relative to
    ``root``."""
    root = Path(root)
    split_names = {name for names_ in SPLIT_FOLDERS.values() for name in names_}
    parents = set()
    for name, label in zip(names, labels):
        parts = name.split("/")
        parents.add(tuple(parts[:parts.index(classes[label])]))
    empty = []
    for parent in (root.joinpath(*p) for p in parents):
        for folder in parent.iterdir():
            if (folder.is_dir() and not folder.name.startswith(".") and folder.name not in classes
                    and folder.name not in split_names
                    and not any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in folder.rglob("*"))):
                empty.append(folder.relative_to(root).as_posix())
    return sorted(empty)


def split_name(split, folder):
    """What a split read from ``folder`` is called: a ``val/`` or ``validation/`` folder is the
    "validation" split, whichever split asked for it ("test" falls back to it)."""
    return "validation" if folder in ("val", "validation") else split


def _pick(index, split, where):
    """(class_names, names, labels, held_out, folder) of ``split`` in an index; ``folder`` is the
    split folder read (None for images held out of bare class folders)."""
    if None in index:
        if not index[None][1]:
            raise ValueError(f"Found no class folders with images in {where}: expected <class>/<image>.")
        return (*index[None], True, None)
    folder = next((f for f in SPLIT_FOLDERS[split] if f in index), None)
    have = ", ".join(f"{f}/" for f in sorted(index))
    if "train" not in index:
        raise ValueError(f"{where} has split folders ({have}) but no train/ folder: put the training images in "
                         "train/<class>/, or give one folder per class without split folders (a share of each "
                         "class is then held out).")
    if folder is None:
        wanted = " or ".join(f"{f}/" for f in SPLIT_FOLDERS[split])
        raise ValueError(f"{where} has no {split} split: it has {have}, no {wanted}.")
    classes, names, labels = index[folder]
    if classes != index["train"][0]:
        raise ValueError(
            f"The {folder} classes of {where} differ from its train classes: "
            f"{sorted(set(classes) ^ set(index['train'][0]))}."
        )
    return classes, names, labels, False, folder


def _holdout(count_labels, split, fraction, seed, class_names, where):
    """Boolean mask of the images of ``split`` in a seeded, class-stratified hold-out.

    Every class gives ``fraction`` of its images, rounded, and at least one, to the test split
    and keeps at least one for training; a class with a single image is an error (it could be
    trained on or tested, not both).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout must be between 0 and 1, got {fraction!r}.")
    counts = np.bincount(count_labels, minlength=len(class_names))
    lonely = [f"{class_names[label]!r} ({count})" for label, count in enumerate(counts) if count < 2]
    if lonely:
        raise ValueError(
            f"{where}: holding out a test (validation) split needs at least 2 images per class, one to "
            f"train on and one to test with; the class(es) {', '.join(lonely)} have fewer. Add images, "
            "or give train/ and val/ folders."
        )
    rng = np.random.default_rng(seed)
    test = np.zeros(len(count_labels), bool)
    for label in np.unique(count_labels):
        idx = np.flatnonzero(count_labels == label)
        count = min(max(1, int(round(fraction * len(idx)))), len(idx) - 1)
        test[rng.permutation(idx)[:count]] = True
    return test if split != "train" else ~test


def extract_archive(path, cache_dir=None):
    """Extract an image archive once into the cache and return the folder; later calls reuse it.

    Used for archives too large to decode into memory. Members are copied to files in chunks
    as the archive streams by. Extraction goes to a temporary folder that is renamed when
    complete: an interrupted extraction is never mistaken for a finished one.

    Args:
        path: a ``.tar.gz``, ``.tgz``, ``.tar`` or ``.zip`` file.
        cache_dir: the cache. Defaults to ``$KERAS_ATTN_ZOO_HOME/datasets``.

    Returns:
        The extracted folder.
    """
    dest = _cache_folder(path, cache_dir) / "files"
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".files.{uuid.uuid4().hex}.tmp"
        print(f"Extracting {path} to {dest} (once)")
        try:
            for name, _, read in _archive_members(path):
                target = tmp.joinpath(*name.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as f:
                    while chunk := read(1 << 20):
                        f.write(chunk)
            try:
                os.replace(tmp, dest)
            except OSError:  # another process finished first
                if not dest.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _cache_folder(path, cache_dir):
    """The cache folder of an archive, named after it and a hash of its path, size and mtime
    (a changed archive gets a new one)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return (Path(cache_dir) if cache_dir else config.home() / "datasets") / f"{stem}-{key}"


def _archive_members(path):
    """(relative name, uncompressed size, read) of every regular image file in an archive, in one
    streaming pass; ``read(n)`` reads up to ``n`` bytes of the member (all without ``n``) and is
    valid until the next member.

    Links, devices and names that would leave the archive's folder are refused. A damaged
    archive (truncated, failed checksum, corrupt compressed data) raises a ``ValueError`` that
    names the member where reading stopped.
    """
    path = Path(path)
    current = None

    def safe(name):
        parts = name.replace("\\", "/").split("/")
        if name.startswith("/") or ".." in parts:
            raise ValueError(f"{path} has an unsafe member path {name!r}; nothing was read.")
        return "/".join(p for p in parts if p not in ("", "."))

    def damaged(error):
        where = f"at member {current!r}" if current else "before its first member"
        return ValueError(f"{path} is damaged: reading stopped {where} ({type(error).__name__}: {error}). "
                          "Nothing was cached from it; copy or download it again.")

    def reader(file):
        def read(size=-1):
            try:
                return file.read(size)
            except ARCHIVE_ERRORS as e:
                raise damaged(e) from e

        return read

    with open(path, "rb") as archive:  # outside the try: not being able to open it is no damage
        try:
            if path.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as z:
                    for member in z.infolist():
                        if not member.is_dir() and member.filename.lower().endswith(IMAGE_EXTENSIONS):
                            current = member.filename
                            name = safe(member.filename)
                            with z.open(member) as file:
                                yield name, member.file_size, reader(file)
                return
            # streaming: a single pass over the compressed file
            with tarfile.open(fileobj=archive, mode="r|*") as t:
                for member in t:
                    current = member.name
                    if member.isfile() and member.name.lower().endswith(IMAGE_EXTENSIONS):
                        yield safe(member.name), member.size, reader(t.extractfile(member))
        except ARCHIVE_ERRORS as e:
            raise damaged(e) from e


def _archive_index(path):
    """``{name: uncompressed size}`` of an archive's image members, from a streaming pass that
    keeps no member's data."""
    return {name: size for name, size, _ in _archive_members(path)}


def _archive_identity(path):
    """(data-set key, description) of a known archive (checked by size and sha256), or Nones."""
    known = KNOWN_ARCHIVES.get(Path(path).name)
    if known and os.path.getsize(path) == known[0]:
        if sha256(path) == known[1]:
            return known[2], known[3]
    return None, None


def _resolve_local(source, data_dir):
    """The archive path of a local name such as "cifar10-jpeg"."""
    folder = data_dir or os.environ.get(config.DATA_ENV)
    file_name = LOCAL_NAMES[source]
    if not folder:
        raise ValueError(
            f"Where is {file_name}? Pass data_dir= (--data-dir) or set {config.DATA_ENV} to the "
            f"folder that holds it, or pass the file's path as the source."
        )
    path = Path(folder).expanduser() / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found ({config.DATA_ENV} or data_dir points to {folder}).")
    return path


def load_split(
    source,
    split="train",
    *,
    image_size=None,
    resize_shorter=None,
    limit=None,
    seed=0,
    data_dir=None,
    manual_dir=None,
    cache_dir=None,
    holdout=0.1,
    in_memory=None,
    download=True,
    skip_bad_images=False,
):
    """One split of an image classification data set, from any of the zoo's sources.

    Args:
        source: a folder, an archive file, "cifar10-jpeg", or a tensorflow-datasets name
            ("cifar10", "cifar100", "svhn_cropped", "imagenet2012", "tfds:<name>").
        split: "train", "test" ("val"/"validation" folders serve as "test" when there is no
            test folder; ImageNet's "validation" split serves as "test") or "validation" ("val":
            a val/ or validation/ folder). A folder without split folders gives its held-out
            images for "test" and "validation" alike. Defaults to "train".
        image_size: (H, W) to bring images to. Defaults to their own size (all images of an
            in-memory split must then share one size).
        resize_shorter: resize the shorter side to this, then center-crop ``image_size``
            (ImageNet evaluation: 256 then 224). Defaults to None (plain resize).
        limit: keep a seeded random subset of this many images (quick runs, tests).
        seed: seed of ``limit`` and of the hold-out split. Defaults to 0.
        data_dir: folder of local archives (for "cifar10-jpeg") or tensorflow-datasets' data
            folder. Defaults to ``$KERAS_ATTN_ZOO_DATA`` / tfds' default.
        manual_dir: tensorflow-datasets' manual download folder (ImageNet's tar files).
        cache_dir: where archives are cached. Defaults to ``$KERAS_ATTN_ZOO_HOME/datasets``.
        holdout: fraction held out as "test" when there are no split folders. Defaults to 0.1.
        in_memory: decode the whole split into memory. Defaults to True when it takes less than
            4 GiB.
        download: let tensorflow-datasets download. Defaults to True.
        skip_bad_images: leave out, and name on stderr (and in the split's ``skipped``), the
            images of a folder or archive that cannot be used (no image, truncated, corrupt, over
            ``keras_attn_zoo.decoding.MAX_IMAGE_PIXELS``); without it they fail, all of them
            named in one :class:`BadImagesError`. Defaults to False.

    Returns:
        A :class:`Split`.

    Example:
    >>> test = load_split("cifar10-jpeg", "test", data_dir="/data")
    >>> test.description
    'CIFAR-10 (JPEG copy, quality 75), test split, 10,000 images'
    """
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"split must be one of {(*SPLIT_FOLDERS, *SPLIT_ALIASES)}, got {split!r}.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}.")
    size = tuple(image_size) if image_size is not None else None
    source = os.fspath(source)
    if source in LOCAL_NAMES:
        source = _resolve_local(source, data_dir)
    path = Path(source).expanduser()
    options = {"image_size": size, "resize_shorter": resize_shorter, "limit": limit, "seed": seed,
               "holdout": holdout, "in_memory": in_memory, "skip_bad_images": skip_bad_images}
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        dataset, title = _archive_identity(path)
        title = title or f"image archive {path.name}"
        if in_memory is False or (_cache_folder(path, cache_dir) / "files").is_dir():
            return _folder_split(extract_archive(path, cache_dir), split, title, dataset, **options)
        return _archive_split(path, split, title, dataset, cache_dir, **options)
    if path.is_dir():
        return _folder_split(path, split, f"image folder {path.name}", None, **options)
    name = source[5:] if source.startswith("tfds:") else source
    if source.startswith("tfds:") or name in TFDS_NAMES:
        return tfds_split(name, split, image_size=size, resize_shorter=resize_shorter,
                          limit=limit, seed=seed, data_dir=data_dir, manual_dir=manual_dir,
                          in_memory=in_memory, download=download)
    if path.exists():
        raise ValueError(f"{path} is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)}).")
    raise ValueError(
        f"Unknown data source {source!r}: not a folder or archive that exists, and not one of "
        f"{', '.join([*LOCAL_NAMES, *TFDS_NAMES])} or tfds:<name>."
    )


def load_splits(source, splits, **options):
    """Several splits of one source, with the images that cannot be used in any of them named
    together in one :class:`BadImagesError`, not one split per attempt.

    Args:
        source: as for :func:`load_split`.
        splits: ``{key: (split, {option: value})}``, each split's own options (e.g. ``limit``).
        **options: :func:`load_split` options common to all (``skip_bad_images``...).

    Returns:
        ``{key: Split}``.
    """
    loaded, bad = {}, []
    for key, (split, own) in splits.items():
        try:
            loaded[key] = load_split(source, split, **options, **own)
        except BadImagesError as e:
            bad.extend(e.messages)
    if bad:
        raise BadImagesError(os.fspath(source), bad)
    return loaded


def split_folders(source):
    """The split folders (train, val, validation, test) of an image folder or archive: an empty set
    for one of bare class folders (``load_split`` then holds images out) or another source."""
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        names = _folder_names(path)
    elif path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        names = _archive_index(path)
    else:
        return set()
    return {folder for folder in index_images(names) if folder is not None}


def _subset(count, limit, seed):
    if limit is None or limit >= count:
        return None
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def _folder_split(root, split, title, dataset, *, image_size, resize_shorter, limit, seed,
                  holdout, in_memory, skip_bad_images):
    root = Path(root)
    classes, names, labels, held_out, folder = _pick(index_images(_folder_names(root)), split, root)
    named = split_name(split, folder)
    empty = _empty_class_folders(root, classes, names, labels)
    if empty:
        raise ValueError(
            f"{root}: the class folder(s) {', '.join(empty)} hold no images ({', '.join(IMAGE_EXTENSIONS)}), "
            f"beside the classes {', '.join(classes)}: add images, or move the folder(s) away."
        )
    files = [str(root / n) for n in names]
    if held_out:
        keep = _holdout(labels, split, holdout, seed, classes, root)
        files, labels = [f for f, k in zip(files, keep) if k], labels[keep]
        title = f"{title} ({holdout:.0%} held out as test, seed {seed})"
    subset = _subset(len(files), limit, seed)
    if subset is not None:
        files, labels = [files[i] for i in subset], labels[subset]
    size = image_size or decode_image(files[0]).shape[:2]
    if in_memory is None:
        in_memory = len(files) * size[0] * size[1] * 3 <= MAX_IN_MEMORY_BYTES
    if not in_memory:  # decoded batch by batch: here the headers only
        bad = {}
        for i, f in enumerate(files):
            try:
                check_header(f)
            except ValueError as e:
                bad[i] = str(e)
        _bad_images(root, list(bad.values()), len(files), skip_bad_images)
        keep = [i for i in range(len(files)) if i not in bad]
        return FileSplit([files[i] for i in keep], labels[keep], classes, named, title, tuple(size), resize_shorter,
                         dataset, skip_bad_images=skip_bad_images, skipped=list(bad.values()))
    x, bad = _decode_all(((i, f, f) for i, f in enumerate(files)), len(files), image_size, resize_shorter)
    _bad_images(root, list(bad.values()), len(files), skip_bad_images)
    split = ArraySplit(x, np.delete(labels, list(bad)), classes, named, title, dataset)
    split.skipped = tuple(bad.values())
    return split


def _archive_split(path, split, title, dataset, cache_dir, *, image_size, resize_shorter, limit,
                   seed, holdout, in_memory, skip_bad_images):
    """A split of an archive, decoded once into ``<cache>/<split>-<size>.npz``, or, for an
    archive whose images take more than ``MAX_ARCHIVE_READ_BYTES`` uncompressed (or decode to
    more than ``MAX_IN_MEMORY_BYTES``), of its files extracted into the cache."""
    cache = _cache_folder(path, cache_dir)
    tag = "native" if image_size is None else f"{image_size[0]}x{image_size[1]}"
    tag += f"-s{resize_shorter}" if resize_shorter else ""
    held_out_file = cache / f"all-{tag}.npz"
    split_file = cache / f"{split}-{tag}.npz"
    cached = split_file if split_file.is_file() else held_out_file if held_out_file.is_file() else None
    if cached is None:
        members = _archive_index(path)
        classes, names, labels, held_out, folder = _pick(index_images(members), split, path)
        total = sum(members.values())
        decoded = len(names) * image_size[0] * image_size[1] * 3 if image_size else 0
        if in_memory is None and (total > MAX_ARCHIVE_READ_BYTES or decoded > MAX_IN_MEMORY_BYTES):
            print(f"{path} holds {total / 2**30:.2f} GiB of images uncompressed: extracting it to files "
                  "instead of decoding it into memory")
            return _folder_split(extract_archive(path, cache_dir), split, title, dataset, image_size=image_size,
                                 resize_shorter=resize_shorter, limit=limit, seed=seed, holdout=holdout,
                                 in_memory=None, skip_bad_images=skip_bad_images)
        print(f"Reading {path} into {cache} (once)")
        position = {name: i for i, name in enumerate(names)}
        wanted = ((position[name], read(), f"{path.name}: {name}")
                  for name, _, read in _archive_members(path) if name in position)
        x, bad = _decode_all(wanted, len(names), image_size, resize_shorter)
        _bad_images(path, list(bad.values()), len(names), skip_bad_images)  # nothing is cached without it
        cached = held_out_file if held_out else split_file
        cache.mkdir(parents=True, exist_ok=True)
        with replacing(cached) as tmp:
            np.savez(tmp, x=x, y=np.delete(labels, list(bad)), classes=np.asarray(classes),
                     skipped=np.asarray(list(bad.values()), dtype=str), folder=np.asarray(folder or ""))
        read_before = False
    else:
        read_before = True
    with np.load(cached) as data:
        x, labels, classes = data["x"], data["y"], tuple(str(c) for c in data["classes"])
        skipped = tuple(str(m) for m in data["skipped"]) if "skipped" in data.files else ()
        folder = str(data["folder"]) if "folder" in data.files else None
    if read_before:  # cached with skip_bad_images: the same images fail, or are left out, again
        _bad_images(path, list(skipped), len(x) + len(skipped), skip_bad_images)
    if cached == held_out_file:
        keep = _holdout(labels, split, holdout, seed, classes, path)
        x, labels = x[keep], labels[keep]
        title = f"{title} ({holdout:.0%} held out as test, seed {seed})"
    subset = _subset(len(x), limit, seed)
    if subset is not None:
        x, labels = x[subset], labels[subset]
    result = ArraySplit(x, labels, classes, split_name(split, folder), title, dataset)
    result.skipped = skipped
    return result


def _decode_all(items, count, requested, resize_shorter):
    """Decode ``count`` images into one uint8 array, going on past the images that cannot be used.

    Args:
        items: ``(position, source, name)`` of each image in any order (an archive's), source a
            path or the file's bytes, name what messages call it.
        count: number of images.
        requested: (H, W) to resize to; with None, images are not resized and must all have
            the size of the first one decoded.
        resize_shorter: as for :func:`decode_image`.

    Returns:
        ``(x, bad)``: the decoded images in position order, without those that failed, and
        ``{position: message}`` of those, in position order.
    """
    x, first, done, bad = None, None, 0, {}
    progress = keras.utils.Progbar(count, unit_name="image") if count >= 5000 else None
    if progress:
        print(f"Decoding {count:,} images")
    for position, source, name in items:
        done += 1
        try:
            image = decode_image(source, requested, resize_shorter, name=name)
        except ValueError as e:
            bad[position] = str(e)
            continue
        if x is None:
            x, first = np.empty((count, *image.shape), "uint8"), name
        elif image.shape != x.shape[1:]:
            raise ValueError(
                f"{name} is {image.shape[0]}x{image.shape[1]}, {first} {x.shape[1]}x{x.shape[2]}: "
                "pass image_size= to resize them all."
            )
        x[position] = image
        if progress and done % 5000 == 0 and done < count:
            progress.update(done)
    if x is None:
        x = np.empty((0, *(requested or (0, 0)), 3), "uint8")
    if done != count:
        raise ValueError(f"Expected {count:,} images, decoded {done:,}: did the files change while they were read?")
    if progress:
        progress.update(count, finalize=True)
    bad = dict(sorted(bad.items()))
    if bad and len(x):  # close the gaps in place (rows move only down): no second copy of the array
        for row, position in enumerate(i for i in range(count) if i not in bad):
            if row != position:
                x[row] = x[position]
        x = x[:count - len(bad)]
    return x, bad
