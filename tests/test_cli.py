import json
import os
import subprocess
import sys
from pathlib import Path

from keras_attn_zoo.cli import main


def test_list_and_info(capsys):
    assert main(["list", "fa_se_resnet*"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0].startswith("fa_se_resnet110") and "FA-SE-ResNet-110" in out[0]
    assert main(["info", "fa_resnet20", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 297_222 and info["paper_results"][0]["params_m"] == 0.297


def test_errors_are_messages_not_tracebacks(capsys):
    assert main(["info", "fa_resnet65"]) == 2
    assert "Did you mean: fa_resnet56" in capsys.readouterr().err


def test_gates(capsys):
    assert main(["gates", "fa_resnet20", "--batch", "2"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert "random initialisation" in lines[0]
    assert len(lines) == 9 and lines[1].startswith("stage1_block2_fa")


def test_cli_choices_equal_the_modules_that_define_them():
    from keras_attn_zoo import cli
    from keras_attn_zoo.benchmark import TRAINING_MODES
    from keras_attn_zoo.data.augment import AUGMENTATIONS
    from keras_attn_zoo.predict import PREDICTION_FORMATS
    from keras_attn_zoo.benchmark_suite import INFERENCE_SYSTEMS, TRAINING_SYSTEMS
    from keras_attn_zoo.training.distribute import STRATEGIES
    from keras_attn_zoo.training.recipes import RECIPES, SCHEDULES

    assert cli.RECIPE_NAMES == tuple(sorted(RECIPES))
    assert (cli.SCHEDULES, cli.STRATEGIES, cli.TRAINING_MODES) == (SCHEDULES, STRATEGIES, TRAINING_MODES)
    assert cli.AUGMENTATIONS == AUGMENTATIONS
    assert cli.PREDICTION_FORMATS == PREDICTION_FORMATS
    assert (cli.INFERENCE_SYSTEMS, cli.TRAINING_SYSTEMS) == (tuple(INFERENCE_SYSTEMS), tuple(TRAINING_SYSTEMS))


def test_info_reads_the_index_as_model_info_says(capsys):
    from keras_attn_zoo import model_info

    for name in ("fa_resnet20", "abn_resnet20"):
        assert main(["info", name.upper().replace("_", "-", 1), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(model_info(name)))


_NO_BACKEND = """
import sys
from pathlib import Path
import keras_attn_zoo
assert "keras" not in sys.modules, "import keras_attn_zoo imported keras"
from keras_attn_zoo import cli
cli.build_parser().format_help()
for command in (["list", "fa_*"], ["info", "resnet20"], ["info", "resnet20", "--json"]):
    assert cli.main(command) == 0
heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch", "numpy", "h5py") if m in sys.modules)
assert not heavy, f"the light commands imported {heavy}"
"""


def test_help_list_and_info_import_no_backend():
    result = subprocess.run([sys.executable, "-c", _NO_BACKEND], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    result = subprocess.run([sys.executable, "-m", "keras_attn_zoo.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "predict" in result.stdout and result.stderr == ""


def test_the_backends_native_start_up_lines_are_dropped_and_nothing_else():
    from keras_attn_zoo.cli import backend_chatter_filter

    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796126380.507941    2941 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1796126380.580658    2941 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n"
        "/x/y.py:3: UserWarning: a Python warning\n"
        "E0000 00:00:1796126380.580658    2941 cuda.cc:1] an error\n"
    )
    assert backend_chatter_filter(text, 3) == "/x/y.py:3: UserWarning: a Python warning\n"
    assert backend_chatter_filter(text, 1).endswith("a Python warning\nE0000 00:00:1796126380.580658    2941 cuda.cc:1] an error\n")


_PREDICT_FIRST = """
import sys
from pathlib import Path
from keras_attn_zoo import cli
assert cli.main(["predict", "docs/images/cat.jpg", "--model", "fa_resnet20", "--weights", "cifar10"]) == 0
skipped = [m for m in ("jax", "matplotlib") if m in sys.modules]
assert not skipped, f"the backend's start-up imported {skipped}"
assert cli.main(["explain", "docs/images/cat.jpg", "--model", "fa_resnet20", "--weights", "cifar10",
                 "-o", sys.argv[1]]) == 0  # matplotlib imports again once the backend has started
"""


def test_predict_starts_the_backend_quietly_and_without_its_optional_extras(tmp_path):
    """A fresh process, as a user runs it: no TensorFlow start-up lines on stderr, jax and matplotlib
    not imported for predict (tf.lite and Keras would pull them in), explain still draws."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    env["KERAS_HOME"] = str(tmp_path)  # no keras.json: the TensorFlow backend
    result = subprocess.run([sys.executable, "-c", _PREDICT_FIRST, str(tmp_path / "cat.png")], capture_output=True,
                            text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("docs/images/cat.jpg: cat ") and (tmp_path / "cat.png").is_file()
    assert result.stderr == "", result.stderr[-3000:]


def test_a_missing_matplotlib_names_the_picture_and_the_extra_before_any_work(tmp_path, capsys, monkeypatch):
    """Without matplotlib, `evaluate FILE.keras -o PNG` stops at once (the file is not even read)
    and says which picture needs it and what to install; explain's pictures say theirs."""
    import pytest

    from keras_attn_zoo.explain.plots import require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"^matplotlib is needed for pictures of attention: pip install 'keras_attn_zoo\[viz\]'\.$"):
        require_matplotlib()
    missing = tmp_path / "never_read.keras"
    assert main(["evaluate", str(missing), "--data", str(tmp_path), "-o", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib is needed for the confusion-matrix picture (-o): pip install 'keras_attn_zoo[viz]'." in err
    assert "never_read" not in err and not (tmp_path / "c.png").exists()
