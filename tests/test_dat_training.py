"""The DAT objective in the trainer, fine-tuning, explain and benchmark (TensorFlow backend;
the objective's values on every backend are in test_dat.py)."""

import csv
import json

import numpy as np
import pytest

from helpers import CIFAR10_ARCHIVE
from keras_attn_zoo import load
from keras_attn_zoo.cli import main

TERMS = ("l_cls", "siou_inner", "siou_last", "l_ac")


def test_train_with_dat_lowers_the_soft_ious_and_saves_the_bare_model(tmp_path, capsys):
    """A short run on 256 real CIFAR-10 images: the log has every term per epoch, the soft
    IoUs fall, L_cls stays finite, the record names the objective and its settings, and the
    weights load into the plain registry model."""
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--data", str(CIFAR10_ARCHIVE), "--epochs", "4", "--batch-size", "32",
            "--limit", "256", "--eval-limit", "64", "--output", str(out), "--verbose", "0",
            "--objective", "dat"]
    assert main(argv) == 0
    with open(out / "training_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(term in rows[0] and f"val_{term}" not in rows[0] for term in TERMS)
    first, last = ({k: float(r[k]) for k in ("loss", *TERMS)} for r in (rows[0], rows[-1]))
    assert last["siou_inner"] < first["siou_inner"] and last["siou_last"] < first["siou_last"]
    assert all(np.isfinite(float(r["l_cls"])) for r in rows)
    for r in rows:  # the logged loss is Eq. 9's sum of the logged terms (each an epoch mean)
        assert float(r["loss"]) == pytest.approx(sum(float(r[t]) for t in TERMS), rel=1e-4)
    record = json.loads((out / "resnet20.json").read_text())
    objective = record["training"]["objective"]
    assert objective["name"] == "dat" and objective["attention"] == "channel"
    assert (objective["inner_layer"], objective["last_layer"]) == ("stage2_block3_out", "stage3_block3_out")
    assert record["training"]["command"].endswith("--objective dat")
    model = load("resnet20", weights=str(out / "resnet20.weights.h5"))
    assert model.name == "resnet20" and len(model.layers) == len(load("resnet20").layers)


def test_dat_settings_on_the_command_line(tmp_path, capsys):
    from keras_attn_zoo.cli import _objective, build_parser

    args = build_parser().parse_args(["train", "resnet20", "--data", "x", "--objective", "dat",
                                      "--dat", "second_order=true", "--dat", "theta=0.5",
                                      "--dat", "attention=pixel"])
    assert _objective(args) == {"second_order": True, "theta": 0.5, "attention": "pixel"}
    bad = ["train", "resnet20", "--data", str(CIFAR10_ARCHIVE), "--output", str(tmp_path), "--objective", "dat",
           "--dat", "mask=soft"]
    assert main(bad) == 2
    assert "'soft'" in capsys.readouterr().err
    assert main(["train", "resnet20", "--data", "x", "--dat", "theta=1"]) == 2
    assert "--objective dat" in capsys.readouterr().err
    # TensorFlow refuses second order through training-mode BatchNormalization, before any data is read
    assert main(["train", "resnet20", "--data", str(CIFAR10_ARCHIVE), "--output", str(tmp_path / "so"),
                 "--objective", "dat", "--dat", "second_order=true", "--limit", "32", "--epochs", "1"]) == 2
    assert "KERAS_BACKEND=jax" in capsys.readouterr().err


def test_fine_tune_with_dat_records_the_objective(cifar_jpegs, tmp_path):
    from keras_attn_zoo import fine_tune

    result = fine_tune("resnet20", cifar_jpegs, "cifar10", output_dir=tmp_path, epochs=1, freeze_epochs=0,
                       batch_size=32, limit=64, verbose=0, objective="dat")
    assert result.record["objective"]["name"] == "dat"
    with open(tmp_path / "training_log.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert all(np.isfinite(float(row[t])) for t in TERMS)


def test_explain_draws_the_target_and_confusing_maps(tmp_path, capsys):
    from keras_attn_zoo.explain.discriminative import discriminative_attention

    out = tmp_path / "dat.png"
    assert main(["explain", "docs/images/cat.jpg", "--model", "resnet20", "--weights", "cifar10",
                 "--dat", "--class-index", "3", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "target cat" in text and "most confusing" in text and "soft IoU" in text
    from PIL import Image

    assert Image.open(out).size == (2000, 400)  # five 400-pixel panels
    model = load("resnet20", weights="cifar10")
    images = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    result = discriminative_attention(model, images, class_index=[0, 1, 2], batch_size=2)
    assert result.target.tolist() == [0, 1, 2] and not np.any(result.confusing == result.target)
    scores = model.predict(images, verbose=0)
    masked = np.where(np.eye(10, dtype=bool)[result.target], -np.inf, scores)
    np.testing.assert_array_equal(result.confusing, masked.argmax(-1))
    assert np.all((result.soft_iou_last >= 0) & (result.soft_iou_last <= 1))
    assert result.maps["target_inner"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="class_index must be in"):
        discriminative_attention(model, images, class_index=10)


def test_overlap_summary_is_the_mean_of_the_per_image_soft_ious_and_the_script_writes_its_table(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    from keras_attn_zoo.explain.discriminative import discriminative_attention, overlap_summary

    model = load("resnet20", weights="cifar10")
    images = np.random.default_rng(1).normal(size=(20, 32, 32, 3)).astype("float32")
    labels = np.arange(20) % 10
    whole = discriminative_attention(model, images, class_index=labels, batch_size=20)
    summary = overlap_summary(model, images, labels, batch_size=1, progress=True)  # twenty passes, one image each
    assert "20/20" in capsys.readouterr().out  # its progress bar, counted in images
    assert summary["images"] == 20 and summary["last_layer"] == "stage3_block3_out"
    assert summary["top1"] == pytest.approx(np.mean(whole.scores.argmax(-1) == labels))
    for key in ("soft_iou_inner", "soft_iou_last", "consistency"):
        values = getattr(whole, key)
        assert summary[key]["mean"] == pytest.approx(np.mean(values), rel=1e-5)
        assert summary[key]["sem"] == pytest.approx(np.std(values, ddof=1) / np.sqrt(20), rel=1e-4)
    with pytest.raises(ValueError, match="20 images but 3 labels"):
        overlap_summary(model, images, labels[:3])

    path = Path(__file__).resolve().parent.parent / "scripts" / "dat_overlap.py"
    spec = importlib.util.spec_from_file_location("dat_overlap_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "overlap.md"
    assert script.main(["resnet20", "--weights", "cifar10", "--data", str(CIFAR10_ARCHIVE), "--limit", "6",
                        "--batch-size", "4", "-o", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    (row,) = report["rows"]
    assert row["weights"] == "cifar10" and row["images"] == 6 and 0 <= row["soft_iou_last"]["mean"] <= 1
    text = out.read_text()
    assert text.split("\n")[2].startswith("Written by `python scripts/dat_overlap.py resnet20 --weights cifar10 ")
    assert f"| cifar10 | {100 * row['top1']:.2f}% | {row['soft_iou_inner']['mean']:.4f} ± " in text


def test_benchmark_objective_mode_smoke(capsys):
    """The objective's step-time cost against plain training (not timed: the rows are only
    checked for consistency); second order is skipped on TensorFlow and says so."""
    assert main(["benchmark", "resnet20", "--kinds", "objective", "--train-batch-size", "8", "--steps", "2",
                 "--rounds", "1"]) == 0
    text = capsys.readouterr().out
    assert "| `resnet20` | keras-tf | cross_entropy |" in text and "| 1.00x |" in text
    assert "| `resnet20` | keras-tf | dat |" in text
    from keras_attn_zoo import benchmark

    assert benchmark.objective("resnet20", modes=("dat_second_order",), batch_size=8, steps=2) == []
    assert "objective/dat_second_order skipped" in capsys.readouterr().out
    with pytest.raises(ValueError, match="'third_order'"):
        benchmark.objective("resnet20", modes=("third_order",))


def test_registry_names_the_dat_layers_and_the_papers_number():
    from keras_attn_zoo import get_spec
    from keras_attn_zoo.registry import PAPERS
    from keras_attn_zoo.training.dat import dat_model
    from keras_attn_zoo.training.evaluate import paper_errors

    assert get_spec("resnet110").dat_layers == ("stage2_block18_out", "stage3_block18_out")  # 16x16x32, 8x8x64
    assert get_spec("resnet18").dat_layers == ("stage3_block2_out", "stage4_block2_out")  # layer3, layer4
    assert get_spec("resnet50").dat_layers == ("stage3_block6_out", "stage4_block3_out")
    assert get_spec("vgg19_bn").dat_layers == ("stage4_4_relu", "stage5_4_relu")
    assert get_spec("abn_resnet101_multitask").dat_layers == ()
    (row,) = [r for r in get_spec("resnet110").results if r.paper == "dat"]
    assert (row.table, row.dataset, row.top1_error) == ("2", "cifar100", 23.89) and "A_ch" in row.note
    assert "Discriminative Attention" in PAPERS["dat"]
    assert paper_errors("resnet110", "cifar100") == "23.89% (DAT Table 2)"
    assert paper_errors("resnet110", "cifar10") == "5.97% (FANet Table I)"
    # overridable by name
    wrapper = dat_model(load("resnet20"), objective={"inner_layer": "stage2_block2_out", "last_layer": "stage3_block1_out"})
    out = wrapper.dat_outputs(np.zeros((1, 32, 32, 3), "float32"))
    assert (wrapper.dat_config.inner_layer, wrapper.dat_config.last_layer) == ("stage2_block2_out", "stage3_block1_out")
    assert out["maps"]["target_inner"].shape == (1, 16, 16) and out["maps"]["target_last"].shape == (1, 8, 8)
