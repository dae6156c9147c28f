"""Data sources, the papers' augmentation layers and the recorded input normalisation."""

import io
import json
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import keras

import keras_attn_zoo as zoo
from helpers import CIFAR10_ARCHIVE, bomb_png, run_layer_serialization_test
from keras_attn_zoo.data import (
    ArraySplit,
    BadImagesError,
    ChannelStats,
    FileSplit,
    RandomPadCrop,
    RandomResizedCrop,
    channel_stats,
    load_split,
    normalization_layer,
    preprocess_input,
)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def image(label, index, size=(6, 5)):
    """A deterministic RGB image that encodes its class and index."""
    rng = np.random.default_rng(1000 * label + index)
    return rng.integers(0, 256, (*size, 3), dtype="uint8")


def write_folder(root, classes=("cat", "dog"), per_class=4, size=(6, 5)):
    """PNG files (lossless) root/<class>/<i>.png; returns {(label, index): array}."""
    written = {}
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            written[label, i] = image(label, i, size)
            Image.fromarray(written[label, i]).save(root / name / f"{i:03d}.png")
    return written


@pytest.mark.multibackend
def test_folder_with_split_folders_decodes_exact_pixels(tmp_path):
    train = write_folder(tmp_path / "pets" / "train")
    test = write_folder(tmp_path / "pets" / "test", per_class=2)
    split = load_split(tmp_path / "pets", "train")
    assert isinstance(split, ArraySplit) and split.class_names == ("cat", "dog")
    assert split.x.dtype == np.uint8 and split.x.shape == (8, 6, 5, 3)
    np.testing.assert_array_equal(split.y, [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(split.x[5], train[1, 1])
    assert split.description == "image folder pets, train split, 8 images" and split.dataset is None
    held = load_split(tmp_path / "pets", "test")
    np.testing.assert_array_equal(held.x[3], test[1, 1])
    resized = load_split(tmp_path / "pets", "train", image_size=(4, 4), limit=3)
    assert resized.x.shape == (3, 4, 4, 3)
    with pytest.raises(ValueError, match=r"pets has no validation split: it has test/, train/, no "
                                         r"validation/ or val/\.$"):
        load_split(tmp_path / "pets", "validation")
    write_folder(tmp_path / "no_train" / "test", per_class=1)  # split folders, but nothing to train on
    with pytest.raises(ValueError, match=r"no_train has split folders \(test/\) but no train/ folder: put the "
                                         r"training images in train/<class>/, or give one folder per class"):
        load_split(tmp_path / "no_train", "test")


@pytest.mark.multibackend
def test_val_names_the_validation_folder_and_split_folders_says_which_exist(tmp_path):
    from keras_attn_zoo.data import split_folders

    write_folder(tmp_path / "pets" / "train", per_class=2)
    val = write_folder(tmp_path / "pets" / "val", per_class=1)
    assert split_folders(tmp_path / "pets") == {"train", "val"}
    served = load_split(tmp_path / "pets", "test")  # no test/: val/ serves as test, called what it is
    assert served.x.shape[0] == 2 and served.description == "image folder pets, validation split, 2 images"
    test = write_folder(tmp_path / "pets" / "test", per_class=3)
    assert split_folders(tmp_path / "pets") == {"train", "val", "test"}
    for name in ("val", "validation"):
        split = load_split(tmp_path / "pets", name)
        assert split.split == "validation" and split.description == "image folder pets, validation split, 2 images"
        np.testing.assert_array_equal(split.x[1], val[1, 0])
    np.testing.assert_array_equal(load_split(tmp_path / "pets", "test").x[5], test[1, 2])
    write_folder(tmp_path / "flat", per_class=2)
    assert split_folders(tmp_path / "flat") == set() and split_folders("cifar10") == set()
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test', 'validation', 'val'\), got 'dev'"):
        load_split(tmp_path / "pets", "dev")


def test_folder_without_splits_holds_out_a_seeded_stratified_test_set(tmp_path):
    write_folder(tmp_path / "flat", classes=("a", "b", "c"), per_class=10)
    train = load_split(tmp_path / "flat", "train", holdout=0.2)
    test = load_split(tmp_path / "flat", "test", holdout=0.2)
    assert np.bincount(train.y).tolist() == [8, 8, 8] and np.bincount(test.y).tolist() == [2, 2, 2]
    together = {arr.tobytes() for arr in [*train.x, *test.x]}
    assert len(together) == 30  # disjoint and complete
    again = load_split(tmp_path / "flat", "test", holdout=0.2)
    np.testing.assert_array_equal(again.x, test.x)
    other_seed = load_split(tmp_path / "flat", "test", holdout=0.2, seed=1)
    assert not np.array_equal(other_seed.x, test.x)
    assert "20% held out as test, seed 0" in test.description


@pytest.mark.multibackend
def test_streaming_split_gives_the_same_batches(tmp_path):
    write_folder(tmp_path / "pets" / "train", per_class=5)
    memory = load_split(tmp_path / "pets", "train")
    stream = load_split(tmp_path / "pets", "train", in_memory=False)
    assert isinstance(stream, FileSplit) and stream.num_examples == 10
    x, y = stream.batches(4)[1]
    np.testing.assert_array_equal(x, memory.x[4:8])
    np.testing.assert_array_equal(y, memory.y[4:8])
    assert len(stream.batches(4)) == 3 and len(stream.batches(4, drop_remainder=True)) == 2
    # every image at once, in order, from either kind of split
    for split in (memory, stream):
        images, labels = split.arrays(batch_size=4)
        np.testing.assert_array_equal(images, memory.x)
        np.testing.assert_array_equal(labels, memory.y)
        assert images.dtype == np.uint8 and labels.dtype == np.int32


@pytest.mark.multibackend
def test_shuffled_batches_are_seeded_per_epoch():
    split = ArraySplit(np.arange(10, dtype="uint8").reshape(10, 1, 1, 1), np.arange(10), ("x",), "train", "t")

    def epoch(batches):
        return [batches[i][1].tolist() for i in range(len(batches))]

    first = split.batches(3, shuffle=True, seed=3)
    epoch0 = epoch(first)
    first.on_epoch_end()
    epoch1 = epoch(first)
    assert sorted(sum(epoch0, [])) == list(range(10)) and epoch0 != epoch1  # all images, new batches
    assert epoch(split.batches(3)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    resumed = split.batches(3, shuffle=True, seed=3)
    resumed.set_epoch(1)
    assert epoch(resumed) == epoch1


def test_bad_sources_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_ATTN_ZOO_DATA", raising=False)
    with pytest.raises(ValueError, match="Unknown data source 'cifar11'.*tfds:<name>"):
        load_split("cifar11")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders with images"):
        load_split(tmp_path / "empty")
    with pytest.raises(ValueError, match="KERAS_ATTN_ZOO_DATA"):
        load_split("cifar10-jpeg")
    monkeypatch.setenv("KERAS_ATTN_ZOO_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar10-jpeg.tar.gz not found"):
        load_split("cifar10-jpeg")
    with pytest.raises(ValueError, match="split must be one of"):
        load_split(tmp_path, "dev")
    flat = tmp_path / "flat"
    (flat / "x").mkdir(parents=True)
    (flat / "y").mkdir()
    for i in range(2):
        Image.fromarray(image(0, i, (4, 4))).save(flat / "x" / f"{i}.png")
        Image.fromarray(image(1, i, (5, 5))).save(flat / "y" / f"{i}.png")
    with pytest.raises(ValueError, match=r"y/\d.png is 5x5, .*x/\d.png 4x4: pass image_size= to resize them all"):
        load_split(flat, "train", holdout=0.5)


def test_every_class_is_in_both_held_out_splits_or_the_error_says_which_is_not(tmp_path):
    """Two images of a class: one trains, one tests (rounding 20% of 2 gave none, and with every
    class so small an empty test split); one image, or an empty class folder, is an error."""
    write_folder(tmp_path / "pets", classes=("cat", "dog", "emu"), per_class=2)
    train = load_split(tmp_path / "pets", "train", holdout=0.2)
    test = load_split(tmp_path / "pets", "test", holdout=0.2)
    assert np.bincount(train.y).tolist() == [1, 1, 1] and np.bincount(test.y).tolist() == [1, 1, 1]
    write_folder(tmp_path / "many", classes=("cat", "dog"), per_class=40)
    assert np.bincount(load_split(tmp_path / "many", "test", holdout=0.2).y).tolist() == [8, 8]  # as before

    (tmp_path / "pets" / "emu" / "001.png").unlink()
    with pytest.raises(ValueError, match=r"pets: holding out a test \(validation\) split needs at least 2 images "
                                         r"per class.* the class\(es\) 'emu' \(1\) have fewer"):
        load_split(tmp_path / "pets", "test", holdout=0.2)
    (tmp_path / "pets" / "emu" / "000.png").unlink()
    (tmp_path / "pets" / "emu" / "notes.txt").write_text("no images yet")
    for layout in (tmp_path / "pets", tmp_path / "split"):
        if layout.name == "split":
            write_folder(layout / "train", classes=("cat", "dog"))
            write_folder(layout / "val", classes=("cat", "dog"), per_class=1)
            (layout / "train" / "emu").mkdir()
        with pytest.raises(ValueError, match=r"the class folder\(s\) (train/)?emu hold no images .* beside the "
                                             "classes cat, dog"):
            load_split(layout, "train", holdout=0.2)
    with pytest.raises(ValueError, match="The test split of tiny has no images."):
        ArraySplit(np.zeros((0, 2, 2, 3), "uint8"), [], ("a",), "test", "tiny")


def test_a_decompression_bomb_among_training_images_is_named_before_any_work(tmp_path):
    write_folder(tmp_path / "pets" / "train")
    write_folder(tmp_path / "pets" / "test", per_class=1)
    bomb_png(tmp_path / "pets" / "train" / "dog" / "big.png", 9_000, 9_000)  # 78 KB, 81 megapixels
    for in_memory in (True, False):
        with pytest.raises(ValueError, match=r"dog/big.png declares 9000x9000 = 81,000,000 pixels, more than "
                                             "the limit"):
            split = load_split(tmp_path / "pets", image_size=(8, 8), in_memory=in_memory)
            split.batches(16)[0]  # a streamed split decodes when batches are drawn


def _bad_images(folder):
    """A corrupt, a truncated and an oversized image among the good ones of ``folder``: their
    paths relative to it."""
    (folder / "cat" / "notes.jpg").write_bytes(b"a text file called .jpg")
    jpeg = io.BytesIO()
    Image.fromarray(image(9, 9, (40, 40))).save(jpeg, "JPEG")
    (folder / "dog" / "cut.jpg").write_bytes(jpeg.getvalue()[:len(jpeg.getvalue()) // 2])
    bomb_png(folder / "dog" / "big.png", 9_000, 9_000)
    return ["cat/notes.jpg", "dog/big.png", "dog/cut.jpg"]


def test_bad_training_images_are_all_named_in_one_error_or_skipped_and_listed(tmp_path, capsys):
    root = tmp_path / "pets"
    written = write_folder(root / "train")
    write_folder(root / "test", per_class=1)
    bad = _bad_images(root / "train")
    expected = [f"{root / 'train' / 'cat' / 'notes.jpg'} is not an image Pillow can read",
                f"{root / 'train' / 'dog' / 'big.png'} declares 9000x9000 = 81,000,000 pixels, more than the limit",
                f"{root / 'train' / 'dog' / 'cut.jpg'} is not an image Pillow can read (image file is truncated"]
    with pytest.raises(BadImagesError) as error:
        load_split(root, image_size=(6, 5))
    lines = str(error.value).splitlines()
    assert lines[0] == f"{root}: 3 of 11 images cannot be used:"
    assert [line.strip()[:len(e)] for line, e in zip(lines[1:4], expected)] == expected
    assert lines[4] == "Remove or replace them, or pass skip_bad_images=True (--skip-bad-images) to leave them out."

    split = load_split(root, image_size=(6, 5), skip_bad_images=True)
    assert split.num_examples == 8 and [m[:len(e)] for m, e in zip(split.skipped, expected)] == expected
    np.testing.assert_array_equal(split.y, [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(split.x[5], written[1, 1])  # the good images, in order, exactly
    err = capsys.readouterr().err
    assert err.startswith(f"WARNING: {root}: left out 3 of 11 images that cannot be used (skip_bad_images):\n")
    assert all(e in err for e in expected)

    # Decoded batch by batch: the headers (no image, too large) are checked first; a truncated
    # image is found when its batch is decoded, named, and left out of the batch with the flag.
    with pytest.raises(BadImagesError, match=r"2 of 11 images cannot be used:\n.*notes.jpg.*\n.*big.png"):
        load_split(root, image_size=(6, 5), in_memory=False)
    streamed = load_split(root, image_size=(6, 5), in_memory=False, skip_bad_images=True)
    assert streamed.num_examples == 9 and len(streamed.skipped) == 2
    x, y = streamed.batches(16)[0]
    assert len(x) == 8 and len(streamed.skipped) == 3 and streamed.skipped[2].startswith(expected[2])
    np.testing.assert_array_equal(x, split.x)
    np.testing.assert_array_equal(y, split.y)
    for name in bad[:2]:
        (root / "train" / name).unlink()
    streamed = load_split(root, image_size=(6, 5), in_memory=False)  # only the truncated one is left
    with pytest.raises(BadImagesError, match=r"image folder pets: 1 of 9 images cannot be used:\n  .*/train/dog/"
                                             r"cut.jpg is not an image Pillow can read \(image file is truncated"):
        streamed.batches(16)[0]


def test_bad_images_of_every_split_and_of_archives_are_named_together(tmp_path, capsys):
    """A flat folder's held-out images and its training images fail in one error; an archive
    caches nothing with bad images, and with skip_bad_images caches the good ones and the list."""
    from keras_attn_zoo.data import load_splits

    root = tmp_path / "flat"
    write_folder(root, per_class=6)
    _bad_images(root)
    requests = {"train": ("train", {}), "test": ("test", {})}
    with pytest.raises(BadImagesError) as error:
        load_splits(root, requests, image_size=(6, 5), holdout=0.3)
    assert str(error.value).startswith(f"{root}: 3 images cannot be used:\n")
    assert all(f"{root / name}" in str(error.value) for name in ("cat/notes.jpg", "dog/big.png", "dog/cut.jpg"))
    splits = load_splits(root, requests, image_size=(6, 5), holdout=0.3, skip_bad_images=True)
    assert sorted(m.split(" ")[0] for s in splits.values() for m in s.skipped) == [
        str(root / n) for n in ("cat/notes.jpg", "dog/big.png", "dog/cut.jpg")]

    archive, cache = tmp_path / "flat.tar.gz", tmp_path / "cache"
    with tarfile.open(archive, "w:gz") as t:
        t.add(root, arcname="flat")
    with pytest.raises(BadImagesError, match=r"flat.tar.gz: 3 of 15 images cannot be used:\n  flat.tar.gz: flat/cat/notes"):
        load_split(archive, cache_dir=cache, image_size=(6, 5))
    assert not list(cache.rglob("*.npz"))
    train = load_split(archive, cache_dir=cache, image_size=(6, 5), skip_bad_images=True)
    assert len(train.skipped) == 3 and len(list(cache.rglob("*.npz"))) == 1
    capsys.readouterr()
    with pytest.raises(BadImagesError, match="3 of 15 images cannot be used"):  # from the cache, no reading
        load_split(archive, cache_dir=cache, image_size=(6, 5))
    again = load_split(archive, cache_dir=cache, image_size=(6, 5), skip_bad_images=True)
    np.testing.assert_array_equal(again.x, train.x)
    assert "left out 3 of 15 images" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archives_are_read_once_and_reused(tmp_path, kind, monkeypatch):
    written = write_folder(tmp_path / "src" / "pets" / "train")
    write_folder(tmp_path / "src" / "pets" / "test", per_class=1)
    archive = tmp_path / f"pets.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as z:
            for f in sorted((tmp_path / "src").rglob("*.png")):
                z.write(f, f.relative_to(tmp_path / "src"))
    else:
        with tarfile.open(archive, "w:gz") as t:
            t.add(tmp_path / "src" / "pets", arcname="pets")
    cache = tmp_path / "cache"
    split = load_split(archive, "train", cache_dir=cache)
    np.testing.assert_array_equal(split.x[6], written[1, 2])
    assert split.description == f"image archive pets.{kind}, train split, 8 images"
    streamed = load_split(archive, "test", cache_dir=cache, in_memory=False)  # extracted to files
    assert isinstance(streamed, FileSplit) and streamed.num_examples == 2
    (folder,) = cache.iterdir()
    assert folder.name.startswith("pets-")
    assert sorted(p.name for p in folder.iterdir()) == ["files", "train-native.npz"]
    from keras_attn_zoo.data import sources

    def read_again(path):
        raise AssertionError(f"{path} was read a second time")

    monkeypatch.setattr(sources, "_archive_members", read_again)
    again = load_split(archive, "train", cache_dir=cache, limit=3)
    np.testing.assert_array_equal(again.x, split.x[np.sort(np.random.default_rng(0).choice(8, 3, replace=False))])
    np.testing.assert_array_equal(load_split(archive, "test", cache_dir=cache, in_memory=False).batches(2)[0][0],
                                  streamed.batches(2)[0][0])


def test_archives_stream_and_are_extracted_by_their_uncompressed_size(tmp_path, monkeypatch, capsys):
    """40 512x512 BMPs, black but for every 64th row: 31 MB of images in a 0.5 MB .tar.gz.
    Neither reading path holds the members in memory; the size that decides between them is
    the uncompressed one. (Every 64th row is noise: tarfile decompresses 16 KB of the archive at
    a time, which for all-zero members would be 16 MB.)"""
    import io
    import tracemalloc

    from keras_attn_zoo.data import sources

    archive = tmp_path / "black.tar.gz"
    bmp, pixels = io.BytesIO(), np.zeros((512, 512, 3), "uint8")
    pixels[::64] = np.random.default_rng(0).integers(0, 256, pixels[::64].shape)
    Image.fromarray(pixels).save(bmp, "BMP")
    with tarfile.open(archive, "w:gz") as t:
        for split, count in (("train", 16), ("test", 4)):
            for cls in ("cat", "dog"):
                for i in range(count):
                    info = tarfile.TarInfo(f"black/{split}/{cls}/{i:02d}.bmp")
                    info.size = len(bmp.getvalue())
                    t.addfile(info, io.BytesIO(bmp.getvalue()))
    assert archive.stat().st_size < 1_000_000 and sum(sources._archive_index(archive).values()) > 30_000_000

    def peak(load):
        tracemalloc.start()
        try:
            result = load()
            return result, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    split, used = peak(lambda: load_split(archive, "train", image_size=(8, 8), cache_dir=tmp_path / "a"))
    assert isinstance(split, ArraySplit) and split.num_examples == 32 and split.x.shape[1:] == (8, 8, 3)
    assert used < 8_000_000  # one 786 KB member at a time, not 31 MB

    monkeypatch.setattr(sources, "MAX_ARCHIVE_READ_BYTES", 16_000_000)  # more than 40 KB, less than 31 MB
    split, used = peak(lambda: load_split(archive, "test", image_size=(8, 8), cache_dir=tmp_path / "b"))
    assert "holds 0.03 GiB of images uncompressed: extracting it to files" in capsys.readouterr().out
    assert split.num_examples == 8 and used < 8_000_000
    (folder,) = (tmp_path / "b").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["files"]
    assert len(list((folder / "files").rglob("*.bmp"))) == 40


def test_a_damaged_archive_names_the_member_and_caches_nothing(tmp_path):
    write_folder(tmp_path / "src" / "pets" / "train")
    write_folder(tmp_path / "src" / "pets" / "test", per_class=1)
    members = sorted(f.relative_to(tmp_path / "src").as_posix() for f in (tmp_path / "src").rglob("*.png"))
    cache = tmp_path / "cache"

    with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as t:
        t.add(tmp_path / "src" / "pets", arcname="pets")
    data = (tmp_path / "pets.tar.gz").read_bytes()
    for suffix in (".tar.gz", ".tar"):  # cut short: EOFError from gzip, ReadError from tarfile
        cut = tmp_path / f"cut{suffix}"
        if suffix == ".tar":
            import gzip

            data = gzip.decompress(data)
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=rf"cut{suffix} is damaged: reading stopped at member 'pets/") as e:
            load_split(cut, cache_dir=cache)
        assert any(f"member '{m}'" in str(e.value) for m in members) and "copy or download it again" in str(e.value)
        with pytest.raises(ValueError, match=rf"cut{suffix} is damaged"):
            load_split(cut, cache_dir=cache, in_memory=False)
    assert not cache.exists() or not list(cache.rglob("*.npz")) and not list(cache.rglob("*.png"))

    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as z:  # stored: one flipped byte fails the member's CRC
        for m in members:
            z.write(tmp_path / "src" / m, m)
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("pets/train/dog/002.png")
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 40] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"pets.zip is damaged: reading stopped at member 'pets/train/dog/002.png' "
                                         r"\(BadZipFile: Bad CRC-32"):
        load_split(archive, cache_dir=cache)

    (tmp_path / "src" / "pets" / "train" / "cat" / "001.png").write_bytes(b"not a png")
    with tarfile.open(tmp_path / "garbled.tar", "w") as t:
        t.add(tmp_path / "src" / "pets", arcname="pets")
    with pytest.raises(ValueError, match=r"garbled.tar: pets/train/cat/001.png is not an image Pillow can read"):
        load_split(tmp_path / "garbled.tar", cache_dir=cache)
    assert not list(cache.rglob("*.npz"))


def test_unsafe_archive_members_are_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    payload = tmp_path / "x.png"
    Image.fromarray(image(0, 0)).save(payload)
    with tarfile.open(archive, "w") as t:
        t.add(payload, arcname="../outside/a/x.png")
    with pytest.raises(ValueError, match="unsafe member path"):
        load_split(archive, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "outside").exists()


def test_local_cifar10_archive_is_a_first_class_source(monkeypatch):
    assert CIFAR10_ARCHIVE.is_file(), f"the shared CIFAR-10 copy is missing: {CIFAR10_ARCHIVE}"
    monkeypatch.setenv("KERAS_ATTN_ZOO_DATA", str(CIFAR10_ARCHIVE.parent))
    test = load_split("cifar10-jpeg", "test")
    assert test.dataset == "cifar10" and test.class_names == CIFAR10_CLASSES
    assert test.description == "CIFAR-10 (JPEG copy, quality 75), test split, 10,000 images"
    assert test.x.shape == (10000, 32, 32, 3) and np.bincount(test.y).tolist() == [1000] * 10
    stats = channel_stats(test.x)  # the JPEG copy's test-split statistics
    np.testing.assert_allclose(stats.mean, (0.494066, 0.485064, 0.450382), atol=2e-6)
    np.testing.assert_allclose(stats.std, (0.244845, 0.242198, 0.260582), atol=2e-6)
    cached = load_split(CIFAR10_ARCHIVE, "test", limit=50, seed=1)  # the path; from the cache
    expected = np.sort(np.random.default_rng(1).choice(10000, 50, replace=False))
    np.testing.assert_array_equal(cached.x, test.x[expected])
    assert cached.description == "CIFAR-10 (JPEG copy, quality 75), test split, 50 images"


class FakeTfds(types.ModuleType):
    """Just enough of tensorflow_datasets to check how the zoo calls it."""

    def __init__(self):
        super().__init__("tensorflow_datasets")
        self.calls = []
        self.download = types.SimpleNamespace(DownloadConfig=lambda manual_dir: ("config", manual_dir))

    def _info(self, shape):
        names = types.SimpleNamespace(names=["zero", "one", "two"])
        return types.SimpleNamespace(features={"label": names, "image": types.SimpleNamespace(shape=shape)})

    def builder(self, name, data_dir=None):
        return types.SimpleNamespace(info=self._info((None, None, 3) if name == "imagenet2012" else (4, 4, 3)))

    def load(self, name, **kwargs):
        self.calls.append((name, kwargs))
        if "batch_size" not in kwargs:  # streaming: images of varying sizes through tf.data
            import tensorflow as tf

            sizes = [(40, 50), (60, 30), (28, 28)]
            images = [np.full((*size, 3), 10 * i, "uint8") for i, size in enumerate(sizes)]
            ds = tf.data.Dataset.from_generator(
                lambda: ((image, i) for i, image in enumerate(images)),
                output_signature=(tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int64)),
            )
            info = self._info((None, None, 3))
            info.splits = {"validation": types.SimpleNamespace(num_examples=3)}
            return ds, info
        x = np.stack([np.full((4, 4, 3), i, "uint8") for i in range(6)])
        return (x, np.arange(6) % 3), self._info((4, 4, 3))

    def as_numpy(self, data):
        return data


def test_named_data_sets_go_through_tensorflow_datasets(monkeypatch):
    fake = FakeTfds()
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    split = load_split("cifar10", "test", limit=4, data_dir="/tfds")
    assert isinstance(split, ArraySplit) and split.dataset == "cifar10"
    assert split.num_examples == 4 and split.class_names == ("zero", "one", "two")
    assert split.description == "CIFAR-10 (tensorflow-datasets cifar10), test split, 4 images"
    name, kwargs = fake.calls[-1]
    assert name == "cifar10" and kwargs["split"] == "test" and kwargs["data_dir"] == "/tfds"
    assert kwargs["as_supervised"] and kwargs["batch_size"] == -1
    load_split("imagenet2012", "test", manual_dir="/tars", image_size=(4, 4), in_memory=True)
    name, kwargs = fake.calls[-1]
    assert kwargs["split"] == "validation"  # ImageNet's labelled held-out split
    assert kwargs["download_and_prepare_kwargs"]["download_config"] == ("config", "/tars")
    stream = load_split("imagenet2012", "test", image_size=(24, 24), resize_shorter=28)
    assert stream.num_examples == 3 and stream.image_shape == (24, 24, 3) and stream.dataset == "imagenet"
    (x, y), (last, _) = list(stream.batches(2).as_numpy_iterator())
    assert x.shape == (2, 24, 24, 3) and x.dtype == np.uint8 and last.shape == (1, 24, 24, 3)
    assert y.tolist() == [0, 1] and x[1].max() == 10  # resized shorter side, center crop
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'keras_attn_zoo\[datasets\]'"):
        load_split("cifar100")


@pytest.mark.multibackend
def test_random_pad_crop_is_a_translated_window_of_the_padded_image():
    images = np.random.default_rng(0).integers(1, 256, (16, 8, 8, 3)).astype("float32")
    layer = RandomPadCrop(2, seed=1)
    out = keras.ops.convert_to_numpy(layer(images, training=True))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    offsets = []
    for i in range(len(images)):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])]
        assert found, "every output must be an 8x8 window of the zero-padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 3  # random per image
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    run_layer_serialization_test(RandomPadCrop(3, seed=2), images)


@pytest.mark.multibackend
def test_random_resized_crop():
    images = np.random.default_rng(0).uniform(0, 255, (4, 10, 12, 3)).astype("float32")
    crop = RandomResizedCrop(6, 8, seed=0)
    out = keras.ops.convert_to_numpy(crop(images, training=True))
    assert out.shape == (4, 6, 8, 3) and out.min() >= 0 and out.max() <= 255
    centre = keras.ops.convert_to_numpy(crop(images, training=False))
    np.testing.assert_array_equal(centre, images[:, 2:8, 2:10])
    whole = RandomResizedCrop(10, 12, scale=(1, 1), ratio=(1.2, 1.2), seed=0)  # the box is the image
    np.testing.assert_allclose(keras.ops.convert_to_numpy(whole(images, training=True)), images, atol=1e-3)
    with pytest.raises(ValueError, match="at least that large"):
        RandomResizedCrop(16, 16)(images)
    with pytest.raises(ValueError, match="scale must be"):
        RandomResizedCrop(8, 8, scale=(0.5, 0.1))
    assert RandomResizedCrop.from_config(crop.get_config()).get_config() == crop.get_config()


@pytest.mark.multibackend
def test_normalisation_is_one_formula_recorded_with_the_weights(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3)).astype("uint8")
    stats = ChannelStats((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    expected = (images / 255.0 - np.array(stats.mean)) / np.array(stats.std)
    direct = preprocess_input("resnet20", images, mean=stats.mean, std=stats.std)
    np.testing.assert_allclose(direct, expected, rtol=1e-5, atol=1e-5)
    layer = keras.ops.convert_to_numpy(normalization_layer(stats)(images.astype("float32")))
    np.testing.assert_allclose(layer, expected, rtol=1e-5, atol=1e-5)
    weights = tmp_path / "resnet20.weights.h5"
    (tmp_path / "resnet20.json").write_text(json.dumps({"preprocessing": stats.to_dict()}))
    from_record = zoo.preprocess_input(zoo.load("resnet20"), images, weights=str(weights))
    np.testing.assert_allclose(from_record, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="never guessed"):
        preprocess_input("resnet32", images)  # no published weights to read them from
    with pytest.raises(FileNotFoundError, match="no training record"):
        preprocess_input("resnet20", images, weights=str(tmp_path / "other.weights.h5"))
    with pytest.raises(ValueError, match="3 channels, the statistics 1"):
        preprocess_input("resnet20", images, mean=(0.5,), std=(0.2,))


@pytest.mark.multibackend
def test_channel_stats_numbers():
    images = np.zeros((2, 2, 2, 3), "uint8")
    images[0, ..., 0] = 255  # channel 0: half 255, half 0 -> mean 0.5, std 0.5
    images[..., 1] = 51  # channel 1: constant 0.2 -> std 0
    images[:, 0, :, 2] = 102  # channel 2: half 0.4, half 0 -> mean 0.2, std 0.2
    mean, std = channel_stats(images[..., [0, 2]], chunk=1).mean, channel_stats(images[..., [0, 2]]).std
    assert mean == (0.5, 0.2) and std == (0.5, 0.2)
    with pytest.raises(ValueError, match="std must be positive"):
        channel_stats(images)


def test_the_photo_like_folder_script_writes_upscaled_test_images_in_split_folders(tmp_path):
    """scripts/cifar_photo_folder.py (the README's --image-size measurement): train/ and val/
    class folders of the CIFAR-10 copy's test images, resized."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "cifar_photo_folder.py"
    spec = importlib.util.spec_from_file_location("cifar_photo_folder", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "photos"
    script.main([str(CIFAR10_ARCHIVE), str(out), "--classes", "cat", "ship", "--train", "3", "--val", "1",
                 "--size", "40"])
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert names == [f"{s}/{c}/{i:04d}.jpg" for s, c, i in
                     [("train", "cat", 0), ("train", "cat", 1), ("train", "cat", 2), ("train", "ship", 0),
                      ("train", "ship", 1), ("train", "ship", 2), ("val", "cat", 3), ("val", "ship", 3)]]
    with tarfile.open(CIFAR10_ARCHIVE) as tar:
        original = Image.open(io.BytesIO(tar.extractfile("test/ship/0003.jpg").read())).convert("RGB")
    written = np.asarray(Image.open(out / "val" / "ship" / "0003.jpg"), "float32")
    assert written.shape == (40, 40, 3)
    assert np.abs(written - np.asarray(original.resize((40, 40), Image.BILINEAR), "float32")).mean() < 4
    with pytest.raises(SystemExit):
        script.main([str(CIFAR10_ARCHIVE), str(out)])  # an existing folder is refused
