"""Training in fresh processes: MirroredStrategy on two logical CPUs (TensorFlow), DataParallel
on two CPU devices (JAX, with TensorFlow made unimportable), and a run killed mid-training
that resumes from its last finished epoch. Small subsets of the real CIFAR-10 copy."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keras_attn_zoo as zoo
from helpers import CIFAR10_ARCHIVE, WITHOUT_TENSORFLOW, kill_when
from keras_attn_zoo.training.checkpoints import LOCK_FILE, checkpoint_epoch
from keras_attn_zoo.training.trainer import git_commit

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300

def cli(output, *extra, epochs=1, limit=64):
    return ["train", "resnet20", "--data", str(CIFAR10_ARCHIVE), "--epochs", str(epochs),
            "--batch-size", "32", "--limit", str(limit), "--eval-limit", "32",
            "--output", str(output), "--verbose", "2", *extra]


def environment(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
    env.pop("KERAS_BACKEND", None)
    env.update(extra)
    return env


def run(args, env, code=None):
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "keras_attn_zoo.cli", *args]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def log_rows(output):
    with open(output / "training_log.csv") as f:
        return list(csv.DictReader(f))


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    out = run(cli(tmp_path, "--strategy", "mirrored", "--cpu-devices", "2"), environment())
    assert "MirroredStrategy over 2 logical CPU devices" in out
    record = json.loads((tmp_path / "resnet20.json").read_text())
    assert record["training"]["strategy"] == "MirroredStrategy over 2 logical CPU devices"
    assert record["accuracy"]["images"] == 32
    zoo.load("resnet20", weights=str(tmp_path / "resnet20.weights.h5"))  # strict load


def test_jax_data_parallel_needs_no_tensorflow(tmp_path):
    env = environment(KERAS_BACKEND="jax")
    out = run(cli(tmp_path, "--strategy", "data_parallel", "--cpu-devices", "2"), env, WITHOUT_TENSORFLOW)
    assert "keras.distribution.DataParallel over 2 devices" in out
    record = json.loads((tmp_path / "resnet20.json").read_text())
    assert record["training"]["software"].startswith("keras 3") and "backend jax" in record["training"]["software"]
    assert not (tmp_path / "tensorboard").exists()  # TensorBoard needs TensorFlow: skipped
    assert len(log_rows(tmp_path)) == 1
    zoo.load("resnet20", weights=str(tmp_path / "resnet20.weights.h5"))  # and TensorFlow loads it


def test_a_killed_run_resumes_from_its_last_epoch(tmp_path):
    """Kill -9 during epoch 2 of 2; the same command continues at epoch 2 with the optimizer's
    state (the step schedule drops the rate at epoch 2, counted in optimizer steps)."""
    args = cli(tmp_path, "--milestones", "1", epochs=2, limit=256)
    env = environment()
    kill_when([sys.executable, "-m", "keras_attn_zoo.cli", *args], env, ROOT,
              lambda: checkpoint_epoch(tmp_path / "backup") == 1, TIMEOUT_S)
    assert len(log_rows(tmp_path)) == 1 and not (tmp_path / "resnet20.weights.h5").exists()
    assert checkpoint_epoch(tmp_path / "backup") == 1
    assert (tmp_path / LOCK_FILE).is_file()  # left by the killed process; the next run takes it over
    started = tmp_path / "backup" / "started.json"
    assert json.loads(started.read_text())["commit"] == git_commit()
    # As if commits landed while the run was down: its record keeps the code it started with.
    started.write_text(json.dumps({"commit": "0123abc", "date": "2026-01-01T00:00:00+00:00"}))

    out = run(args, env)
    assert "Resuming from the checkpoint after epoch 1" in out
    assert "Epoch 1/2" not in out and "Epoch 2/2" in out
    rows = log_rows(tmp_path)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    # 0.01 only if the optimizer's step counter was restored (8 steps done, the drop at step 8).
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.1, 0.01])
    record = json.loads((tmp_path / "resnet20.json").read_text())
    assert record["training"]["epochs_completed"] == 2 and record["training"]["resumed_after_epoch"] == 1
    assert record["training"]["commit"] == "0123abc"
    assert record["training"]["resumed_with_commit"] == git_commit()
    assert not (tmp_path / "backup").exists() and not (tmp_path / LOCK_FILE).exists()
