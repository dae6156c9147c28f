"""Training in fresh processes: MirroredStrategy on two logical CPUs (TensorFlow), with
synchronized BatchNormalization, DataParallel on two CPU devices (JAX, with TensorFlow made
unimportable), a run killed mid-training that resumes from its last finished epoch, and two
processes on 127.0.0.1 that train one run (TF_CONFIG's MultiWorkerMirroredStrategy; JAX's
processes): behind --run-slow, a minute or two each. Small subsets of the real CIFAR-10 copy."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import keras

import keras_attn_zoo as zoo
from helpers import CIFAR10_ARCHIVE, WITHOUT_TENSORFLOW, kill_when
from keras_attn_zoo.training.checkpoints import LOCK_FILE, checkpoint_epoch
from keras_attn_zoo.training.distribute import synchronize_batch_norm
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
    out = run(cli(tmp_path, "--strategy", "mirrored", "--cpu-devices", "2", "--sync-bn"), environment())
    assert "MirroredStrategy over 2 logical CPU devices" in out
    record = json.loads((tmp_path / "resnet20.json").read_text())
    assert record["training"]["strategy"] == "MirroredStrategy over 2 logical CPU devices"
    assert record["training"]["sync_batch_norm"] is True
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
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # epochs count from 1 in the CSV log, as in the console
    # 0.01 only if the optimizer's step counter was restored (8 steps done, the drop at step 8).
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([0.1, 0.01])
    record = json.loads((tmp_path / "resnet20.json").read_text())
    assert record["training"]["epochs_completed"] == 2 and record["training"]["resumed_after_epoch"] == 1
    assert record["training"]["commit"] == "0123abc"
    assert record["training"]["resumed_with_commit"] == git_commit()
    assert not (tmp_path / "backup").exists() and not (tmp_path / LOCK_FILE).exists()


# One training step of Input -> BatchNormalization(momentum 0.5) -> mean -> Dense on a batch of
# four 2x2 images of constant value 1, 2, 5, 6, split over two replicas ([1, 2] and [5, 6]):
# prints the moving mean the first replica keeps (the one saved).
BATCH_NORM_STEP = """
import json, sys
import numpy as np
import keras
from keras_attn_zoo.training.distribute import configure_cpu_devices, get_distribution, synchronize_batch_norm

configure_cpu_devices(2)
distribution = get_distribution(sys.argv[1])
result = {"description": distribution.description}
for sync in ([False, True] if keras.backend.backend() == "tensorflow" else [False]):
    with distribution.scope():
        inputs = keras.Input((2, 2, 1))
        x = keras.layers.BatchNormalization(momentum=0.5, name="bn")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(x)))
        if sync:
            synchronize_batch_norm(model)
        model.compile("sgd", "mse")
    images = np.concatenate([np.full((1, 2, 2, 1), v, "float32") for v in (1, 2, 5, 6)])
    model.fit(images, np.zeros((4, 1)), batch_size=4, epochs=1, shuffle=False, verbose=0)
    result[f"sync={sync}"] = float(np.asarray(model.get_layer("bn").moving_mean)[0])
print(json.dumps(result))
"""


@pytest.mark.parametrize("backend, strategy", [("tensorflow", "mirrored"), ("jax", "data_parallel")])
def test_batch_norm_statistics_per_replica_or_over_the_global_batch(backend, strategy):
    """moving_mean = momentum * 0 + (1 - momentum) * batch mean: replica 0's mean of [1, 2] is
    1.5, the global batch's mean of [1, 2, 5, 6] is 3.5. tf.distribute keeps per-replica
    statistics unless synchronized; JAX's data_parallel traces the step on the global batch."""
    out = run([strategy], environment(KERAS_BACKEND=backend), BATCH_NORM_STEP)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["description"].endswith("over 2 logical CPU devices" if backend == "tensorflow" else "over 2 devices")
    if backend == "tensorflow":
        assert result == {**result, "sync=False": pytest.approx(0.75), "sync=True": pytest.approx(1.75)}
    else:
        assert result["sync=False"] == pytest.approx(1.75)


def test_synchronize_batch_norm_sets_every_batch_norm_layer():
    model = zoo.load("resnet20")
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert synchronize_batch_norm(model) == len(layers) == 1 + 2 * 9 + 2  # stem, 9 blocks, 2 projections
    assert all(layer.get_config()["synchronized"] for layer in layers)
    clone = keras.layers.BatchNormalization.from_config(layers[0].get_config())
    assert clone.synchronized


@pytest.mark.multibackend
def test_synchronized_batch_norm_is_refused_off_tensorflow():
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow synchronizes")
    backend = keras.backend.backend()
    expected = f"tf.distribute option .TensorFlow backend., not {backend}'s"
    if backend == "jax":
        expected += "; JAX's data_parallel computes the global batch's statistics already"
    with pytest.raises(ValueError, match=expected):
        synchronize_batch_norm(zoo.load("resnet20"))


def free_ports(count):
    """Ports on 127.0.0.1 that nothing listens on (as the OS hands them out)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_together(command, envs, logs):
    """Start ``command`` once per environment, each logging to its file; all must end with 0."""
    processes = []
    try:
        for env, log in zip(envs, logs):
            with open(log, "w") as f:
                processes.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT))
        for process in processes:
            process.wait(timeout=TIMEOUT_S)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    outputs = [Path(log).read_text() for log in logs]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    return outputs


# The same batches in both runs (no random crops, which each replica would draw on its own).
SAME_BATCHES = ("--augmentation", "none")
RUN_FILES = ["resnet20.best.weights.h5", "resnet20.json", "resnet20.weights.h5", "training_log.csv"]


def check_two_process_run(tmp_path, single, double, outputs, strategy):
    """Both processes trained; only the chief wrote, and what it wrote is the one-process run's."""
    assert f"trained as a worker of {strategy}; the chief writes the weights and the record" in outputs[1]
    assert "Wrote" in outputs[0] and "Wrote" not in outputs[1]
    assert sorted(p.name for p in double.iterdir() if p.name != "tensorboard") == RUN_FILES  # no backup/, no lock
    assert not any((tmp_path / "tmp1").iterdir())  # the worker's temporary folder is gone
    record = json.loads((double / "resnet20.json").read_text())
    assert record["training"]["strategy"] == strategy
    zoo.load("resnet20", weights=str(double / "resnet20.weights.h5"))  # strict load
    one, two = log_rows(single)[0], log_rows(double)[0]
    # Same data, batches and start; only floating-point sums in another order.
    assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=1e-2)
    reference = json.loads((single / "resnet20.json").read_text())["accuracy"]["top1"]
    assert abs(record["accuracy"]["top1"] - reference) <= 0.1


@pytest.mark.slow
def test_two_tensorflow_workers_train_one_run_and_only_the_chief_writes(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    args = (*SAME_BATCHES, "--sync-bn")  # and statistics over the global batch, as in one process
    run(cli(single, *args, limit=128), environment())
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    envs = []
    for index in range(2):
        (tmp_path / f"tmp{index}").mkdir()
        envs.append(environment(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                                TMPDIR=str(tmp_path / f"tmp{index}")))
    command = [sys.executable, "-m", "keras_attn_zoo.cli", *cli(double, "--strategy", "multi_worker", *args, limit=128)]
    outputs = run_together(command, envs, [tmp_path / "worker0.log", tmp_path / "worker1.log"])
    check_two_process_run(tmp_path, single, double, outputs,
                          "MultiWorkerMirroredStrategy, 2 replicas over 2 worker(s) (TF_CONFIG)")
    assert json.loads((double / "resnet20.json").read_text())["training"]["sync_batch_norm"] is True


@pytest.mark.slow
def test_two_jax_processes_train_one_run_and_only_process_0_writes(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    run(cli(single, *SAME_BATCHES, "--strategy", "none", limit=128), environment(KERAS_BACKEND="jax"),
        WITHOUT_TENSORFLOW)
    coordinator = f"127.0.0.1:{free_ports(1)[0]}"
    envs = []
    for index in range(2):
        (tmp_path / f"tmp{index}").mkdir()
        envs.append(environment(KERAS_BACKEND="jax", KERAS_DISTRIBUTION_JOB_ADDRESSES=coordinator,
                                KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(index),
                                TMPDIR=str(tmp_path / f"tmp{index}")))
    command = [sys.executable, "-c", WITHOUT_TENSORFLOW,
               *cli(double, "--strategy", "data_parallel", *SAME_BATCHES, limit=128)]
    outputs = run_together(command, envs, [tmp_path / "process0.log", tmp_path / "process1.log"])
    check_two_process_run(tmp_path, single, double, outputs,
                          "keras.distribution.DataParallel over 2 devices in 2 processes")
