"""`keras-attn-zoo benchmark`: the interleaving, the report's arithmetic on a hand-made
measurement, the CPU shares, the PyTorch references' logits, and one small real run."""

import json
import re

import numpy as np
import pytest

import keras

import keras_attn_zoo as zoo
from helpers import CIFAR10_ARCHIVE
from keras_attn_zoo import benchmark, benchmark_report, benchmark_suite, cpuload, torch_reference
from keras_attn_zoo.benchmark_suite import Cell, Settings
from keras_attn_zoo.cli import main
from keras_attn_zoo.convert.to_torch import reference_config, torch_state_dict


def test_inference_rows_are_consistent():
    rows = benchmark.inference("resnet20", batch_sizes=(1, 4), repeats=3, warmup=1)
    assert [(r["model"], r["kind"], r["batch"]) for r in rows] == [("resnet20", "inference", 1), ("resnet20", "inference", 4)]
    for row in rows:  # images/s is the batch over the median call, rounded
        assert row["latency_ms"] > 0
        assert row["cpu_steal_pct"] is None or 0 <= row["cpu_steal_pct"] <= 100
        assert row["images_per_s"] == pytest.approx(1000 * row["batch"] / row["latency_ms"], rel=0.01)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        benchmark.inference("resnet20", batch_sizes=(0,))
    with pytest.raises(ValueError, match="epochs must be an integer of at least 2"):
        benchmark.training("resnet20", epochs=1)
    with pytest.raises(ValueError, match="Unknown training modes"):
        benchmark.training("resnet20", modes=("tf.data",))
    with pytest.raises(ValueError, match="Did you mean"):
        benchmark.inference("resnet21")
    with pytest.raises(ValueError, match=r"Unknown systems \['tensorrt'\]; expected some of \['keras-tf'"):
        benchmark_suite.plan(["resnet20"], systems=["tensorrt"])
    with pytest.raises(ValueError, match="rounds must be a positive integer, got 0"):
        benchmark_suite.schedule([Cell("peak")], 0)

def test_the_command_line_refuses_bad_settings_before_measuring(capsys):
    assert main(["benchmark", "resnet20", "--model-batch-sizes", "resnet20=one"]) == 2
    assert "--model-batch-sizes takes NAME=B1,B2 (e.g. abn_resnet152=1,8); got 'resnet20=one'" in capsys.readouterr().err
    assert main(["benchmark"]) == 2
    assert "benchmark needs model names (or --preset docs, or --from-json FILE)" in capsys.readouterr().err
    assert main(["benchmark", "resnet21"]) == 2
    assert "Unknown model name 'resnet21'. Did you mean: resnet32, resnet20" in capsys.readouterr().err


def test_cpu_shares_are_of_all_ticks_and_others_exclude_the_measured_processes(monkeypatch):
    # /proc/stat's cpu line: user nice system idle iowait irq softirq steal ...
    start = [100, 0, 10, 50, 0, 0, 0, 40, 0, 0]
    end = [160, 30, 20, 70, 0, 0, 0, 50, 0, 0]  # 130 ticks: 70 busy (60 user + 10 system), 30 nice, 10 steal
    monkeypatch.setattr(cpuload.os, "sysconf", lambda name: 100)  # 100 ticks per second
    shares = cpuload.shares(start, end, own_cpu_seconds=0.2)  # the measured processes: 20 ticks
    assert shares == {"steal": round(1000 / 130, 1), "nice": round(3000 / 130, 1), "busy": round(7000 / 130, 1),
                      "others_busy": round(5000 / 130, 1)}
    assert cpuload.shares(start, None)["steal"] is None  # no /proc/stat
    ticks = iter([start, end])
    monkeypatch.setattr(cpuload, "cpu_ticks", lambda: next(ticks))
    with benchmark._Steal() as steal:
        pass
    assert steal.percent == round(1000 / 130, 1)


def test_rounds_interleave_the_cells_and_every_cell_is_its_own_process():
    cells = benchmark_suite.plan(["resnet20", "fa_resnet20"], systems=["keras-tf", "torch-reference"],
                                 kinds=("inference", "training"), training_models=("resnet20",))
    assert [c.label for c in cells] == [
        "peak", "inference resnet20 keras-tf", "inference resnet20 torch-reference",
        "training resnet20 keras-tf model", "training resnet20 torch-reference model",
        "inference fa_resnet20 keras-tf", "inference fa_resnet20 torch-reference"]
    a, b, c = cells[:3]
    assert benchmark_suite.schedule([a, b, c], 2) == [(1, a), (1, b), (1, c), (2, a), (2, b), (2, c)]

    calls = []

    def runner(task, backend, timeout, log):  # stands for a fresh worker process
        calls.append((task["task"], task.get("model"), task.get("system"), backend))
        if task["task"] == "prepare":
            has_reference = task["model"] == "resnet20"
            return {"model": task["model"], "input_shape": [32, 32, 3], "macs": 1, "params": 1, "weights": "w.h5",
                    "files": {}, "checks": {}, "reference": {"config": {"classes": 10} if has_reference else None,
                                                             "description": "test" if has_reference else "none: test"}}
        if task.get("system") == "keras-jax":
            raise RuntimeError("the inference worker failed (exit 1): boom")
        peak = {"gflops": 1.0, "size": 64, "libraries": {"numpy": 1.0}}
        return peak if task["task"] == "peak" else {"times": {"1": [0.1]}}

    settings = Settings(models=("resnet20", "fa_resnet20"), systems=("keras-jax", "torch-reference"),
                        kinds=("inference",), batch_sizes=(1,), rounds=2)
    measurement = benchmark_suite.run(settings, "keras-attn-zoo benchmark ...", log=lambda *a: None, runner=runner)
    one_round = [("peak", None, None, "tensorflow"), ("inference", "resnet20", "keras-jax", "jax"),
                 ("inference", "resnet20", "torch-reference", "tensorflow"), ("inference", "fa_resnet20", "keras-jax", "jax")]
    assert calls == [("prepare", "resnet20", None, "tensorflow"), ("prepare", "fa_resnet20", None, "tensorflow"),
                     *one_round, *one_round]
    skipped = [e for e in measurement["results"] if "skipped" in e]
    assert [(e["round"], e["model"], e["skipped"]) for e in skipped] == [(1, "fa_resnet20", "no reference (none: test)"),
                                                                         (2, "fa_resnet20", "no reference (none: test)")]
    failed = [e["error"] for e in measurement["results"] if "error" in e]
    assert failed == ["the inference worker failed (exit 1): boom"] * 4
    assert all(set(e["cpu"]) == {"steal", "nice", "busy", "others_busy"} for e in measurement["results"] if "cpu" in e)


def test_a_failed_export_skips_its_system_and_says_why():
    def runner(task, backend, timeout, log):
        if task["task"] == "prepare":
            return {"model": task["model"], "input_shape": [32, 32, 3], "macs": 1, "params": 1, "weights": "w.h5",
                    "files": {"onnxruntime": "m.onnx"}, "reference": {"config": None, "description": "none: test"},
                    "checks": {"tflite": {"ok": False, "error": "needs operations that are not TFLite built-ins"}}}
        peak = {"gflops": 1.0, "size": 64, "libraries": {"numpy": 1.0}}
        return peak if task["task"] == "peak" else {"times": {"1": [0.1]}}

    settings = Settings(models=("resnet20",), systems=("onnxruntime", "tflite"), kinds=("inference",), batch_sizes=(1,), rounds=1)
    measurement = benchmark_suite.run(settings, "", log=lambda *a: None, runner=runner)
    assert [e.get("skipped") for e in measurement["results"]] == [
        None, None, "no file: the export failed (needs operations that are not TFLite built-ins)"]
    text = benchmark_report.markdown(measurement)
    assert "tflite: export FAILED (needs operations that are not TFLite built-ins)" in text
    assert "| `resnet20` | tflite | 1 | no file: the export failed (needs operations that are not TFLite built-ins) |" in text


def _fake_measurement():
    """Two models, two systems, two rounds, made-up but exact timings."""
    def inference(model, system, r, b1, b8, steal=2.0):
        return {"round": r, "kind": "inference", "model": model, "system": system, "mode": "",
                "result": {"times": {"1": b1, "8": b8}},
                "cpu": {"steal": steal, "nice": 50.0, "busy": 60.0, "others_busy": 10.0}}

    results = [
        {"round": 1, "kind": "peak", "model": "", "system": "", "mode": "", "result": {"gflops": 80.0, "size": 2048, "libraries": {"numpy": 80.0}}},
        inference("resnet20", "keras-tf", 1, [0.010, 0.012, 0.011], [0.040]),
        inference("resnet20", "torch-reference", 1, [0.020], [0.100]),
        inference("se_resnet20", "keras-tf", 1, [0.013], [0.050]),
        {"round": 1, "kind": "training", "model": "resnet20", "system": "keras-tf", "mode": "model",
         "result": {"step_seconds": [0.5]}, "cpu": {"steal": 0.0, "nice": 0.0, "busy": 10.0, "others_busy": 0.0}},
        {"round": 1, "kind": "training", "model": "resnet20", "system": "torch-reference", "mode": "model",
         "result": {"step_seconds": [0.9, 1.1]}, "cpu": {"steal": 0.0, "nice": 0.0, "busy": 10.0, "others_busy": 0.0}},
        {"round": 2, "kind": "peak", "model": "", "system": "", "mode": "", "result": {"gflops": 100.0, "size": 2048, "libraries": {"numpy": 60.0, "tensorflow": 100.0}}},
        inference("resnet20", "keras-tf", 2, [0.014], [0.060], steal=4.0),
        inference("resnet20", "torch-reference", 2, [0.030], [0.080]),
        inference("se_resnet20", "keras-tf", 2, [0.015], [0.070]),
        {"round": 2, "kind": "inference", "model": "se_resnet20", "system": "torch-reference", "mode": "", "skipped": "no reference (none)"},
    ]
    settings = {**vars(Settings(models=("resnet20", "se_resnet20"))), "batch_sizes": (1, 8), "rounds": 2, "train_batch_size": 16,
                "steps": 2, "repeats": 3, "warmup": 1}
    info = lambda macs, params: {"macs": macs, "params": params, "checks": {}, "reference": {"description": "ref"}}  # noqa: E731
    return {"command": "keras-attn-zoo benchmark resnet20 se_resnet20", "started": "2026-12-01 10:00 UTC",
            "finished": "2026-12-01 11:00 UTC", "machine": {"cpu": "Test CPU", "cores": 2, "simd": ["avx2"],
                                                            "virtual_machine": True, "kernel": "6.1", "nice": 0},
            "versions": {"python": "3.11"}, "settings": settings, "load_before": None,
            "models": {"resnet20": info(40_000_000, 1000), "se_resnet20": info(44_000_000, 1100)}, "results": results}


def test_the_report_computes_every_number_from_the_timed_calls(tmp_path):
    measurement = json.loads(json.dumps(_fake_measurement()))  # as read back from --json
    text = benchmark_report.markdown(measurement)
    # resnet20 on keras-tf at batch 1: round medians 11 and 14 ms -> median 12.5 (11.0-14.0);
    # 80 images/s, 2 * 40M * 80 = 6.4 GFLOP/s, 6.4% of the best peak (100); the reference's
    # round medians 20 and 30 ms -> 25 ms, 40 images/s -> 2.00x
    assert "| `resnet20` | keras-tf | 1 | 12.5 (11.0-14.0) | 80.0 | 6.4 | 6% | 2.00x | 3% / 10% |" in text
    assert "| `resnet20` | torch-reference | 8 | 90.0 (80.0-100.0) | 88.9 | 7.1 | 7% | 1.00x | 2% / 10% |" in text
    assert "| `se_resnet20` | keras-tf | 8 | 60.0 (50.0-70.0) | 133.3 | 11.7 | 12% | - | 2% / 10% |" in text
    assert "| `se_resnet20` | torch-reference | 1 | no reference (none) | | | | | |" in text
    # training: 16 images per 0.5 s step; 3 * 2 * 40M * 32 = 7.68 GFLOP/s; the reference's mean step 1.0 s
    assert "| `resnet20` | keras-tf | model | 500.0 (500.0-500.0) | 32.0 | 7.7 | 8% | 2.00x | 0% / 0% |" in text
    # overhead: FLOPs +10%, params +10%; latency at batch 1 14 / 12.5 ms -> +12.0% (2 points over),
    # at batch 8 60 / 50 ms -> +20.0% (10 points over: marked)
    assert "| `se_resnet20` | `resnet20` | +10.0% | +10.0% | keras-tf | 1 | +12.0% | +2.0 points |" in text
    assert "| `se_resnet20` | `resnet20` | +10.0% | +10.0% | keras-tf | 8 | +20.0% | +10.0 points **over** |" in text
    assert "Peak: a 2048x2048 float32 matrix product, measured in every round on the same cores: 100.0 GFLOP/s at best" in text
    assert "(rounds 80.0-100.0, median 90.0; the fastest of numpy 60, tensorflow 100 GFLOP/s in the best round)" in text
    assert text.startswith("Written by `keras-attn-zoo benchmark resnet20 se_resnet20` from 2026-12-01 10:00 UTC to "
                           "2026-12-01 11:00 UTC on 2 CPU cores (Test CPU, AVX2, a virtual machine)")
    assert "steal median 2% (max 4%)" in text

    # the report goes between the speed markers; the start-up section stays as it was
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n## Start-up time\n\n<!-- startup:start -->\nkept\n<!-- startup:end -->\n")
    benchmark_report.write_section(page, "first")
    benchmark_report.write_section(page, text)
    written = page.read_text()
    assert written.count(benchmark_report.START) == 1 and "first" not in written and text in written
    assert "<!-- startup:start -->\nkept\n<!-- startup:end -->" in written
    # and the command line writes the same report from the saved measurement
    saved = tmp_path / "m.json"
    saved.write_text(json.dumps(measurement))
    assert main(["benchmark", "--from-json", str(saved), "-o", str(page)]) == 0
    assert page.read_text() == written


def test_a_second_section_is_written_between_its_own_markers(tmp_path, capsys):
    saved, page = tmp_path / "m.json", tmp_path / "benchmarks.md"
    saved.write_text(json.dumps(_fake_measurement()))
    page.write_text("# Benchmarks\n\n## Speed\n\n<!-- speed:start -->\nkept\n<!-- speed:end -->\n")
    assert main(["benchmark", "--from-json", str(saved), "-o", str(page), "--section", "trainer-speed"]) == 0
    text = page.read_text()
    assert "<!-- speed:start -->\nkept\n<!-- speed:end -->" in text
    assert "\n## Trainer speed\n\n<!-- trainer-speed:start -->\nWritten by `keras-attn-zoo benchmark" in text
    assert text.rstrip().endswith("<!-- trainer-speed:end -->")
    with pytest.raises(SystemExit):
        main(["benchmark", "--from-json", str(saved), "-o", str(page), "--section", "a -->b"])
    assert "a section name is letters, digits and dashes" in capsys.readouterr().err


def test_training_steps_are_summarised_by_their_median_in_new_measurements():
    """A step after which Keras made a new data iterator can stall by seconds: new measurements
    keep every step and take the median; saved ones, with one mean per Keras cell, stay means."""
    measurement = json.loads(json.dumps(_fake_measurement()))
    for entry in measurement["results"]:
        if entry["kind"] == "training" and entry["system"] == "torch-reference":
            entry["result"]["step_seconds"] = [0.9, 1.0, 4.1]  # one stalled step
    assert benchmark_report.step_statistic(measurement) == "mean"
    rows = {r["system"]: r for r in benchmark_report.training_rows(measurement)}
    assert rows["torch-reference"]["seconds"][0] == pytest.approx(2.0)  # the mean, as the page of the old run says
    assert "the mean of" in benchmark_report.markdown(measurement)
    measurement["step_statistic"] = "median"
    rows = {r["system"]: r for r in benchmark_report.training_rows(measurement)}
    assert rows["torch-reference"]["seconds"][0] == pytest.approx(1.0)
    assert rows["keras-tf"]["vs_reference"] == pytest.approx(2.0)  # 0.5 s against the median 1.0 s
    assert "**Training** (batch 16, the median of" in benchmark_report.markdown(measurement)


def test_the_objective_runs_on_tensorflow_and_jax_each_against_its_own_plain_step():
    cells = benchmark_suite.plan(["resnet20"], kinds=("objective",))
    assert [(c.system, c.mode) for c in cells[1:]] == [
        ("keras-tf", "cross_entropy"), ("keras-tf", "dat"),
        ("keras-jax", "cross_entropy"), ("keras-jax", "dat"), ("keras-jax", "dat_second_order")]
    measurement = json.loads(json.dumps(_fake_measurement()))
    cpu = {"steal": 0.0, "nice": 0.0, "busy": 10.0, "others_busy": 0.0}
    measurement["step_statistic"] = "median"
    measurement["results"] = [
        {"round": 1, "kind": "objective", "model": "resnet20", "system": system, "mode": mode,
         "result": {"step_seconds": [seconds]}, "cpu": cpu}
        for system, mode, seconds in (("keras-tf", "cross_entropy", 1.0), ("keras-tf", "dat", 2.5),
                                      ("keras-jax", "cross_entropy", 2.0), ("keras-jax", "dat", 3.0),
                                      ("keras-jax", "dat_second_order", 5.0))]
    ratios = {(r["system"], r["mode"]): r["vs_reference"] for r in benchmark_report.training_rows(measurement, "objective")}
    assert ratios == {("keras-tf", "cross_entropy"): 1.0, ("keras-tf", "dat"): 0.4, ("keras-jax", "cross_entropy"): 1.0,
                      ("keras-jax", "dat"): pytest.approx(2 / 3), ("keras-jax", "dat_second_order"): 0.4}


def test_a_small_real_objective_measurement():
    rows = benchmark.objective("resnet20", batch_size=4, steps=2, epochs=2, modes=("cross_entropy", "dat"))
    assert [r["kind"].split(",")[0] for r in rows] == ["objective/cross_entropy", "objective/dat"]
    assert len(rows[1]["step_seconds"]) == 2 and rows[1]["ratio"] == pytest.approx(rows[1]["step_ms"] / rows[0]["step_ms"], rel=0.02)


def test_the_epoch_timer_leaves_out_the_warm_up_epoch_and_takes_the_median_step():
    timer = benchmark._EpochTimer()
    timer.steps = [[5.0, 0.2], [4.0, 0.2, 0.3], [0.2, 0.25]]  # warm-up (tracing), then a stalled first step
    steps, median = timer.timed_steps()
    assert steps == [4.0, 0.2, 0.3, 0.2, 0.25] and median == pytest.approx(0.25)


def test_the_trainer_mode_runs_the_trainer_on_real_images():
    """The trainer itself: its epochs as its log times them, validation on a fifth as many test
    images; it needs a data set."""
    with pytest.raises(ValueError, match="trainer mode runs the trainer itself.*give data"):
        benchmark.training("resnet20", modes=("trainer",))
    (row,) = benchmark.training("resnet20", data=str(CIFAR10_ARCHIVE), batch_size=8, steps=2, epochs=2, modes=("trainer",))
    assert row["kind"] == "training/trainer" and row["batch"] == 8 and row["step_ms"] > 0
    assert row["images_per_s"] == pytest.approx(8000 / row["step_ms"], rel=0.02)
    assert row["data"] == ("CIFAR-10 (JPEG copy, quality 75), train split, 16 images (validation: CIFAR-10 "
                           "(JPEG copy, quality 75), test split, 3 images)")


def test_recheck_replaces_the_checks_and_keeps_the_timings(capsys):
    measurement = json.loads(json.dumps(_fake_measurement()))
    measurement["settings"]["systems"], measurement["settings"]["kinds"] = ["onnxruntime"], ["inference"]
    results = json.dumps(measurement["results"])
    tasks = []

    def runner(task, backend, timeout, log):
        tasks.append((task["task"], task["model"], task["systems"], backend))
        return {"checks": {"onnxruntime": {"ok": True, "criterion": "new", "samples": "16", "max_abs_diff": 1e-6,
                                           "top1_agreement": 1.0}}}

    benchmark_suite.recheck(measurement, log=lambda *a: None, runner=runner)
    assert tasks == [("prepare", "resnet20", ["onnxruntime"], "tensorflow"), ("prepare", "se_resnet20", ["onnxruntime"], "tensorflow")]
    assert json.dumps(measurement["results"]) == results
    assert measurement["models"]["resnet20"]["checks"]["onnxruntime"]["criterion"] == "new"
    text = benchmark_report.markdown(measurement)
    assert f"Checks: the exports were made and checked again on {measurement['rechecked']['at']}" in text
    assert "onnxruntime: ok (new, max diff 1e-06, top-1 agreement 100%)" in text
    assert main(["benchmark", "resnet20", "--recheck"]) == 2
    assert "--recheck re-exports the models of a saved measurement: give it with --from-json FILE" in capsys.readouterr().err


def test_plain_twins_are_the_names_without_the_mechanism():
    names = {"resnet20", "fa_se_resnet20", "abn_resnet20", "abn_resnet56"}
    assert benchmark_report.plain_twin("fa_se_resnet20", names) == "resnet20"
    assert benchmark_report.plain_twin("abn_resnet20", names) == "resnet20"
    assert benchmark_report.plain_twin("abn_resnet56", names) is None  # resnet56 not benchmarked


def _random_batchnorm(model, seed=0):
    """BatchNorm statistics and scales away from their initial 0 / 1, so that each matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(lo, hi, w.shape).astype("float32") for w, (lo, hi) in
                               zip(layer.get_weights(), ((0.5, 1.5), (-0.2, 0.2), (-0.2, 0.2), (0.5, 1.5)))])
    return model


@pytest.mark.parametrize("name", ["resnet20", "se_resnet20", "abn_resnet20"])
def test_the_torch_reference_computes_our_logits_with_our_weights(name):
    model = _random_batchnorm(zoo.load(name, classifier_activation=None))
    config, description = reference_config(model, name)
    module = torch_reference.load_numpy_state(torch_reference.build(config), torch_state_dict(model, name))
    x = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    ours = np.asarray(model(x, training=False))
    np.testing.assert_allclose(torch_reference.logits(module.eval(), x), ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())
    expected = {"resnet20": ("CifarResNet", 3, None), "se_resnet20": ("CifarResNet", 3, 4)}
    if name in expected:  # FANet's 3x3 projection shortcuts, Keras' BN epsilon, SE r = 4
        assert (config["module"], config["shortcut_kernel"], config["se_ratio"]) == expected[name]
        assert config["eps"] == pytest.approx(1e-3)
    else:  # the ABN authors' module, the converter tests' own
        assert config == {"module": "ABNResNet", "block": "basic", "counts": [3, 3, 3], "classes": 10, "imagenet": False}
        assert "converter tests" in description


def test_models_without_a_reference_say_why():
    for name, why in (("fa_resnet20", "FANet's authors published no code"), ("paya_resnet20", "attend-and-rectify")):
        config, description = reference_config(zoo.load(name), name)
        assert config is None and description.startswith("none: ") and why in description


def test_a_small_real_run_of_every_kind_of_system(tmp_path, capsys):
    """resnet20 in one round: Keras on TensorFlow, the ONNX file, the PyTorch reference, and a
    training step of each of Keras and the reference, every cell a fresh process."""
    argv = ["benchmark", "resnet20", "--systems", "keras-tf", "onnxruntime", "torch-reference", "--rounds", "1",
            "--batch-sizes", "1", "2", "--repeats", "2", "--warmup", "1", "--train-batch-size", "4", "--steps", "1",
            "--threads", "1", "--json", str(tmp_path / "m.json"), "-o", str(tmp_path / "speed.md")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    measurement = json.loads((tmp_path / "m.json").read_text())
    info = measurement["models"]["resnet20"]
    assert info["macs"] == zoo.model_info("resnet20")["macs"]
    assert info["checks"]["onnxruntime"]["ok"] and info["checks"]["torch-reference"]["ok"]
    assert [e["kind"] + " " + e["system"] for e in measurement["results"]] == [
        "peak ", "inference keras-tf", "inference onnxruntime", "inference torch-reference",
        "training keras-tf", "training torch-reference"]
    assert all("result" in e for e in measurement["results"]), [e.get("error") for e in measurement["results"]]
    for system in ("keras-tf", "onnxruntime", "torch-reference"):
        rows = re.findall(rf"^\| `resnet20` \| {system} \| ([12]) \| ([\d.]+) \(", out, re.M)
        assert [r[0] for r in rows] == ["1", "2"]
    assert "Command" not in out and "Written by `keras-attn-zoo benchmark resnet20 --systems" in out
    assert (tmp_path / "speed.md").read_text().count(benchmark_report.START) == 1


def test_the_recorded_command_leaves_out_the_scratch_folder(monkeypatch, tmp_path, capsys):
    """--workdir says where scratch files go (often /tmp): the page's command is what a user types."""
    seen = {}

    def fake_run(settings, command, workdir=None):
        seen["command"], seen["workdir"] = command, workdir
        return json.loads(json.dumps(_fake_measurement()))

    monkeypatch.setattr(benchmark_suite, "run", fake_run)
    assert main(["benchmark", "resnet20", "--rounds", "1", "--workdir", str(tmp_path / "files")]) == 0
    assert seen == {"command": "keras-attn-zoo benchmark resnet20 --rounds 1", "workdir": str(tmp_path / "files")}
