"""scripts/train_set.py: one recipe for every run of the set, finished runs skipped."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("train_set", ROOT / "scripts" / "train_set.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_run_gets_the_same_recipe_and_finished_runs_are_skipped(tmp_path, capsys):
    script = _script()
    runs = tmp_path / "runs"
    (runs / "resnet20").mkdir(parents=True)
    (runs / "resnet20" / "resnet20.json").write_text(json.dumps({"model": "resnet20"}))
    args = ["--data", "cifar10-jpeg", "--runs", str(runs), "--recipe", "onecycle", "--epochs", "40",
            "--weight-decay", "1e-4", "--dry-run"]
    assert script.main(args) == 0
    out = capsys.readouterr().out
    assert "resnet20: finished" in out
    todo = script.commands(script.parse_args(args))
    assert [run for run, _, _ in todo] == [run for run, _, _ in script.RUNS][1:]
    recipe = ["--recipe", "onecycle", "--epochs", "40", "--weight-decay", "0.0001"]
    for run, log, argv in todo:
        i = argv.index("train")
        assert argv[i + 2:i + 4] == ["--data", "cifar10-jpeg"] and argv[i + 4:i + 10] == recipe, run
        assert argv[argv.index("--output") + 1] == str(runs.resolve() / run) and log == runs.resolve() / f"{run}.log"
    extras = {run: argv[argv.index("train") + 10:argv.index("--output")] for run, _, argv in todo}
    assert extras["resnet20_dat"] == ["--objective", "dat"] and extras["resnet20_seed1"] == ["--seed", "1"]
    assert extras["paya_resnet20"] == [] and extras["abn_resnet20"] == []
    assert extras["paya_resnet20_aux"] == ["--model-arg", "auxiliary_weight=0.3"]


def test_unknown_run_is_refused_with_the_set():
    script = _script()
    with pytest.raises(SystemExit, match="Unknown run.*'resnet21'.*the set is: resnet20, paya_resnet20"):
        script.main(["--data", "x", "--runs", "r", "--recipe", "onecycle", "--only", "resnet21", "--dry-run"])
