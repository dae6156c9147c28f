"""``keras-attn-zoo predict`` and the image reading behind it, on real CIFAR-10 JPEGs."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import keras_attn_zoo as zoo
from helpers import bomb_png
from keras_attn_zoo import images
from keras_attn_zoo.cli import main
from keras_attn_zoo.images import image_files, preprocess, read_image, read_images
from keras_attn_zoo.normalization import ChannelStats

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


def _trained_file(folder, model, class_names, stats):
    """``model``'s weights as ``keras-attn-zoo train`` leaves them: the file and its training
    record beside it (the fields ``WeightRecord.from_row`` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{model.name}.weights.h5"
    model.save_weights(weights)
    (folder / f"{model.name}.json").write_text(json.dumps({
        "model": model.name, "file": weights.name, "num_classes": len(class_names),
        "input_shape": list(model.input_shape[1:]), "class_names": list(class_names),
        "preprocessing": {**stats.to_dict(), "eval": {"image_size": list(model.input_shape[1:3])}},
    }))
    return weights


STATS = ChannelStats((0.45, 0.40, 0.30), (0.28, 0.25, 0.27))


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
    weights = _trained_file(tmp_path / "run", model, CIFAR10, STATS)
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
    scores = model.predict(preprocess(pixels, STATS), verbose=0)
    for line, s in zip(lines, scores):
        printed = [item.rsplit(" ", 1) for item in line.split(": ")[1].split(", ")]
        best = np.argsort(s)[::-1][:4]
        assert [name for name, _ in printed] == [CIFAR10[i] for i in best]
        np.testing.assert_allclose([float(v) for _, v in printed], s[best], atol=5e-4)


FLOWERS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def test_weights_trained_on_five_classes_keep_their_classes_names_and_normalisation(photos, cifar_jpegs, tmp_path,
                                                                                    capsys):
    """The issue's case: a 5-class file that `train` wrote, given to predict, explain, export and
    evaluate with its registry name: a 5-class model, its own names and its own normalisation
    (never a 10-class model with CIFAR-10's names and a random classifier)."""
    model = zoo.load("fa_resnet20", num_classes=5)
    weights = _trained_file(tmp_path / "run", model, FLOWERS, STATS)
    cat = photos / "cat.jpg"
    assert main(["predict", str(cat), "--model", "fa_resnet20", "--weights", str(weights), "--top-k", "5"]) == 0
    captured = capsys.readouterr()
    assert "WARNING" not in captured.err
    printed = [item.rsplit(" ", 1) for item in captured.out.strip().split(": ")[1].split(", ")]
    scores = model.predict(preprocess(read_images([cat], (32, 32))[0], STATS), verbose=0)[0]
    assert [name for name, _ in printed] == [FLOWERS[i] for i in np.argsort(scores)[::-1]]
    np.testing.assert_allclose([float(v) for _, v in printed], np.sort(scores)[::-1], atol=5e-4)

    picture = tmp_path / "explained.png"
    assert main(["explain", str(cat), "--model", "fa_resnet20", "--weights", str(weights), "-o", str(picture)]) == 0
    first = capsys.readouterr().out.split("\n")[0]
    assert first.startswith(f"{cat}: {FLOWERS[int(np.argmax(scores))]} {scores.max():.3f}") and picture.is_file()

    exported = tmp_path / "flowers.onnx"
    assert main(["export", "fa_resnet20", "--weights", str(weights), "--format", "onnx", "-o", str(exported)]) == 0
    assert "output predictions: (None, 5)" in capsys.readouterr().out
    metadata = json.loads((tmp_path / "flowers.onnx.json").read_text())
    assert metadata["class_names"] == FLOWERS and metadata["preprocessing"] == STATS.to_dict()

    data = tmp_path / "flowers"
    for split in ("train", "test"):
        for i, name in enumerate(FLOWERS):
            (data / split / name).mkdir(parents=True)
            for k in range(2):
                shutil.copy(sorted((cifar_jpegs / CIFAR10[i]).iterdir())[k], data / split / name / f"{k}.jpg")
    assert main(["evaluate", "fa_resnet20", "--weights", str(weights), "--data", str(data)]) == 0
    pixels, read, _ = read_images(data / "test", (32, 32))
    labels = [FLOWERS.index(path.parent.name) for path in read]
    top1 = np.mean(np.argmax(model.predict(preprocess(pixels, STATS), verbose=0), -1) == labels)
    out = capsys.readouterr().out
    assert f"on image folder flowers, test split, 10 images: top-1 {top1:.4f}" in out
    assert "top-5" not in out and "top5" not in out  # five classes: every label is in the top 5
    # per class, by the weights' own class names, counted from the same predictions
    predicted = np.argmax(model.predict(preprocess(pixels, STATS), verbose=0), -1)
    hits = [int(np.sum((predicted == i) & (np.asarray(labels) == i))) for i in range(5)]
    assert "per-class recall (the share of each class's images predicted as that class):" in out
    for name, hit in zip(FLOWERS, hits):
        assert f"  {name:<10}  {hit / 2:.4f}  ({hit}/2)" in out
    assert "confusion matrix (rows: true class, columns: predicted class):" in out
    png = tmp_path / "flowers_confusion.png"
    pytest.importorskip("matplotlib")
    assert main(["evaluate", "fa_resnet20", "--weights", str(weights), "--data", str(data), "-o", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out and png.stat().st_size > 1000
    assert main(["evaluate", "fa_resnet20", "--weights", str(weights), "--data", str(cifar_jpegs)]) == 2
    assert "are not those the weights were trained on (daisy, dandelion" in capsys.readouterr().err


def test_weights_without_a_record_are_refused_until_their_normalisation_is_given(photos, tmp_path, capsys):
    model = zoo.load("fa_resnet20", num_classes=5)
    weights = tmp_path / "fa_resnet20.weights.h5"
    model.save_weights(weights)
    cat = str(photos / "cat.jpg")
    given = ["--weights", str(weights)]
    for argv in (["predict", cat, "--model", "fa_resnet20", *given],
                 ["explain", cat, "--model", "fa_resnet20", *given, "-o", str(tmp_path / "x.png")],
                 ["export", "fa_resnet20", *given, "--format", "onnx", "-o", str(tmp_path / "x.onnx")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert (f"{weights} has no training record beside it (fa_resnet20.json), so nothing says how its inputs "
                "were normalised (a normalisation is never guessed). Pass the per-channel mean and std it was "
                "trained with, on the 0-1 scale (--mean R G B --std R G B") in err, argv
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.onnx").exists()
    assert main(["evaluate", "fa_resnet20", "--weights", str(weights), "--data", str(photos)]) == 2
    assert "has no training record" in capsys.readouterr().err

    stats = ["--mean", "0.45", "0.4", "0.3", "--std", "0.28", "0.25", "0.27"]
    assert main(["predict", cat, "--model", "fa_resnet20", "--weights", str(weights), "--top-k", "5", *stats]) == 0
    captured = capsys.readouterr()
    assert (f"WARNING: {weights} records no class names: its 5 classes are numbered (name them with "
            "--class-names FILE") in captured.err
    scores = model.predict(preprocess(read_images([cat], (32, 32))[0], STATS), verbose=0)[0]
    assert captured.out.split(": ")[1].split(" ")[0:2] == ["class", f"{int(np.argmax(scores))}"]
    assert main(["predict", cat, "--model", "fa_resnet20", "--weights", str(weights), "--mean", "0.5"]) == 2
    assert "--mean and --std go together" in capsys.readouterr().err


def test_a_record_of_another_model_or_other_normalisation_is_an_error(photos, tmp_path, capsys):
    weights = _trained_file(tmp_path / "run", zoo.load("fa_resnet20", num_classes=5), FLOWERS, STATS)
    assert main(["predict", str(photos / "cat.jpg"), "--model", "se_resnet20", "--weights", str(weights)]) == 2
    assert (f"{weights} holds weights of fa_resnet20, not se_resnet20 (its record {tmp_path / 'run' / 'fa_resnet20.json'} "
            "says so): pass --model fa_resnet20") in capsys.readouterr().err
    assert main(["predict", str(photos / "cat.jpg"), "--model", "fa_resnet20", "--weights", str(weights),
                 "--mean", "0.5", "0.5", "0.5", "--std", "0.2", "0.2", "0.2"]) == 2
    assert ("was trained with mean [0.45, 0.4, 0.3], std [0.28, 0.25, 0.27] (its record says so); the "
            "normalisation given (mean [0.5, 0.5, 0.5], std [0.2, 0.2, 0.2]) differs") in capsys.readouterr().err


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
    weights = _trained_file(tmp_path / "run", model, CIFAR10, STATS)
    scores = model.predict(preprocess(read_images(files, (32, 32))[0], STATS), verbose=0)
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


def test_class_names_come_from_a_file_the_record_the_registry_or_indices(photos, tmp_path, capsys):
    from keras_attn_zoo.predict import read_class_names
    from keras_attn_zoo.registry import load_for_inference

    assert load_for_inference("fa_resnet20").class_names == tuple(CIFAR10)  # random: the registry's
    assert load_for_inference("fa_resnet20", num_classes=3).class_names is None
    names = tmp_path / "names.txt"
    names.write_text("alpha\n\nbeta\ngamma\n")
    three = read_class_names(names)
    assert load_for_inference("fa_resnet20", num_classes=3, class_names=three).class_names == ("alpha", "beta", "gamma")
    with pytest.raises(ValueError, match="3 class names were given; fa_resnet20 has 10 classes"):
        load_for_inference("fa_resnet20", class_names=three)

    saved = tmp_path / "three.keras"  # plain Keras: no class names, no normalisation
    zoo.load("resnet20", num_classes=3).save(saved)
    assert main(["predict", str(photos / "cat.jpg"), "--model", str(saved)]) == 2
    assert f"{saved} records no normalisation (it was not saved by keras_attn_zoo.modelfile.save_model" in \
        capsys.readouterr().err
    plain = ["--mean", "0", "0", "0", "--std", "1", "1", "1"]
    assert main(["predict", str(photos / "cat.jpg"), "--model", str(saved), *plain]) == 0
    captured = capsys.readouterr()
    assert "class " in captured.out and "its 3 classes are numbered" in captured.err
    assert main(["predict", str(photos / "cat.jpg"), "--model", str(saved), "--class-names", str(names), *plain]) == 0
    assert any(n in capsys.readouterr().out for n in ("alpha", "beta", "gamma"))


def test_inputs_use_the_normalisation_recorded_with_the_weights(tmp_path, monkeypatch):
    from keras_attn_zoo import weights as weights_lib
    from keras_attn_zoo.registry import load_for_inference

    pixels = np.full((1, 2, 2, 3), 255.0, "float32") * np.array([0.2, 0.5, 0.8], "float32")
    manifest = tmp_path / "manifest.json"
    model = zoo.load("fa_resnet20")
    model.save_weights(tmp_path / "x.weights.h5")
    row = {"model": "fa_resnet20", "tag": "cifar10", "file": "x.weights.h5",
           "sha256": weights_lib.sha256(tmp_path / "x.weights.h5"),
           "preprocessing": {"scale": 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 0.1]}}
    manifest.write_text(json.dumps({"weights": [row]}))
    monkeypatch.setattr(weights_lib, "MANIFEST", manifest)
    stats = load_for_inference("fa_resnet20", "cifar10").normalization
    np.testing.assert_allclose(preprocess(pixels, stats)[0, 0, 0], [(0.2 - 0.5) / 0.25, 0.0, (0.8 - 0.5) / 0.1], rtol=1e-5)
    assert load_for_inference("fa_resnet20").normalization is None  # random weights: plain [0, 1] scaling
    np.testing.assert_allclose(preprocess(pixels)[0, 0, 0], [0.2, 0.5, 0.8], rtol=1e-6)
