"""Training runs that are killed, diverge, find damaged resume state, or meet another run in
their output folder: nothing finished is lost, the record says what was trained, and every
error names the file and the fix. Tiny runs (16x16 images, two classes, in-process); a kill is
an exception raised where the run would be killed, or a lock file left by a process that
exited."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import keras

import keras_attn_zoo as zoo
from keras_attn_zoo.cli import main
from keras_attn_zoo.training import train, trainer
from keras_attn_zoo.training.checkpoints import LOCK_FILE, checkpoint_epoch, trim_log



class Killed(BaseException):
    """What a SIGKILL would do at that moment: nothing after it runs (but ``finally``)."""


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """train/ (12 per class) and test/ (4 per class) folders of 16x16 PNGs, two classes."""
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 128, (16, 16, 3)) + 127 * label
                Image.fromarray(pixels.astype("uint8")).save(root / split / name / f"{i}.png")
    return root


def run(pets, out, epochs=2, **kwargs):
    return train("resnet20", pets, "cosine", output_dir=out, epochs=epochs, batch_size=8, image_size=16,
                 verbose=0, **kwargs)


def log_epochs(out):
    with open(out / "training_log.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def kill_at_evaluation(monkeypatch):
    def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(trainer, "evaluate_split", killed)  # the trainer measures its saved file with it


def test_a_run_killed_after_its_last_epoch_finishes_without_retraining(pets, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        kill_at_evaluation(patch)
        with pytest.raises(Killed):
            run(pets, out)
    assert checkpoint_epoch(out / "backup") == 2 and not (out / "resnet20.json").exists()
    trained = [w.copy() for w in zoo.load("resnet20", weights=str(out / "resnet20.weights.h5"), num_classes=2,
                                          input_shape=(16, 16, 3)).get_weights()]
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))

    def no_training(*args, **kwargs):
        raise AssertionError("the finished run was trained again")

    monkeypatch.setattr(keras.Model, "fit", no_training)
    capsys.readouterr()
    record = run(pets, out)
    captured = capsys.readouterr()
    assert "Resuming from the checkpoint after epoch 2" in captured.out and "training had finished" in captured.out
    assert "no longer runs" in captured.err  # the killed run's lock, taken over
    assert record["training"]["epochs_completed"] == 2 and record["training"]["resumed_after_epoch"] == 2
    assert log_epochs(out) == [1, 2]  # numbered as the console and the record count
    final = zoo.load("resnet20", weights=str(out / "resnet20.weights.h5"), num_classes=2, input_shape=(16, 16, 3))
    for a, b in zip(final.get_weights(), trained):
        np.testing.assert_array_equal(a, b)
    assert json.loads((out / "resnet20.json").read_text()) == record
    assert not (out / "backup").exists() and not (out / LOCK_FILE).exists()


def test_a_truncated_checkpoint_falls_back_and_the_record_says_what_was_trained(pets, tmp_path, monkeypatch,
                                                                                capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        kill_at_evaluation(patch)
        with pytest.raises(Killed):
            run(pets, out, epochs=3)
    newest = out / "backup" / "epoch-0003.weights.h5"
    newest.write_bytes(newest.read_bytes()[:1000])  # a disk that filled up
    capsys.readouterr()
    record = run(pets, out, epochs=3)
    captured = capsys.readouterr()
    assert f"the checkpoint {newest} cannot be read (OSError: " in captured.err
    assert "resuming from epoch-0002.weights.h5 instead" in captured.err
    assert "Resuming from the checkpoint after epoch 2" in captured.out
    assert log_epochs(out) == [1, 2, 3]  # epoch 3 once, not twice
    assert record["training"]["epochs_completed"] == 3 and record["training"]["resumed_after_epoch"] == 2


def test_a_diverged_run_keeps_its_last_good_checkpoint_and_says_so(pets, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--data", str(pets), "--recipe", "cosine", "--epochs", "2", "--batch-size", "8",
            "--image-size", "16", "--output", str(out), "--verbose", "0"]

    class Poisoned(trainer.EpochInfo):  # the weights blow up during epoch 2
        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch, logs)
            if epoch == 1:
                variable = self.model.trainable_variables[0]
                variable.assign(np.full(variable.shape, np.nan, "float32"))

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "EpochInfo", Poisoned)
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Training resnet20 diverged in epoch 2 (the loss is not finite)" in err and "Traceback" not in err
    assert f"the checkpoint after epoch 1 is kept in {out / 'backup'}: run again to resume from it" in err
    assert checkpoint_epoch(out / "backup") == 1
    assert not (out / "resnet20.weights.h5").exists() and not (out / "resnet20.json").exists()
    best = zoo.load("resnet20", weights=str(out / "resnet20.best.weights.h5"), num_classes=2, input_shape=(16, 16, 3))
    assert all(np.isfinite(w).all() for w in best.get_weights())  # the diverged epoch was not "best"

    assert main(argv) == 0  # the same command resumes from the good checkpoint
    record = json.loads((out / "resnet20.json").read_text())
    assert record["training"]["epochs_completed"] == 2 and record["training"]["resumed_after_epoch"] == 1
    assert log_epochs(out) == [1, 2]  # the diverged attempt's row is gone


def test_damaged_resume_state_names_the_file_and_overwrite_clears_it(pets, tmp_path):
    out = tmp_path / "run"
    (out / "backup").mkdir(parents=True)
    (out / "backup" / "epoch-0001.weights.h5").write_bytes(b"\x89HDF\r\n")  # truncated
    (out / "training_log.csv").write_text("epoch,loss\n1,0.7\n")
    with pytest.raises(ValueError, match=r"No checkpoint in .*backup can be read \(epoch-0001.weights.h5: OSError.*\): "
                                         r"run again with --overwrite \(overwrite=True\) to start the run over"):
        run(pets, out, epochs=1)
    assert (out / "backup" / "epoch-0001.weights.h5").is_file() and (out / "training_log.csv").is_file()
    (out / "backup" / "started.json").write_text("")
    with pytest.raises(ValueError, match=r"started.json \(the commit the run started with\) is damaged "
                                         r"\(JSONDecodeError.*\): run again with --overwrite"):
        run(pets, out, epochs=1)
    record = run(pets, out, epochs=1, overwrite=True)
    assert record["training"]["epochs_completed"] == 1 and record["training"]["resumed_after_epoch"] is None
    assert log_epochs(out) == [1]


def test_a_second_run_into_the_same_folder_is_refused_and_deletes_nothing(pets, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "training_log.csv").write_text("epoch,loss\n1,0.7\n")  # the first run's, still epoch 1
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(ValueError, match=rf"{out} is in use by another training run \(pid {holder.pid}"):
            run(pets, out, epochs=1)
        assert (out / "training_log.csv").read_text() == "epoch,loss\n1,0.7\n"
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_runs_interrupted_before_this_version_keep_their_checkpoints_and_locks_say_whose(tmp_path):
    from keras_attn_zoo.training.checkpoints import adopt_keras_backup, run_lock

    backup = tmp_path / "backup"  # what keras.callbacks.BackupAndRestore(double_checkpoint=True) leaves
    backup.mkdir()
    for suffix, epoch in (("", 3), (".bkp", 2)):
        (backup / f"latest.weights.h5{suffix}").write_bytes(f"weights {epoch}".encode())
        (backup / f"training_metadata.json{suffix}").write_text(json.dumps({"epoch": epoch, "batch": 0}))
    adopt_keras_backup(backup)
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-0002.weights.h5", "epoch-0003.weights.h5"]
    assert (backup / "epoch-0003.weights.h5").read_bytes() == b"weights 3" and checkpoint_epoch(backup) == 3

    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "gpu-box-7"}))
    with pytest.raises(ValueError, match=rf"{tmp_path} is in use by a training run on gpu-box-7 \(pid 1\).*if it no "
                                         rf"longer runs, delete {tmp_path / LOCK_FILE}"):
        with run_lock(tmp_path):
            pass
    (tmp_path / LOCK_FILE).unlink()
    with run_lock(tmp_path) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_resume_state_is_written_whole_or_not_at_all(tmp_path):
    """A save that fails half-way (a kill, a full disk) leaves the previous file as it was."""
    from keras_attn_zoo.training.checkpoints import save_weights, write_json

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "epoch-0001.weights.h5"
    save_weights(model, path)
    before = path.read_bytes()

    class Failing(keras.Sequential):
        def save_weights(self, filepath, **kwargs):
            with open(filepath, "wb") as f:
                f.write(b"\x89HDF half")
            raise OSError(28, "No space left on device")

    failing = Failing([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(OSError, match="No space left"):
        save_weights(failing, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]
    write_json(tmp_path / "best.json", {"epoch": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "best.json", {"epoch": object()})
    assert json.loads((tmp_path / "best.json").read_text()) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", path.name]


def test_every_atomic_write_goes_through_one_helper_that_keeps_the_old_file_on_failure(tmp_path):
    """``files.replacing``: the temporary file keeps the target's suffixes (Keras and NumPy check
    them), becomes the target only when the block succeeds, and is gone either way."""
    from keras_attn_zoo.files import replacing
    from keras_attn_zoo.training.checkpoints import write_csv

    path = tmp_path / "cache.npz"
    with replacing(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".cache.npz") and not tmp.exists()
        np.savez(tmp, x=np.arange(3))  # NumPy would append ".npz" to a name without it
    with np.load(path) as data:
        assert data["x"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError, match="killed"):
        with replacing(path) as tmp:
            np.savez(tmp, x=np.arange(5))
            raise RuntimeError("killed half-way")
    with np.load(path) as data:
        assert data["x"].tolist() == [0, 1, 2]
    write_csv(tmp_path / "log.csv", ["epoch", "loss"], [{"epoch": 1, "loss": 0.5}])
    assert (tmp_path / "log.csv").read_text().splitlines() == ["epoch,loss", "1,0.5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npz", "log.csv"]


def test_a_measurement_page_is_its_markdown_with_the_same_figures_as_json_beside_it(tmp_path):
    from keras_attn_zoo.files import temporary_name, write_page

    assert temporary_name(tmp_path / "a.md") != temporary_name(tmp_path / "a.md")
    assert temporary_name(tmp_path / "a.md").name.startswith(".") and temporary_name("a.md").name.endswith(".tmp.a.md")
    beside = write_page(tmp_path / "docs" / "overlap.md", "# Overlap\n", {"top1": 0.8657, "rows": [1, 2]})
    assert beside == tmp_path / "docs" / "overlap.json"
    assert (tmp_path / "docs" / "overlap.md").read_text() == "# Overlap\n"
    assert json.loads(beside.read_text()) == {"top1": 0.8657, "rows": [1, 2]}
    with pytest.raises(TypeError):  # a figure JSON cannot hold: the old page stays, nothing half-written
        write_page(tmp_path / "docs" / "overlap.md", "# New\n", {"top1": object()})
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["overlap.json", "overlap.md"]
    assert json.loads(beside.read_text())["top1"] == 0.8657
    assert (tmp_path / "docs" / "overlap.md").read_text() == "# Overlap\n"


def test_trim_log_renumbers_a_log_written_from_zero(tmp_path):
    """A run started before the log counted epochs from 1 and resumed after: its rows are
    renumbered from 1 and trimmed to the checkpoint, so the log keeps one numbering and no
    epoch twice."""
    log = tmp_path / "training_log.csv"
    log.write_text("epoch,accuracy\n0,0.3\n1,0.5\n2,0.6\n")  # a row of epoch 3 before its checkpoint
    trim_log(log, 2)
    assert log.read_text().splitlines() == ["epoch,accuracy", "1,0.3", "2,0.5"]
    trim_log(log, 2)  # already from 1: unchanged
    assert log.read_text().splitlines() == ["epoch,accuracy", "1,0.3", "2,0.5"]
