"""`keras-attn-zoo benchmark`: timings that add up, on tiny batches of real CIFAR-10 images."""

import re

import pytest

from helpers import CIFAR10_ARCHIVE
from keras_attn_zoo import benchmark
from keras_attn_zoo.cli import main


def test_inference_rows_are_consistent():
    rows = benchmark.inference("resnet20", batch_sizes=(1, 4), repeats=3, warmup=1)
    assert [(r["model"], r["kind"], r["batch"]) for r in rows] == [("resnet20", "inference", 1), ("resnet20", "inference", 4)]
    for row in rows:  # images/s is the batch over the median call, rounded
        assert row["latency_ms"] > 0
        assert row["images_per_s"] == pytest.approx(1000 * row["batch"] / row["latency_ms"], rel=0.01)


def test_training_modes_and_report(tmp_path, capsys):
    report = tmp_path / "bench.md"
    argv = ["benchmark", "resnet20", "--kinds", "training", "--data", str(CIFAR10_ARCHIVE),
            "--train-batch-size", "8", "--steps", "2", "-o", str(report)]
    assert main(argv) == 0
    text = report.read_text()
    assert text in capsys.readouterr().out
    assert "Command: `keras-attn-zoo benchmark resnet20 --kinds training" in text
    rows = re.findall(r"^\| resnet20 \| training/(\w+) \| 8 \| ([\d.]+) \| ([\d.]+) \| (.+) \|$", text, re.M)
    assert [r[0] for r in rows] == list(benchmark.TRAINING_MODES)
    for _, step_ms, images_per_s, data in rows:
        assert float(images_per_s) == pytest.approx(8 * 1000 / float(step_ms), rel=0.02)
        assert data == "CIFAR-10 (JPEG copy, quality 75), train split, 16 images"


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        benchmark.inference("resnet20", batch_sizes=(0,))
    with pytest.raises(ValueError, match="epochs must be an integer of at least 2"):
        benchmark.training("resnet20", epochs=1)
    with pytest.raises(ValueError, match="Unknown training modes"):
        benchmark.training("resnet20", modes=("tf.data",))
    with pytest.raises(ValueError, match="Did you mean"):
        benchmark.inference("resnet21")
