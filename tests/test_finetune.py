"""Fine-tuning on a user's image folder, built here from the real CIFAR-10 copy: three classes
of test-split images (which the bundled weights never trained on) saved at another size, as
JPEG and PNG, with no split folders."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import keras

import keras_attn_zoo as zoo
from helpers import extract_cifar, kill_when
from keras_attn_zoo.cli import main
from keras_attn_zoo.data import channel_stats, load_split
from keras_attn_zoo.images import preprocess
from keras_attn_zoo.modelfile import load_model, metadata_stats
from keras_attn_zoo.registry import load_with_report
from keras_attn_zoo.training import evaluate
from keras_attn_zoo.training.checkpoints import checkpoint_epoch

CLASSES = ("cat", "ship", "truck")


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    raw = extract_cifar(tmp_path_factory.mktemp("raw"), per_class=60)
    folder = tmp_path_factory.mktemp("my_photos")
    for cls in CLASSES:
        (folder / cls).mkdir()
        for i, path in enumerate(sorted((raw / cls).iterdir())):
            image = Image.open(path).resize((48, 40))
            image.save(folder / cls / f"{path.stem}.{'png' if i % 2 else 'jpg'}")
    return folder


@pytest.fixture(scope="module")
def finetuned(three_classes, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = zoo.fine_tune("fa_resnet20", three_classes, weights="cifar10", output_dir=out,
                           freeze_epochs=3, epochs=2, batch_size=16, verbose=0)
    return result, out


def test_fine_tuned_model_learns_the_new_classes_and_is_saved_with_them(finetuned, three_classes):
    result, out = finetuned
    assert result.class_names == list(CLASSES)
    assert result.new_layers == ["predictions"]
    bundled = zoo.load("fa_resnet20", weights="cifar10")
    weighted = [layer.name for layer in bundled.layers if layer.weights]
    assert result.reused_layers == [name for name in weighted if name != "predictions"]

    # The saved file is the best epoch: re-measured on the held-out images, outside the trainer.
    model, metadata = load_model(result.model_path)
    assert metadata["class_names"] == list(CLASSES) and metadata["weights"] == "cifar10"
    val = load_split(three_classes, "test", image_size=(32, 32), holdout=0.2, seed=0)
    assert val.num_examples == 36
    scores = model.predict(preprocess(val.x, metadata_stats(metadata)), verbose=0)
    accuracy = float(np.mean(scores.argmax(-1) == val.y))
    assert accuracy == pytest.approx(result.val_accuracy, abs=1e-6)
    assert accuracy >= 0.8  # chance is 1/3
    np.testing.assert_allclose(scores, result.model.predict(preprocess(val.x, metadata_stats(metadata)), verbose=0),
                               atol=1e-6)
    assert model.trainable and all(layer.trainable for layer in model.layers)

    # BatchNormalization stayed in inference mode throughout: its statistics are the bundled ones.
    for name in ("stem_bn", "stage3_block3_2_bn"):
        np.testing.assert_array_equal(model.get_layer(name).moving_mean.numpy(),
                                      bundled.get_layer(name).moving_mean.numpy())
    record = json.loads((out / "finetune.json").read_text())
    assert [p["phase"] for p in record["phases"]] == ["frozen backbone", "unfrozen backbone"]
    assert record["val_accuracy"] == result.val_accuracy and 1 <= record["best_epoch"] <= 5
    assert len((out / "training_log.csv").read_text().splitlines()) == 1 + 5
    with open(out / "training_log.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert record["last_epoch"] == 5 and record["last_val_accuracy"] == round(float(last["val_accuracy"]), 6)
    assert record["test_accuracy"] is None and record["wall_time_s"] >= record["time_s"] > 0
    assert not (out / "backup").exists()


def test_predict_and_explain_read_the_class_names_from_the_fine_tuned_file(finetuned, three_classes, tmp_path, capsys):
    result, _ = finetuned
    ships = sorted((three_classes / "ship").iterdir())[:6]
    assert main(["predict", *map(str, ships), "--model", str(result.model_path), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6
    assert all(set(n for n in CLASSES if f" {n} " in line) == set(CLASSES) for line in lines)
    assert sum(line.split(": ")[1].startswith("ship ") for line in lines) >= 4
    pytest.importorskip("matplotlib")
    assert main(["explain", str(ships[0]), "--model", str(result.model_path), "-o", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").stat().st_size > 0


def test_abn_fine_tuning_gives_both_branches_new_class_sized_layers(three_classes, tmp_path):
    """From ABN weights with 10 classes to 3: every class-sized layer of the attention branch is
    new; the attention branch's logits convolution, which only L_att reaches, trains."""
    source = zoo.load("abn_resnet20")
    weights = tmp_path / "abn.weights.h5"
    source.save_weights(weights)
    (tmp_path / "abn.json").write_text(json.dumps({"preprocessing": {"scale": 255, "mean": [0.5] * 3,
                                                                     "std": [0.25] * 3}}))
    result = zoo.fine_tune("abn_resnet20", three_classes, weights=str(weights), output_dir=tmp_path / "run",
                           freeze_epochs=2, epochs=0, batch_size=16, limit=48, verbose=0)
    assert sorted(result.new_layers) == ["abn_class_bn", "abn_class_conv", "abn_logits_conv", "abn_map_conv",
                                         "predictions"]
    keras.utils.set_random_seed(0)  # the new layers' initial values, as fine_tune drew them
    initial, _ = load_with_report("abn_resnet20", str(weights), num_classes=3, new_head=True)
    still = zoo.fine_tune("abn_resnet20", three_classes, weights=str(weights), output_dir=tmp_path / "lr0",
                          freeze_epochs=1, epochs=0, learning_rate=0.0, batch_size=16, limit=16, verbose=0)

    def changed(model, name):
        return not np.array_equal(model.get_layer(name).get_weights()[0], initial.get_layer(name).get_weights()[0])

    assert not changed(still.model, "abn_logits_conv") and not changed(still.model, "abn_map_conv")
    assert changed(result.model, "abn_logits_conv") and changed(result.model, "abn_map_conv")
    # The backbone was frozen: reused layers are the file's.
    for name in ("stem_conv", "stage2_block1_1_conv", "abn_block1_1_conv"):
        np.testing.assert_array_equal(result.model.get_layer(name).get_weights()[0],
                                      source.get_layer(name).get_weights()[0])
    model, _ = load_model(result.model_path)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)


def test_fine_tuning_to_as_many_classes_still_gets_a_new_head():
    """Ten new classes on ten-class weights: the classifier is new, not the CIFAR one."""
    bundled = zoo.load("fa_resnet20", weights="cifar10")
    with pytest.warns(UserWarning, match="new class-sized layers"):
        model, new = load_with_report("fa_resnet20", "cifar10", num_classes=10, new_head=True)
    assert new == ["predictions"]
    assert not np.array_equal(model.get_layer("predictions").get_weights()[0],
                              bundled.get_layer("predictions").get_weights()[0])
    for a, b in zip(model.layers, bundled.layers):
        if a.name != "predictions":
            for x, y in zip(a.get_weights(), b.get_weights()):
                np.testing.assert_array_equal(x, y)


def test_bad_fine_tuning_requests_say_what_is_wrong(three_classes, tmp_path):
    with pytest.raises(ValueError, match=r"Pass both mean and std \(--mean and --std\), or neither."):
        zoo.fine_tune("fa_resnet20", three_classes, weights=None, mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"one value per input channel \(3\), got \[0.5\]"):
        zoo.fine_tune("fa_resnet20", three_classes, weights=None, mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match=r"The weights cifar10 were trained with mean \[0.49.*\(their record\): mean= "
                                         r"and std= \(--mean, --std\) are for weights that record none"):
        zoo.fine_tune("fa_resnet20", three_classes, mean=(0.5,) * 3, std=(0.2,) * 3)
    with pytest.raises(FileNotFoundError, match="Weights file not found: nowhere/x.weights.h5"):
        zoo.fine_tune("fa_resnet20", three_classes, weights="nowhere/x.weights.h5")
    with pytest.raises(ValueError, match="both 0"):
        zoo.fine_tune("fa_resnet20", three_classes, epochs=0, freeze_epochs=0)
    one = tmp_path / "one"
    shutil.copytree(three_classes / "cat", one / "cat")
    with pytest.raises(ValueError, match="at least 2 class folders"):
        zoo.fine_tune("fa_resnet20", one, output_dir=tmp_path / "run")
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "finetune.json").write_text("{}")
    (finished / "notes.txt").write_text("the user's")
    with pytest.raises(ValueError, match="finished fine-tuning run"):
        zoo.fine_tune("fa_resnet20", three_classes, output_dir=finished)
    # overwrite replaces the run's own files only
    zoo.fine_tune("fa_resnet20", three_classes, output_dir=finished, overwrite=True, freeze_epochs=1, epochs=0,
                  limit=16, batch_size=16, verbose=0)
    assert (finished / "notes.txt").read_text() == "the user's"


def test_a_killed_fine_tuning_run_resumes_where_it_stopped(three_classes, tmp_path):
    """Kill -9 after the first unfrozen epoch; the same command skips the finished frozen phase
    and continues the unfrozen one."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "keras_attn_zoo.cli", "finetune", "fa_resnet20", "--data", str(three_classes),
            "--freeze-epochs", "1", "--epochs", "3", "--batch-size", "16", "--output", str(out), "--verbose", "2"]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = out / "training_log.csv"

    def rows():
        with open(log) as f:
            return [int(r["epoch"]) for r in csv.DictReader(f)]

    kill_when(args, env, root, lambda: checkpoint_epoch(out / "backup" / "unfrozen") == 2)
    assert rows() == [0, 1] and not (out / "finetune.json").exists()

    second = subprocess.run(args, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming the interrupted run" in second.stdout and "after its frozen-backbone phase" in second.stdout
    assert "Epoch 1/1" not in second.stdout and "Epoch 2/4" not in second.stdout and "Epoch 3/4" in second.stdout
    assert rows() == [0, 1, 2, 3]
    record = json.loads((out / "finetune.json").read_text())
    assert record["class_names"] == list(CLASSES) and (out / "fa_resnet20_finetuned.keras").is_file()


def test_class_folders_that_cannot_be_both_trained_and_validated_are_named(three_classes, tmp_path):
    """An empty class folder, a class with one image: clear errors before any training. Two
    images per class: one trains, one validates, and every class is measured."""
    data = tmp_path / "photos"
    for cls in ("cat", "ship"):
        (data / cls).mkdir(parents=True)
        for path in sorted((three_classes / cls).iterdir())[:2]:
            shutil.copy(path, data / cls / path.name)
    (data / "truck").mkdir()
    with pytest.raises(ValueError, match=r"the class folder\(s\) truck hold no images"):
        zoo.fine_tune("fa_resnet20", data, output_dir=tmp_path / "run")
    shutil.copy(sorted((three_classes / "truck").iterdir())[0], data / "truck")
    with pytest.raises(ValueError, match=r"at least 2 images per class.*'truck' \(1\) have fewer"):
        zoo.fine_tune("fa_resnet20", data, output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing was started

    shutil.rmtree(data / "truck")
    result = zoo.fine_tune("fa_resnet20", data, output_dir=tmp_path / "run", freeze_epochs=1, epochs=0,
                           batch_size=4, verbose=0)
    assert result.record["data"]["validation"].endswith("test split, 2 images")
    assert result.record["data"]["train"].endswith("train split, 2 images")


def test_a_fine_tuning_run_killed_before_its_record_finishes_without_retraining(three_classes, tmp_path,
                                                                                 monkeypatch):
    """A kill after the last epoch, while the model file is written: the same call writes the
    model and the record from the checkpoints, without training again."""
    from keras_attn_zoo.training import finetune

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed()

    settings = {"output_dir": tmp_path / "run", "freeze_epochs": 1, "epochs": 1, "batch_size": 16, "limit": 32,
                "verbose": 0}
    with monkeypatch.context() as patch:
        patch.setattr(finetune, "save_model", killed)
        with pytest.raises(Killed):
            zoo.fine_tune("fa_resnet20", three_classes, **settings)
    assert not (tmp_path / "run" / "finetune.json").exists()
    assert (tmp_path / "run" / "backup" / "unfrozen" / "epoch-0002.weights.h5").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the finished run was trained again")

    monkeypatch.setattr(keras.Model, "fit", no_training)
    result = zoo.fine_tune("fa_resnet20", three_classes, **settings)
    with open(tmp_path / "run" / "training_log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    assert result.model_path.is_file() and 1 <= result.record["best_epoch"] <= 2
    assert not (tmp_path / "run" / "backup").exists()


def test_a_diverged_fine_tuning_run_keeps_its_checkpoint_and_says_so(three_classes, tmp_path, monkeypatch, capsys):
    from keras_attn_zoo.training import finetune
    from keras_attn_zoo.training.trainer import EpochInfo

    class Poisoned(EpochInfo):  # the weights blow up in epoch 3, the second unfrozen one
        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch, logs)
            if epoch == 2:
                variable = self.model.trainable_variables[0]
                variable.assign(np.full(variable.shape, np.nan, "float32"))

    monkeypatch.setattr(finetune, "EpochInfo", Poisoned)
    out = tmp_path / "run"
    argv = ["finetune", "fa_resnet20", "--data", str(three_classes), "--freeze-epochs", "1", "--epochs", "2",
            "--batch-size", "16", "--limit", "16", "--output", str(out), "--verbose", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Fine-tuning diverged in epoch 3 (backbone unfrozen" in err and "Traceback" not in err
    assert f"the checkpoint after epoch 2 is kept in {out / 'backup' / 'unfrozen'}: run again to resume" in err
    assert checkpoint_epoch(out / "backup" / "unfrozen") == 2 and (out / "after_frozen_phase.weights.h5").is_file()
    assert not (out / "finetune.json").exists() and not (out / "fa_resnet20_finetuned.keras").exists()


def test_from_scratch_is_the_same_recipe_from_random_initialisation(three_classes, tmp_path, capsys):
    """weights=None: every layer is new and trains (BatchNormalization too), the inputs are
    normalised with the training split's own statistics, or with --mean / --std."""
    result = zoo.fine_tune("resnet20", three_classes, weights=None, output_dir=tmp_path / "api", freeze_epochs=1,
                           epochs=1, batch_size=16, limit=32, verbose=0)
    fresh = zoo.load("resnet20", num_classes=3)
    assert result.reused_layers == [] and result.new_layers == [layer.name for layer in fresh.layers if layer.weights]
    train = load_split(three_classes, "train", image_size=(32, 32), holdout=0.2, seed=0, limit=32)
    record = result.record
    assert record["weights"] is None and record["preprocessing"] == channel_stats(train.x).to_dict()
    assert record["preprocessing_source"] == "measured on the training split, 32 images"
    assert [(p["phase"], p["trainable"], p["learning_rate"]) for p in record["phases"]] == [
        ("all layers, learning_rate", "all layers", 1e-3), ("all layers, fine_tune_learning_rate", "all layers", 1e-4)]
    assert not np.array_equal(result.model.get_layer("stem_bn").moving_mean.numpy(), np.zeros(16, "float32"))
    assert "resnet20 (random initialisation) -> 3 classes ['cat', 'ship', 'truck']: all 43 layers new" in \
        capsys.readouterr().out

    out = tmp_path / "cli"
    argv = ["finetune", "resnet20", "--data", str(three_classes), "--weights", "none", "--mean", "0.5", "0.4", "0.3",
            "--std", "0.25", "0.2", "0.3", "--freeze-epochs", "1", "--epochs", "0", "--batch-size", "16", "--limit",
            "16", "--output", str(out), "--verbose", "0"]
    assert main(argv) == 0
    _, metadata = load_model(out / "resnet20_finetuned.keras")
    assert metadata["weights"] is None
    assert metadata["preprocessing"] == {"scale": 255, "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3]}
    assert json.loads((out / "finetune.json").read_text())["preprocessing_source"] == "given"


def test_finetune_weights_option_spellings():
    from keras_attn_zoo.cli import _finetune_weights, build_parser

    def weights(*options):
        return _finetune_weights(build_parser().parse_args(["finetune", "resnet20", "--data", "d", *options]))

    assert weights() == "cifar10" and weights("--weights", "runs/x.weights.h5") == "runs/x.weights.h5"
    assert weights("--weights", "none") is None and weights("--weights", "None") is None
    assert weights("--from-scratch") is None and weights("--from-scratch", "--weights", "none") is None
    with pytest.raises(ValueError, match=r"--from-scratch trains from random initialisation: give no --weights "
                                         r"\(cifar10\)"):
        weights("--from-scratch", "--weights", "cifar10")


def test_a_weight_file_without_a_record_is_normalised_with_the_training_splits_statistics(three_classes, tmp_path,
                                                                                          capsys):
    weights = tmp_path / "mine.weights.h5"
    zoo.load("resnet20").save_weights(weights)
    result = zoo.fine_tune("resnet20", three_classes, weights=str(weights), output_dir=tmp_path / "run",
                           freeze_epochs=1, epochs=0, batch_size=16, limit=16, verbose=0)
    train = load_split(three_classes, "train", image_size=(32, 32), holdout=0.2, seed=0, limit=16)
    stats = channel_stats(train.x)
    assert result.record["preprocessing"] == stats.to_dict()
    assert (f"WARNING: {weights} has no training record {tmp_path / 'mine.json'}: its inputs are normalised with the "
            f"mean and std of the training split instead, {list(stats.mean)} and {list(stats.std)}. If you know "
            "those the weights were trained with, pass them: --mean R G B --std R G B (fine_tune(mean=, std=)).") \
        in capsys.readouterr().err
    # evaluate has no mean / std to offer: its message says what it reads, and no option it lacks
    (tmp_path / "mine.json").write_text(json.dumps({"model": "resnet20", "num_classes": 10,
                                                    "input_shape": [32, 32, 3]}))
    with pytest.raises(ValueError) as error:
        evaluate("resnet20", str(weights), three_classes)
    assert str(error.value) == (f"The weights {str(weights)!r} of 'resnet20' record no normalisation; evaluate reads it "
                                'from there (the "preprocessing" mean and std that `keras-attn-zoo train` records).')


def test_evaluate_measures_a_fine_tuned_file_on_its_validation_images(finetuned, three_classes, tmp_path, capsys):
    """``evaluate FILE.keras --data FOLDER --split val``: the held-out images fine-tuning validated
    on (its fraction and seed come from the file), top-1, per-class recall, confusion matrix, PNG."""
    result, _ = finetuned
    model, metadata = load_model(result.model_path)
    val = load_split(three_classes, "test", image_size=(32, 32), holdout=0.2, seed=0)
    predicted = model.predict(preprocess(val.x, metadata_stats(metadata)), verbose=0).argmax(-1)
    matrix = np.zeros((3, 3), int)
    np.add.at(matrix, (val.y, predicted), 1)
    png = tmp_path / "confusion.png"
    argv = ["evaluate", str(result.model_path), "--data", str(three_classes), "--split", "val", "-o", str(png)]
    pytest.importorskip("matplotlib")
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"{result.model_path} on image folder {three_classes.name} (20% held out as test, seed 0), "
                        f"validation split, 36 images: top-1 {result.val_accuracy:.4f} ({np.trace(matrix)} of 36 "
                        "images)")
    assert lines[1].startswith("per-class recall")
    for i, cls in enumerate(CLASSES):
        assert lines[2 + i].split() == [cls, f"{matrix[i, i] / matrix[i].sum():.4f}", f"({matrix[i, i]}/{matrix[i].sum()})"]
    assert lines[5].startswith("confusion matrix (rows: true class") and lines[6].split() == list(CLASSES)
    assert [[int(v) for v in line.split()[1:]] for line in lines[7:10]] == matrix.tolist()
    assert lines[10] == f"wrote {png}" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    other = tmp_path / "other"
    for cls in ("cat", "dog", "truck"):
        shutil.copytree(three_classes / ("ship" if cls == "dog" else cls), other / cls)
    assert main(["evaluate", str(result.model_path), "--data", str(other)]) == 2
    assert (f"are not those {result.model_path} was trained on (cat, ship, truck)."
            in capsys.readouterr().err)


def test_a_test_folder_beside_val_is_measured_once_on_the_saved_model(three_classes, tmp_path, capsys):
    data = tmp_path / "photos"
    for cls in CLASSES:
        files = sorted((three_classes / cls).iterdir())
        for folder, part in (("train", files[:12]), ("val", files[12:18]), ("test", files[18:24])):
            (data / folder / cls).mkdir(parents=True)
            for path in part:
                shutil.copy(path, data / folder / cls / path.name)
    result = zoo.fine_tune("fa_resnet20", data, output_dir=tmp_path / "run", freeze_epochs=2, epochs=0,
                           batch_size=16, verbose=0)
    record = result.record
    assert record["data"]["validation"] == "image folder photos, validation split, 18 images"
    assert record["data"]["test"] == "image folder photos, test split, 18 images"
    model, metadata = load_model(result.model_path)
    test = load_split(data, "test", image_size=(32, 32))
    predicted = model.predict(preprocess(test.x, metadata_stats(metadata)), verbose=0).argmax(-1)
    assert record["test_accuracy"] == {"top1": round(float(np.mean(predicted == test.y)), 6), "images": 18,
                                       "data": "image folder photos, test split, 18 images"}
    out = capsys.readouterr().out
    assert (f"best validation top-1 {record['val_accuracy']:.4f} at epoch {record['best_epoch']}, last epoch (2) "
            f"{record['last_val_accuracy']:.4f}, on image folder photos, validation split, 18 images. The best epoch "
            "is chosen on these same images, so its number is optimistic; on the held-out test images, never used "
            f"to choose, top-1 {record['test_accuracy']['top1']:.4f}") in out
    assert f"Total wall time {record['wall_time_s']:.0f} s" in out


def test_bad_images_in_the_photo_folder_are_listed_together_or_skipped(three_classes, tmp_path, capsys):
    from helpers import bomb_png

    data = tmp_path / "photos"
    shutil.copytree(three_classes, data)
    (data / "cat" / "notes.jpg").write_text("not an image")
    jpeg = (data / "ship" / "0000.jpg").read_bytes()
    (data / "ship" / "cut.jpg").write_bytes(jpeg[:-100])  # its last 100 bytes lost
    bomb_png(data / "truck" / "big.png", 9_000, 9_000)
    bad = [data / "cat" / "notes.jpg", data / "ship" / "cut.jpg", data / "truck" / "big.png"]
    argv = ["finetune", "fa_resnet20", "--data", str(data), "--freeze-epochs", "1", "--epochs", "0", "--batch-size",
            "32", "--output", str(tmp_path / "run"), "--verbose", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"keras-attn-zoo: error: {data}: 3 images cannot be used:\n" in err
    assert all(f"  {path} " in err for path in bad) and f"{bad[1]} is not an image Pillow can read (image file is " \
        "truncated" in err
    assert "or pass skip_bad_images=True (--skip-bad-images) to leave them out." in err
    assert not (tmp_path / "run").exists() or not (tmp_path / "run" / "training_log.csv").exists()

    assert main([*argv, "--skip-bad-images"]) == 0
    assert "left out" in capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert sorted(m.split(" ")[0] for m in record["skipped_images"]) == [str(path) for path in bad]
    assert record["data"]["train"].endswith("train split, 144 images")
