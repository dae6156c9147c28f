"""The accelerator command (``scripts/accelerator_train.py``, ``training.device_loop``): it runs
under JAX with TensorFlow unimportable, a run killed after a checkpoint and resumed ends with the
very weights of an unbroken run, and those weights load under TensorFlow with the same
predictions. The in-process tests at the end run in the JAX pass of the suite
(``KERAS_BACKEND=jax python -m pytest -m multibackend``)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras

import keras_attn_zoo as zoo
from helpers import CIFAR10_ARCHIVE, NO_TENSORFLOW, kill_when
from keras_attn_zoo.data import load_split
from keras_attn_zoo.training import device_loop
from keras_attn_zoo.training.device_loop import checkpoint_files, read_checkpoint, train_on_device

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "accelerator_train.py"
TIMEOUT_S = 300
TINY = ["--epochs", "2", "--batch-size", "16", "--limit", "32", "--eval-limit", "16", "--eval-batch-size", "16",
        "--checkpoint-every", "1"]

# The script (its arguments after `-c CODE`), TensorFlow unimportable, JAX backend.
RUN_SCRIPT = NO_TENSORFLOW + f"""
import runpy
sys.argv = [{str(SCRIPT)!r}, *sys.argv[1:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
"""
# ... and then the logits of the trained file on the measured test images, under JAX.
RUN_SCRIPT_AND_PREDICT = RUN_SCRIPT + """
import numpy as np
import keras_attn_zoo as zoo
from keras_attn_zoo.data import load_split
out = sys.argv[sys.argv.index("--output") + 1]
weights = out + "/resnet20.weights.h5"
images = load_split(sys.argv[sys.argv.index("--data") + 1], "test", limit=16, image_size=(32, 32)).x
model = zoo.load("resnet20", weights=weights, classifier_activation=None)
np.save(out + "/jax_logits.npy", model.predict(zoo.preprocess_input("resnet20", images, weights=weights), verbose=0))
"""


def environment():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "jax"}
    return env


def command(output, *extra, code=RUN_SCRIPT):
    return [sys.executable, "-c", code, "resnet20", "--data", str(CIFAR10_ARCHIVE), "--output", str(output),
            *TINY, *extra]


def run(args):
    result = subprocess.run(args, env=environment(), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def log_rows(folder):
    with open(folder / "training_log.csv") as f:
        return list(csv.DictReader(f))


def test_killed_run_resumes_to_the_unbroken_weights_which_load_under_tensorflow(tmp_path):
    killed, resumed, unbroken = tmp_path / "killed", tmp_path / "resumed", tmp_path / "unbroken"
    checkpoint = killed / "resnet20.checkpoint-0001-1of1.npz"
    kill_when(command(killed), environment(), ROOT, checkpoint.is_file, TIMEOUT_S)
    assert [epoch for epoch, _ in checkpoint_files(killed, "resnet20")] == [1]
    meta, _ = read_checkpoint(checkpoint)
    assert not (killed / "resnet20.weights.h5").exists() and len(log_rows(killed)) == 1
    assert [s["from_epoch"] for s in meta["sessions"]] == [0] and meta["sessions"][0]["to_epoch"] == 1

    out = run(command(resumed, "--resume", str(checkpoint)))
    assert f"Resuming from {checkpoint} after epoch 1 of 2" in out and "Epoch 1/2" not in out
    record = json.loads((resumed / "resnet20.json").read_text())
    training = record["training"]
    assert training["epochs_completed"] == 2 and "backend jax" in training["software"]
    assert [(s["from_epoch"], s["to_epoch"]) for s in training["sessions"]] == [(0, 1), (1, 2)]
    assert [int(r["epoch"]) for r in log_rows(resumed)] == [1, 2]  # from 1, as the trainer's CSV log
    assert log_rows(resumed)[0] == log_rows(killed)[0]  # the first session's row, carried by the checkpoint
    assert not checkpoint_files(resumed, "resnet20")  # removed once the record is written

    run(command(unbroken, code=RUN_SCRIPT_AND_PREDICT))
    # Under TensorFlow: both files load strictly; resumed = unbroken, bit for bit (CPU, same seed).
    a = zoo.load("resnet20", weights=str(unbroken / "resnet20.weights.h5"), classifier_activation=None)
    b = zoo.load("resnet20", weights=str(resumed / "resnet20.weights.h5"), classifier_activation=None)
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
    assert log_rows(resumed) == [{**r, "epoch_seconds": s["epoch_seconds"], "train_seconds": s["train_seconds"]}
                                 for r, s in zip(log_rows(unbroken), log_rows(resumed))]
    # The JAX-trained file predicts the same under TensorFlow.
    weights = str(unbroken / "resnet20.weights.h5")
    images = load_split(CIFAR10_ARCHIVE, "test", limit=16, image_size=(32, 32)).x
    logits = a.predict(zoo.preprocess_input("resnet20", images, weights=weights), verbose=0)
    jax_logits = np.load(unbroken / "jax_logits.npy")
    assert np.abs(logits - jax_logits).max() <= 1e-4 * np.abs(jax_logits).max()
    assert (logits.argmax(-1) == jax_logits.argmax(-1)).all()
    measured = json.loads((unbroken / "resnet20.json").read_text())["accuracy"]
    assert measured["top1"] == pytest.approx(float(np.mean(logits.argmax(-1) == load_split(
        CIFAR10_ARCHIVE, "test", limit=16, image_size=(32, 32)).y)))


def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(tmp_path):
    meta = {"model": "resnet20", "recipe": {"epochs": 2}, "data": "d", "test_data": "t", "seed": 0,
            "mixed_precision": None, "variables": [["a", [3], "float32"]]}
    settings = {**meta, "seed": 1, "recipe": {"epochs": 3}}
    variable = type("V", (), {"path": "a", "shape": (3,), "dtype": "float32"})()
    with pytest.raises(ValueError, match=r"recipe: the checkpoint has \{'epochs': 2\}, this command \{'epochs': 3\}; "
                                         r"seed: the checkpoint has 0, this command 1"):
        device_loop._check_resume(meta, settings, [variable], tmp_path / "x.checkpoint.npz")
    other = type("V", (), {"path": "a", "shape": (4,), "dtype": "float32"})()
    with pytest.raises(ValueError, match=r"holds 1 variables, this model 1; the first that differs is number 0: "
                                         r"\['a', \[3\], 'float32'\] against \['a', \[4\], 'float32'\]"):
        device_loop._check_resume(meta, meta, [other], tmp_path / "x.checkpoint.npz")
    bad = tmp_path / "m.checkpoint-0001-1of1.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{bad} is not a readable training checkpoint"):
        read_checkpoint(bad)
    with pytest.raises(ValueError, match="m.npz is not a training checkpoint: expected "
                                         "<name>.checkpoint-<epochs>-<i>of<n>.npz"):
        read_checkpoint(tmp_path / "m.npz")


def test_a_checkpoint_in_parts_round_trips_and_replaces_the_previous_one_whole(tmp_path):
    arrays = [np.arange(3, dtype="float32"), np.array([7, 9], dtype="uint32"), np.ones(4, "float32")]
    meta = {"format": device_loop.CHECKPOINT_FORMAT, "variables": [["a", [3], "float32"], ["s", [2], "uint32"],
                                                                    ["b", [4], "float32"]]}
    device_loop.write_checkpoint(tmp_path, "m", {**meta, "epochs_completed": 1}, arrays)
    # parts of at most 12 bytes of arrays: [a] (12), [s] (8; with b 24), [b] (16, alone)
    parts = device_loop.write_checkpoint(tmp_path, "m", {**meta, "epochs_completed": 2}, [a + 1 for a in arrays],
                                         max_part_bytes=12)
    names = ["m.checkpoint-0002-1of3.npz", "m.checkpoint-0002-2of3.npz", "m.checkpoint-0002-3of3.npz"]
    assert [p.name for p in parts] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # the older checkpoint and temporary files gone
    got, values = read_checkpoint(parts[1])  # any part reads the whole
    assert got["epochs_completed"] == 2 and [v.tolist() for v in values] == [[1, 2, 3], [8, 10], [2, 2, 2, 2]]
    parts[2].unlink()
    with pytest.raises(ValueError, match="is part of a checkpoint in 3 files, and m.checkpoint-0002-3of3.npz is not "
                                         "beside it: copy all its parts"):
        read_checkpoint(parts[0])


def test_the_device_loop_needs_jax():
    if keras.backend.backend() == "jax":
        pytest.skip("the JAX backend runs it")
    with pytest.raises(ValueError, match="runs on the JAX backend"):
        train_on_device("resnet20", CIFAR10_ARCHIVE, output_dir="unused")


def test_the_carry_fits_a_call_or_is_refused():
    import runpy

    carry = runpy.run_path(str(ROOT / "scripts" / "accelerator_carry.py"))
    assert carry["check_fits"](10 << 20, {".data": 19 << 20, ".whl": 3 << 20}) == 32 << 20
    with pytest.raises(ValueError, match=r"A call would carry 65.0 MiB \(working tree 40.0 MiB, .data 25.0 MiB\), "
                                         r"over its 64 MiB"):
        carry["check_fits"](40 << 20, {".data": 25 << 20})


jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="the device loop runs on JAX")


def _fit_reference(name, overrides):
    """The weights ``fit`` gives from the same start, batches and recipe as the device loop."""
    from keras_attn_zoo.registry import load
    from keras_attn_zoo.training.recipes import get_recipe
    from keras_attn_zoo.training.trainer import compile_training, training_model, training_stats

    recipe = get_recipe("fanet_cifar", **overrides)
    split = load_split(CIFAR10_ARCHIVE, "train", limit=8, image_size=(32, 32))
    keras.utils.set_random_seed(0)
    model = load(name, num_classes=10, classifier_activation=None)
    wrapper = training_model(model, training_stats(split), recipe.augmentation, 0)
    compile_training(wrapper, recipe, 1, 10)
    history = wrapper.fit(split.batches(8, shuffle=True, seed=0), epochs=1, verbose=0)
    return model.get_weights(), history.history["loss"][0]


@jax_only
@pytest.mark.multibackend
@pytest.mark.parametrize("name", ["abn_resnet20", "paya_resnet20"])
def test_the_device_loop_trains_as_fit_does_with_the_models_own_losses(name, tmp_path):
    overrides = {"epochs": 1, "batch_size": 8, "augmentation": "none"}
    result = train_on_device(name, CIFAR10_ARCHIVE, output_dir=tmp_path, limit=8, eval_limit=8, **overrides)
    trained = zoo.load(name, weights=str(tmp_path / f"{name}.weights.h5"), classifier_activation=None)
    weights, loss = _fit_reference(name, overrides)
    assert result["finished"] and result["record"]["training"]["epochs_completed"] == 1
    assert float(log_rows(tmp_path)[0]["loss"]) == pytest.approx(loss, rel=1e-5)  # L_att + L_per, PAYA's NLL
    for got, want in zip(trained.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@jax_only
@pytest.mark.multibackend
def test_bfloat16_on_the_device_keeps_float32_weights_and_the_loss_close(tmp_path):
    overrides = {"epochs": 1, "batch_size": 8, "augmentation": "none"}
    runs = {}
    for precision in (None, "bfloat16"):
        out = tmp_path / str(precision)
        runs[precision] = train_on_device("resnet20", CIFAR10_ARCHIVE, output_dir=out, limit=8, eval_limit=8,
                                          mixed_precision=precision, **overrides)
        runs[precision]["loss"] = float(log_rows(out)[0]["loss"])
    assert runs["bfloat16"]["record"]["training"]["mixed_precision"] == "bfloat16"
    # bfloat16 keeps 8 significant bits (relative rounding up to 2**-8): the first step's loss within 2%.
    assert runs["bfloat16"]["loss"] == pytest.approx(runs[None]["loss"], rel=2e-2)
    model = zoo.load("resnet20", weights=str(tmp_path / "bfloat16" / "resnet20.weights.h5"))  # float32 file
    assert {w.dtype for w in model.get_weights()} == {np.dtype("float32")}


@jax_only
@pytest.mark.multibackend
def test_a_model_whose_files_would_not_come_back_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"resnet20 would need its weight file 1\.\d MiB, over the 1 MiB a file may "
                                         r"have here and its checkpoint 2\.\d MiB, over the 2 MiB a checkpoint may have "
                                         r"here \(what a lent machine carries\)"):
        train_on_device("resnet20", CIFAR10_ARCHIVE, output_dir=tmp_path, limit=8, eval_limit=8,
                        max_file_bytes=1 << 20, max_checkpoint_bytes=2 << 20)
    assert not any(tmp_path.iterdir())
