"""``keras-attn-zoo predict`` and the image reading behind it, on real CIFAR-10 JPEGs."""

import shutil

import numpy as np
import pytest
from PIL import Image

import keras_attn_zoo as zoo
from helpers import bomb_png
from keras_attn_zoo import images
from keras_attn_zoo.cli import main
from keras_attn_zoo.images import image_files, preprocess, read_image, read_images
from keras_attn_zoo.predict import class_names

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def photos(cifar_jpegs, tmp_path):
    """Two real CIFAR JPEGs, a 64x48 PNG, a text file and an empty file in one folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(cifar_jpegs / "cat" / "0000.jpg", folder / "cat.jpg")
    shutil.copy(cifar_jpegs / "ship" / "0001.jpg", folder / "ship.jpg")
    Image.open(cifar_jpegs / "frog" / "0002.jpg").resize((64, 48)).save(folder / "frog.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"")
    return folder


def test_reading_images_resizes_and_reports_what_it_cannot_read(photos):
    assert [p.name for p in image_files(photos)] == ["broken.jpg", "cat.jpg", "frog.png", "ship.jpg"]
    assert image_files(photos / "notes.txt") == [photos / "notes.txt"]  # named files are tried

    frog = read_image(photos / "frog.png", (32, 32))
    with Image.open(photos / "frog.png") as image:
        assert image.size == (64, 48)
        expected = np.asarray(image.convert("RGB").resize((32, 32), Image.BILINEAR))
    np.testing.assert_array_equal(frog, expected)
    assert read_image(photos / "frog.png").shape == (48, 64, 3)

    pixels, read, failed = read_images([photos, photos / "notes.txt"], (32, 32))
    assert pixels.shape == (3, 32, 32, 3) and pixels.dtype == np.uint8
    assert [p.name for p in read] == ["cat.jpg", "frog.png", "ship.jpg"]
    assert [p.name for p, _ in failed] == ["broken.jpg", "notes.txt"]
    assert all("not an image Pillow can read" in message for _, message in failed)
    np.testing.assert_allclose(preprocess(pixels), pixels / 255.0)


def test_decompression_bombs_are_refused_per_file_before_decoding(photos, tmp_path, capsys):
    """A 400-megapixel PNG (over Pillow's own limit, whose error is no OSError) and a 78 KB
    81-megapixel one (under it: 81 MB of pixels, 243 MB as RGB) are refused from their headers;
    the other images are read."""
    huge = bomb_png(photos / "huge.png", 20_000, 20_000, rows=256)
    quiet = bomb_png(photos / "quiet.png", 9_000, 9_000)
    assert quiet.stat().st_size < 100_000 and 9_000 * 9_000 > images.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match=r"quiet.png declares 9000x9000 = 81,000,000 pixels, more than the "
                                         r"limit of 64,000,000 \(keras_attn_zoo.decoding.MAX_IMAGE_PIXELS\): "
                                         "refused before decoding"):
        read_image(quiet, (32, 32))
    with pytest.raises(ValueError, match="huge.png declares more pixels than Pillow decodes: refused before decoding"):
        read_image(huge, (32, 32))
    pixels, read, failed = read_images(photos, (32, 32))
    assert [p.name for p in read] == ["cat.jpg", "frog.png", "ship.jpg"] and len(pixels) == 3
    assert [p.name for p, _ in failed] == ["broken.jpg", "huge.png", "quiet.png"]

    assert main(["predict", str(photos), "--model", "fa_resnet20"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 3 and "Traceback" not in captured.err
    assert "skipped: " in captured.err and "quiet.png declares 9000x9000" in captured.err
    output = tmp_path / "explained.png"
    assert main(["explain", str(huge), "--model", "fa_resnet20", "-o", str(output)]) == 2
    assert "huge.png declares more pixels than Pillow decodes" in capsys.readouterr().err
    assert not output.exists()


def test_sixteen_bit_images_are_scaled_to_eight_bits(tmp_path):
    """Pillow's convert() clips 16-bit grey (I;16 from PNG and TIFF, I from 16-bit PGM) to 255."""
    from keras_attn_zoo.data import decode_image

    wide = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype("uint16")
    expected = np.round(wide / 257).astype("uint8")
    Image.fromarray(wide).save(tmp_path / "deep.png")
    Image.fromarray(wide).save(tmp_path / "deep.tif")
    (tmp_path / "deep.pgm").write_bytes(b"P5\n64 48\n65535\n" + wide.astype(">u2").tobytes())
    for name in ("deep.png", "deep.tif", "deep.pgm"):
        rgb = read_image(tmp_path / name)
        np.testing.assert_allclose(rgb, np.repeat(expected[..., None], 3, -1), atol=1, err_msg=name)
        np.testing.assert_allclose(read_image(tmp_path / name, channels=1)[..., 0], expected, atol=1)
        np.testing.assert_allclose(decode_image(str(tmp_path / name)), rgb, atol=0)  # training data too
    assert read_image(tmp_path / "deep.png").mean() == pytest.approx(127.5, abs=0.5)  # not all white


def test_exif_orientation_is_applied_in_prediction_and_in_training_data(tmp_path):
    """A phone photo stored sideways, 16 wide and 8 high, red left and blue right, with EXIF
    orientation 6 ("rotate 90 degrees clockwise to view"): read 8 wide and 16 high, red on top."""
    from keras_attn_zoo.data import load_split

    stored = np.zeros((8, 16, 3), "uint8")
    stored[:, :8, 0] = 255
    stored[:, 8:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    root = tmp_path / "photos" / "train"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    Image.fromarray(stored).save(root / "a" / "phone.jpg", quality=95, exif=exif.tobytes())
    Image.fromarray(np.rot90(stored, -1).copy()).save(root / "b" / "upright.jpg", quality=95)
    with Image.open(root / "a" / "phone.jpg") as raw:
        assert raw.size == (16, 8) and raw.getexif()[0x0112] == 6
        upright = np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270))

    pixels = read_image(root / "a" / "phone.jpg")
    assert pixels.shape == (16, 8, 3)
    np.testing.assert_array_equal(pixels, upright)
    assert pixels[:6, :, 0].min() > 200 and pixels[:6, :, 2].max() < 60  # red on top (rows off the JPEG-blurred edge)
    assert pixels[10:, :, 2].min() > 200 and pixels[10:, :, 0].max() < 60  # blue below
    np.testing.assert_array_equal(read_images([root / "a"], (16, 8))[0][0], upright)  # predict's path

    split = load_split(tmp_path / "photos", "train", image_size=(16, 8))  # training's path
    np.testing.assert_array_equal(split.x[0], upright)


def test_cli_predict_prints_the_top_classes_of_every_readable_file(photos, tmp_path, capsys):
    model = zoo.load("fa_resnet20")
    weights = tmp_path / "fa_resnet20.weights.h5"
    model.save_weights(weights)
    missing = tmp_path / "missing.jpg"
    argv = ["predict", str(photos), str(photos / "notes.txt"), str(missing), "--model", "fa_resnet20",
            "--weights", str(weights), "--top-k", "4"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "randomly initialised" not in captured.err
    assert "skipped: " in captured.err and "broken.jpg" in captured.err and "notes.txt" in captured.err
    assert f"No such file: {missing}" in captured.err

    lines = captured.out.strip().split("\n")
    assert [line.split(": ")[0] for line in lines] == [str(photos / n) for n in ("cat.jpg", "frog.png", "ship.jpg")]
    pixels, _, _ = read_images([photos / "cat.jpg", photos / "frog.png", photos / "ship.jpg"], (32, 32))
    scores = model.predict(preprocess(pixels), verbose=0)
    for line, s in zip(lines, scores):
        printed = [item.rsplit(" ", 1) for item in line.split(": ")[1].split(", ")]
        best = np.argsort(s)[::-1][:4]
        assert [name for name, _ in printed] == [CIFAR10[i] for i in best]
        np.testing.assert_allclose([float(v) for _, v in printed], s[best], atol=5e-4)


def test_cli_predict_writes_csv_and_json_that_read_back_whatever_the_paths_hold(photos, tmp_path, capsys):
    """Paths with ': ', commas and quotes (which break the text lines) round-trip through both."""
    import csv
    import io
    import json

    odd = tmp_path / "trip: day 1, beach"
    odd.mkdir()
    shutil.copy(photos / "cat.jpg", odd / 'a "cat": 1.jpg')
    shutil.copy(photos / "ship.jpg", odd / "ship, at sea.jpg")
    files = [odd / 'a "cat": 1.jpg', odd / "ship, at sea.jpg"]
    model = zoo.load("fa_resnet20")
    weights = tmp_path / "fa_resnet20.weights.h5"
    model.save_weights(weights)
    scores = model.predict(preprocess(read_images(files, (32, 32))[0]), verbose=0)
    argv = ["predict", str(odd), str(photos / "broken.jpg"), "--model", "fa_resnet20", "--weights", str(weights),
            "--top-k", "2"]

    assert main([*argv, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["path"], r["rank"]) for r in rows] == [(str(f), rank) for f in files for rank in ("1", "2")]
    for i, file_scores in enumerate(scores):
        best = np.argsort(file_scores)[::-1][:2]
        assert [r["class"] for r in rows[2 * i:2 * i + 2]] == [CIFAR10[k] for k in best]
        assert [float(r["score"]) for r in rows[2 * i:2 * i + 2]] == pytest.approx(file_scores[best], abs=1e-6)

    assert main([*argv, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in document["predictions"]] == [str(f) for f in files]
    assert [[t["class"] for t in p["top"]] for p in document["predictions"]] == [[r["class"] for r in rows[i:i + 2]]
                                                                               for i in (0, 2)]
    assert [s["path"] for s in document["skipped"]] == [str(photos / "broken.jpg")]
    assert "not an image Pillow can read" in document["skipped"][0]["error"]


def test_cli_predict_warns_about_random_weights_and_fails_when_nothing_is_readable(photos, capsys):
    assert main(["predict", str(photos / "cat.jpg"), "--model", "fa_resnet20", "--top-k", "1"]) == 0
    captured = capsys.readouterr()
    assert "WARNING: fa_resnet20 is randomly initialised" in captured.err
    assert captured.out.count("\n") == 1 and captured.out.split(": ")[1].split(" ")[0] in CIFAR10

    assert main(["predict", str(photos / "notes.txt"), "--model", "fa_resnet20"]) == 2
    assert "no readable image" in capsys.readouterr().err


def test_a_folder_given_as_weights_is_named_as_a_folder(photos, tmp_path, capsys):
    folder = tmp_path / "trained"
    folder.mkdir()
    for argv in (["predict", str(photos / "cat.jpg"), "--model", "fa_resnet20", "--weights", str(folder)],
                 ["finetune", "fa_resnet20", "--data", str(photos), "--weights", str(folder)],
                 ["train", "fa_resnet20", "--data", str(photos), "--init-weights", str(folder)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{folder} is a folder: pass the .weights.h5 file in it, or a published tag." in err, argv
        assert "not found" not in err


def test_class_names_come_from_a_file_the_registry_or_indices(photos, tmp_path, capsys):
    model = zoo.load("fa_resnet20")
    assert class_names(model) == CIFAR10
    assert class_names(zoo.load("fa_resnet20", num_classes=3)) is None
    names = tmp_path / "names.txt"
    names.write_text("alpha\n\nbeta\ngamma\n")
    assert class_names(zoo.load("fa_resnet20", num_classes=3), names) == ["alpha", "beta", "gamma"]
    with pytest.raises(ValueError, match="lists 3 class names; fa_resnet20 has 10 classes"):
        class_names(model, names)

    saved = tmp_path / "three.keras"
    zoo.load("resnet20", num_classes=3).save(saved)
    assert main(["predict", str(photos / "cat.jpg"), "--model", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "class " in out and "randomly" not in out
    assert main(["predict", str(photos / "cat.jpg"), "--model", str(saved), "--class-names", str(names)]) == 0
    assert any(n in capsys.readouterr().out for n in ("alpha", "beta", "gamma"))


def test_inputs_use_the_normalisation_recorded_with_the_weights(tmp_path, monkeypatch, capsys):
    import json

    import keras_attn_zoo as zoo
    from keras_attn_zoo import weights as weights_lib
    from keras_attn_zoo.images import normalization_for, preprocess

    pixels = np.full((1, 2, 2, 3), 255.0, "float32") * np.array([0.2, 0.5, 0.8], "float32")
    manifest = tmp_path / "manifest.json"
    row = {"model": "fa_resnet20", "tag": "cifar10", "file": "x.weights.h5", "sha256": "0" * 64,
           "preprocessing": {"scale": 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 0.1]}}
    manifest.write_text(json.dumps({"weights": [row]}))
    monkeypatch.setattr(weights_lib, "MANIFEST", manifest)
    model = zoo.load("fa_resnet20")
    stats = normalization_for(model, "cifar10")
    np.testing.assert_allclose(preprocess(pixels, stats)[0, 0, 0], [(0.2 - 0.5) / 0.25, 0.0, (0.8 - 0.5) / 0.1], rtol=1e-5)
    assert normalization_for(model, None) is None  # random weights: plain [0, 1] scaling
    np.testing.assert_allclose(preprocess(pixels)[0, 0, 0], [0.2, 0.5, 0.8], rtol=1e-6)
    untracked = tmp_path / "mine.weights.h5"
    model.save_weights(untracked)
    assert normalization_for(model, str(untracked)) is None
    assert "only scaled to [0, 1]" in capsys.readouterr().err
