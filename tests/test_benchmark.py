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
        assert row["cpu_steal_pct"] is None or 0 <= row["cpu_steal_pct"] <= 100
        assert row["images_per_s"] == pytest.approx(1000 * row["batch"] / row["latency_ms"], rel=0.01)


def test_training_modes_and_report(tmp_path, capsys):
    report = tmp_path / "bench.md"
    argv = ["benchmark", "resnet20", "--kinds", "training", "--data", str(CIFAR10_ARCHIVE),
            "--train-batch-size", "8", "--steps", "2", "-o", str(report)]
    assert main(argv) == 0
    text = report.read_text()
    assert text in capsys.readouterr().out
    assert "Command: `keras-attn-zoo benchmark resnet20 --kinds training" in text
    rows = re.findall(r"^\| resnet20 \| training/(\w+) \| 8 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+%|-) \| (.+) \|$",
                      text, re.M)
    assert [r[0] for r in rows] == list(benchmark.TRAINING_MODES)
    for _, step_ms, images_per_s, steal, data in rows:
        assert steal == "-" or 0 <= float(steal[:-1]) <= 100
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


def test_cpu_steal_is_the_share_of_ticks_taken_by_the_hypervisor(monkeypatch):
    # /proc/stat's cpu line: user nice system idle iowait irq softirq steal ...
    ticks = iter([[100, 0, 10, 50, 0, 0, 0, 40, 0, 0], [160, 0, 20, 70, 0, 0, 0, 50, 0, 0]])
    monkeypatch.setattr(benchmark, "_cpu_ticks", lambda: next(ticks))
    with benchmark._Steal() as steal:
        pass
    assert steal.percent == 10.0  # 10 steal ticks of 100
    monkeypatch.setattr(benchmark, "_cpu_ticks", lambda: None)  # no /proc/stat
    with benchmark._Steal() as steal:
        pass
    assert steal.percent is None
