"""PAYA (Attend-and-Rectify) layers against the spec's equations, on hand-made tensors."""

import numpy as np
import pytest

import keras
from keras import ops

from helpers import run_layer_serialization_test
from keras_attn_zoo.layers import PayaAggregation, PayaGate, PayaModule, head_diversity


def np_(t):
    return ops.convert_to_numpy(t)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.fixture
def z():
    return np.random.default_rng(3).normal(size=(3, 6, 4, 5)).astype("float32")


def conv3x3_same(x, kernel):
    """Plain NumPy 3x3 'same' convolution (no bias): (B, h, w, c) x (3, 3, c, f)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros((*x.shape[:3], kernel.shape[-1]), "float64")
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy:dy + h, dx:dx + w, :] @ kernel[dy, dx]
    return out


@pytest.mark.multibackend
def test_module_equations(z):
    classes, heads = 3, 2
    module = PayaModule(classes, heads)
    logits, masks, gates = (np_(t) for t in module(z))
    assert logits.shape == (3, classes) and masks.shape == (3, 6, 4, heads) and gates.shape == (3, heads)
    np.testing.assert_allclose(masks.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(gates.sum(axis=-1), 1.0, rtol=1e-5)
    # the spec's Section 1, step by step, in NumPy
    a = conv3x3_same(z, np_(module.attention_conv.kernel)).reshape(3, -1, heads)
    m = softmax(a, axis=1)
    np.testing.assert_allclose(masks.reshape(3, -1, heads), m, rtol=1e-4, atol=1e-6)
    o = conv3x3_same(z, np_(module.output_conv.kernel)).reshape(3, -1, heads, classes)  # head-major
    head_logits = np.einsum("bnh,bnhc->bhc", m, o)
    s = np.einsum("bnh,bnh->bh", m, conv3x3_same(z, np_(module.gate_conv.kernel)).reshape(3, -1, heads))
    g = softmax(np.tanh(s))
    np.testing.assert_allclose(gates, g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logits, np.einsum("bh,bhc->bc", g, head_logits), rtol=1e-4, atol=1e-5)


@pytest.mark.multibackend
def test_module_convs_are_bias_free_and_untruncated_kaiming():
    module = PayaModule(10, 4)
    module.build((None, 8, 8, 64))
    assert [w.shape for w in module.weights] == [(3, 3, 64, 4), (3, 3, 64, 40), (3, 3, 64, 4)]
    kernel = np_(module.output_conv.kernel)
    std = np.sqrt(2 / (9 * 64))
    assert abs(kernel.std() / std - 1) < 0.05
    assert np.abs(kernel).max() > 2.5 * std  # a truncated normal stops at 2 std


@pytest.mark.multibackend
def test_one_head_gives_zero_regulariser(z):
    module = PayaModule(3, heads=1)
    _, masks, _ = module(z)
    assert float(np_(head_diversity(masks))) == 0.0


@pytest.mark.multibackend
def test_two_head_regulariser_by_hand():
    # batch 1, 2x4 map, two heads: pooled 2x2 -> 1x2 positions per head
    m1 = np.array([[0.1, 0.2, 0.3, 0.0], [0.1, 0.1, 0.1, 0.1]])
    m2 = np.array([[0.0, 0.0, 0.0, 0.5], [0.0, 0.5, 0.0, 0.0]])
    masks = np.stack([m1, m2], -1)[None].astype("float32")  # (1, 2, 4, 2)
    p1 = np.array([(0.1 + 0.2 + 0.1 + 0.1) / 4, (0.3 + 0.0 + 0.1 + 0.1) / 4])
    p2 = np.array([(0.0 + 0.0 + 0.0 + 0.5) / 4, (0.0 + 0.5 + 0.0 + 0.0) / 4])
    cross = p1 @ p2  # G[0, 1] = G[1, 0]
    expected = (2 * cross**2) / 4  # mean over the 1 * 2 * 2 entries, diagonal zeroed
    np.testing.assert_allclose(float(np_(head_diversity(masks))), expected, rtol=1e-6)


@pytest.mark.multibackend
def test_regulariser_is_added_in_training_only(z):
    module = PayaModule(3, 2, diversity_weight=0.5)
    _, masks, _ = module(z)
    assert not module.losses
    module(z, training=True)
    assert len(module.losses) == 1
    np.testing.assert_allclose(np_(module.losses[0]), 0.5 * np_(head_diversity(masks)), rtol=1e-6)
    quiet = PayaModule(3, 2, diversity_weight=0.0)
    quiet(z, training=True)
    assert not quiet.losses


@pytest.mark.multibackend
@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
def test_gate(mode):
    f = np.random.default_rng(0).normal(size=(5, 16)).astype("float32")
    gate = PayaGate(4, mode=mode)
    w = np_(gate(f, training=True))
    assert w.shape == (5, 4)
    gamma = np.tanh(_batch_norm(f @ np_(gate.dense.kernel)))
    expected = softmax(gamma) if mode == "softmax" else 1 / (1 + np.exp(-gamma))
    np.testing.assert_allclose(w, expected, rtol=1e-4, atol=1e-6)
    if mode == "softmax":
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert not gate.dense.use_bias
    assert gate.bn.momentum == 0.9 and gate.bn.epsilon == 1e-5


def _batch_norm(x, eps=1e-5):
    return (x - x.mean(0)) / np.sqrt(x.var(0) + eps)


@pytest.mark.multibackend
@pytest.mark.parametrize("mode", ["softmax", "sigmoid"])
def test_aggregation_is_the_weighted_log_softmax_sum(mode):
    rng = np.random.default_rng(2)
    logits = [rng.normal(size=(4, 5)).astype("float32") * 3 for _ in range(3)]
    w = softmax(rng.normal(size=(4, 3))).astype("float32")
    if mode == "sigmoid":
        w = (1 / (1 + np.exp(-rng.normal(size=(4, 3))))).astype("float32")
    out = np_(PayaAggregation(mode)([w, *logits]))
    expected = sum(w[:, i:i + 1] * log_softmax(logits[i]) for i in range(3))
    if mode == "sigmoid":
        expected = expected / (1e-6 + w.sum(-1, keepdims=True))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.multibackend
def test_layers_serialize(z):
    run_layer_serialization_test(PayaModule(3, 2, diversity_weight=1e-2), z)
    run_layer_serialization_test(PayaGate(3, mode="sigmoid"), z.reshape(3, -1))
    logits = [z[:, 0, 0, :], z[:, 1, 0, :]]
    run_layer_serialization_test(PayaAggregation("sigmoid", auxiliary_weight=0.5), [softmax(z[:, 0, 0, :2]), *logits])
    config = PayaModule(7, 3, diversity_weight=0.25).get_config()
    assert (config["classes"], config["heads"], config["diversity_weight"]) == (7, 3, 0.25)


@pytest.mark.multibackend
def test_compute_output_shape():
    assert PayaModule(10, 4).compute_output_shape((None, 8, 8, 64)) == [(None, 10), (None, 8, 8, 4), (None, 4)]
    assert PayaGate(4).compute_output_shape((None, 64)) == (None, 4)
    assert PayaAggregation().compute_output_shape([(None, 3), (None, 10), (None, 10), (None, 10)]) == (None, 10)
    inputs = keras.Input((8, 8, 16))
    outs = PayaModule(10, 2)(inputs)
    assert [tuple(t.shape) for t in outs] == [(None, 10), (None, 8, 8, 2), (None, 2)]


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: PayaModule(0), "classes must be a positive integer, got 0"),
        (lambda: PayaModule(10, heads=2.5), "heads must be a positive integer, got 2.5"),
        (lambda: PayaModule(10, diversity_weight=-1), "diversity_weight must be a number >= 0, got -1"),
        (lambda: PayaGate(4, mode="relu"), "mode must be one of .* got 'relu'"),
        (lambda: PayaAggregation(mode="max"), "got 'max'"),
        (lambda: PayaAggregation(auxiliary_weight="a"), "got 'a'"),
    ],
)
@pytest.mark.multibackend
def test_bad_arguments_name_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.multibackend
def test_aggregation_checks_gate_count():
    with pytest.raises(ValueError, match="2 outputs but 3 gate weights"):
        PayaAggregation()([np.ones((1, 3), "float32"), np.zeros((1, 4), "float32"), np.zeros((1, 4), "float32")])


# ---------------------------------------------------------------- models and training

import keras_attn_zoo as zoo  # noqa: E402
from helpers import param_count, run_model_saving_test, sample_images  # noqa: E402
from keras_attn_zoo.models import resnet_cifar, wide_resnet  # noqa: E402
from keras_attn_zoo.models.paya import PAYA_DEFAULTS, PAYAModel, paya_outputs_model  # noqa: E402
from helpers import CIFAR10_ARCHIVE as CIFAR10_ARCHIVE_PATH  # noqa: E402


@pytest.mark.parametrize(
    "name,classes,count",
    [
        ("paya_wrn28_10", 10, 36_965_634), ("paya_wrn28_10", 100, 40_652_124),
        ("paya_wrn40_10", 10, 56_328_194), ("paya_wrn40_10", 100, 60_014_684),
        ("wrn40_10", 10, 55_841_754), ("wrn40_10", 100, 55_899_444),
    ],
)
def test_counts_equal_the_authors_code(name, classes, count):
    """Spec Section 4, counted without a forward pass."""
    assert zoo.get_spec(name).official_params[classes] == count
    assert param_count(name, classes=classes) == count


def test_paya_adds_exactly_the_modules_gate_and_stem_bn():
    # 36 c (C + 2) per module (H = 4), gate 64 * 4 + BN 8; ResNet-20 has no stem BN to add
    assert param_count("paya_resnet20") - param_count("resnet20") == 36 * (16 + 32 + 64) * 12 + 264
    assert param_count("paya_wrn16_4") - param_count("wrn16_4") == 36 * (64 + 128 + 256) * 12 + 256 * 4 + 8 + 32


def tiny_wrn(**kwargs):
    return wide_resnet(10, 1, "paya", classes=3, input_shape=(16, 16, 3), **kwargs)


def test_modules_sit_where_the_spec_says():
    model = tiny_wrn()
    inputs = {layer.name: layer.input for layer in model.layers if layer.name.endswith("_paya")}
    assert inputs["stage1_paya"] is model.get_layer("stage2_block1_1_relu").output
    assert inputs["stage2_paya"] is model.get_layer("stage3_block1_1_relu").output
    assert inputs["stage3_paya"] is model.get_layer("head_relu").output
    assert {"stem_bn", "stem_relu", "paya_gate", "paya_output", "paya_scores"} <= {l.name for l in model.layers}
    assert "stem_bn" not in {l.name for l in wide_resnet(10, 1, input_shape=(16, 16, 3)).layers}
    resnet = resnet_cifar(8, "paya", attention_depth=2, attention_heads=2)
    inputs = {layer.name: layer.input for layer in resnet.layers if layer.name.endswith("_paya")}
    assert sorted(inputs) == ["stage2_paya", "stage3_paya"]  # the last two stages
    assert inputs["stage3_paya"] is resnet.get_layer("stage3_block1_out").output
    assert resnet.get_layer("paya_gate").outputs == 3 and resnet.get_layer("stage2_paya").heads == 2
    # the authors' mean over modules: each gets reg_weight / AD
    assert resnet.get_layer("stage3_paya").diversity_weight == pytest.approx(1e-3 / 2)


@pytest.mark.multibackend
def test_predict_gives_class_scores_and_the_gates_are_in_spec_order():
    model = tiny_wrn()
    assert isinstance(model, PAYAModel) and model.output_shape == (None, 3)
    x = sample_images(2, (16, 16, 3))
    scores = model.predict(x, verbose=0)
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)
    out = keras.tree.map_structure(np_, paya_outputs_model(model)(x, training=False))
    logits = [out["stage3_paya/logits"], out["stage2_paya/logits"], out["stage1_paya/logits"], out["net_logits"]]
    gated = sum(out["gates"][:, i:i + 1] * log_softmax(logits[i]) for i in range(4))
    np.testing.assert_allclose(scores, softmax(gated), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["gates"].sum(-1), 1.0, rtol=1e-5)


@pytest.mark.multibackend
def test_fit_uses_the_authors_loss_whatever_is_compiled():
    """The loss fit reports = NLL on the gated log-probabilities (not renormalised) + R."""
    model = tiny_wrn(reg_weight=10.0)  # a visible regulariser
    x = sample_images(4, (16, 16, 3))
    y = np.array([0, 1, 2, 1])
    out = model(x, training=True)
    log_probs = np_(out["paya_output"])
    reg = sum(float(np_(loss)) for loss in model.losses)
    assert len(model.losses) == 3 and reg > 0
    expected = -log_probs[np.arange(4), y].mean() + reg
    renormalised = -log_softmax(log_probs)[np.arange(4), y].mean() + reg
    assert abs(expected - renormalised) > 1e-3  # the two readings differ here
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-4)


@pytest.mark.multibackend
def test_auxiliary_cross_entropy_is_optional_and_ours():
    model = tiny_wrn(reg_weight=0.0, auxiliary_weight=0.5)
    x, y = sample_images(4, (16, 16, 3)), np.array([0, 1, 2, 1])
    out = keras.tree.map_structure(np_, model(x, training=True))
    assert not model.losses
    aux = np.mean([-log_softmax(out[k])[np.arange(4), y].mean() for k in ("stage1_paya", "stage2_paya", "stage3_paya")])
    expected = -out["paya_output"][np.arange(4), y].mean() + 0.5 * aux
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-4)


@pytest.mark.multibackend
def test_round_trip_is_exact(tmp_path):
    model = resnet_cifar(8, "paya", attention_heads=2, gate="sigmoid", auxiliary_weight=0.25)
    run_model_saving_test(model, tmp_path, sample_images(2))
    restored = keras.saving.load_model(tmp_path / f"{model.name}.keras")
    assert isinstance(restored, PAYAModel) and restored.auxiliary_weight == 0.25
    assert restored.get_layer("paya_gate").mode == "sigmoid"


def test_fit_lowers_the_loss():
    model = resnet_cifar(8, "paya", attention_heads=2)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = sample_images(16), np.arange(16) % 10
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"attention_depth": 4}, "attention_depth .* from 1 to 3 .* got 4"),
        ({"attention_depth": 0}, "got 0"),
        ({"attention_heads": 0}, "attention_heads must be a positive integer, got 0"),
        ({"reg_weight": -1.0}, "reg_weight must be a number >= 0, got -1.0"),
        ({"gate": "relu"}, "gate must be one of .* got 'relu'"),
        ({"include_top": False}, "PAYA models need include_top=True"),
    ],
)
def test_bad_model_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnet_cifar(8, "paya", **kwargs)


@pytest.mark.parametrize(
    "build",
    [lambda **kw: resnet_cifar(8, None, **kw), lambda **kw: resnet_cifar(8, "fa", **kw),
     lambda **kw: wide_resnet(10, 1, "abn", **kw)],
    ids=["resnet", "fa_resnet", "abn_wrn"],
)
def test_paya_arguments_are_refused_without_paya_modules(build):
    """Changed PAYA arguments on a model without PAYA modules would be ignored: refused, named."""
    with pytest.raises(ValueError, match="auxiliary_weight only apply to attention='paya'"):
        build(auxiliary_weight=0.5)
    with pytest.raises(ValueError, match="attention_heads, reg_weight only apply"):
        build(attention_heads=2, reg_weight=0.0)
    build(**PAYA_DEFAULTS)  # the defaults themselves are fine


def test_builder_defaults_are_the_paya_defaults():
    import inspect

    for builder in (resnet_cifar, wide_resnet):
        defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items() if k in PAYA_DEFAULTS}
        assert defaults == PAYA_DEFAULTS, builder.__name__


def test_trainer_wrapper_trains_with_the_authors_loss():
    from keras_attn_zoo.data import ChannelStats
    from keras_attn_zoo.training.trainer import training_model

    stats = ChannelStats((0.5,) * 3, (0.25,) * 3)
    model = zoo.load("paya_resnet20", input_shape=(16, 16, 3), reg_weight=10.0)
    wrapper = training_model(model, stats, "none")
    assert isinstance(wrapper, PAYAModel) and wrapper.output_shape == (None, 10)
    wrapper.compile(loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("float32")
    labels = np.array([1, 2, 3, 4])
    outputs = wrapper(images, training=True)
    assert {"predictions", "paya_output", "stage1_paya"} <= set(outputs)
    reg = sum(float(np_(loss)) for loss in wrapper.losses)
    assert len(wrapper.losses) == 3 and reg > 0
    expected = -np_(outputs["paya_output"])[np.arange(4), labels].mean() + reg
    assert float(wrapper.compute_loss(images, labels, outputs)) == pytest.approx(expected, rel=1e-5)
    normalised = (images / 255 - 0.5) / 0.25
    np.testing.assert_allclose(wrapper.predict(images, verbose=0), model.predict(normalised, verbose=0), atol=1e-4)


def test_train_and_evaluate_a_paya_model(tmp_path):
    """`train` and `evaluate` on 64 CIFAR-10 images, one epoch."""
    from helpers import CIFAR10_ARCHIVE
    from keras_attn_zoo.training import train

    record = train("paya_resnet20", str(CIFAR10_ARCHIVE), epochs=1, batch_size=32, limit=64, eval_limit=64,
                   output_dir=tmp_path / "run", verbose=0)
    assert 0 <= record["accuracy"]["top1"] <= 1
    model = zoo.load("paya_resnet20", weights=str(tmp_path / "run" / "paya_resnet20.weights.h5"))
    assert isinstance(model, PAYAModel)


def test_cli_trains_with_the_auxiliary_term_and_records_it(tmp_path, monkeypatch):
    """`train --model-arg auxiliary_weight=0.5` reaches the model's loss and the record."""
    import json

    from helpers import CIFAR10_ARCHIVE
    from keras_attn_zoo.cli import main
    from keras_attn_zoo.models import paya as paya_models

    seen = []
    original = paya_models.PAYAModel.compute_loss

    def spy(self, *args, **kwargs):
        seen.append(self.auxiliary_weight)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(paya_models.PAYAModel, "compute_loss", spy)
    out = tmp_path / "run"
    assert main(["train", "paya_resnet20", "--data", str(CIFAR10_ARCHIVE), "--epochs", "1", "--batch-size", "16",
                 "--limit", "32", "--eval-limit", "16", "--augmentation", "cifar_reflect", "--output", str(out),
                 "--model-arg", "auxiliary_weight=0.5", "--verbose", "0"]) == 0
    record = json.loads((out / "paya_resnet20.json").read_text())
    assert record["training"]["model_options"] == {"auxiliary_weight": 0.5}
    assert record["training"]["recipe"]["augmentation"] == "cifar_reflect"
    assert seen and set(seen) == {0.5}


@pytest.mark.parametrize(
    "args,match",
    [
        (["--model-arg", "auxiliary_weight"], "--model-arg takes KEY=VALUE"),
        (["--model-arg", "auxiliary_wieght=0.5"], "takes no argument 'auxiliary_wieght'. Did you mean: auxiliary_weight"),
        (["--model-arg", "attention_heads=0"], "attention_heads must be a positive integer, got 0"),
    ],
)
def test_cli_bad_model_arguments_are_refused_before_training(tmp_path, capsys, args, match):
    import re

    from helpers import CIFAR10_ARCHIVE
    from keras_attn_zoo.cli import main

    code = main(["train", "paya_resnet20", "--data", str(CIFAR10_ARCHIVE), "--epochs", "1", "--limit", "8",
                 "--output", str(tmp_path / "run"), *args])
    assert code == 2 and re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_export_matches_keras(tmp_path, fmt):
    """paya_resnet20 to ONNX / TFLite with the exporter's parity check, plus the masks of the
    last module as a named output; the file runs in its own runtime."""
    from test_export import export_in_subprocess, onnx_run, tflite_run

    model = zoo.load("paya_resnet20")
    model.save(tmp_path / "model.keras")
    out = tmp_path / f"model.{fmt}"
    report = export_in_subprocess(tmp_path / "model.keras", out, format=fmt, num_samples=4,
                                  outputs=["stage3_paya:1"])
    # the exporter's check (1e-4 on every output: module logits of an untrained net are large)
    assert report["ok"] and report["max_abs_diff"]["predictions"] < 1e-5, report
    if fmt == "tflite":
        assert not [op for op in report["ops"] if op.lower().startswith("flex")]
    x = sample_images(3, seed=5)
    got = (onnx_run if fmt == "onnx" else tflite_run)(out, x)[1]
    assert {"predictions", "paya_output", "stage3_paya_1"} <= set(got)
    np.testing.assert_allclose(got["predictions"], model.predict(x, verbose=0), atol=1e-5)
    masks = np_(paya_outputs_model(model)(x)["stage3_paya/masks"])
    np.testing.assert_allclose(got["stage3_paya_1"], masks, atol=1e-4)


def test_fine_tune_reuses_the_masks_and_renews_output_heads_and_gate(tmp_path, cifar_jpegs):
    """Weights trained for one epoch on 64 images (10 classes) fine-tuned to 3 classes."""
    from keras_attn_zoo.training import train

    run = tmp_path / "run"
    train("paya_resnet20", str(CIFAR10_ARCHIVE_PATH), epochs=1, batch_size=32, limit=64, eval_limit=32,
          output_dir=run, verbose=0)
    folder = tmp_path / "photos"
    for cls in ("cat", "ship", "truck"):
        (folder / cls).mkdir(parents=True)
        for path in sorted((cifar_jpegs / cls).iterdir())[:8]:
            (folder / cls / path.name).write_bytes(path.read_bytes())
    weights = run / "paya_resnet20.weights.h5"
    result = zoo.fine_tune("paya_resnet20", folder, weights=str(weights), output_dir=tmp_path / "ft",
                           freeze_epochs=1, epochs=0, batch_size=8, verbose=0)
    assert sorted(result.new_layers) == ["paya_gate", "predictions", "stage1_paya", "stage2_paya", "stage3_paya"]
    assert isinstance(result.model, PAYAModel) and result.model.output_shape == (None, 3)
    # before training: the masks' and head gates' convs are the pretrained ones, output heads 0
    import warnings

    from keras_attn_zoo.registry import load_with_report
    from keras_attn_zoo.training.finetune import _paya_new_layers

    pretrained = zoo.load("paya_resnet20", weights=str(weights))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, new = load_with_report("paya_resnet20", str(weights), num_classes=3, new_head=True)
    _paya_new_layers(model, zoo.get_spec("paya_resnet20"), str(weights), (32, 32, 3), new)
    for name in ("stage1_paya", "stage2_paya", "stage3_paya"):
        layer, source = model.get_layer(name), pretrained.get_layer(name)
        for part in ("attention_conv", "gate_conv"):
            np.testing.assert_array_equal(np_(getattr(layer, part).kernel), np_(getattr(source, part).kernel))
        assert not np_(layer.output_conv.kernel).any() and layer.output_conv.kernel.shape[-1] == 4 * 3
    assert not np.array_equal(np_(model.get_layer("paya_gate").dense.kernel),
                              np_(pretrained.get_layer("paya_gate").dense.kernel))


def test_explain_returns_masks_gates_and_module_predictions(cifar_jpegs, tmp_path, capsys):
    from PIL import Image

    from keras_attn_zoo.cli import main
    from keras_attn_zoo.explain import explain
    from keras_attn_zoo.explain.plots import DPI, PANEL_INCHES

    model = zoo.load("paya_resnet20")
    x = sample_images(2)
    paya = explain(model, x).paya
    assert list(paya.masks) == ["stage1_paya", "stage2_paya", "stage3_paya"]
    assert paya.masks["stage1_paya"].shape == (2, 32, 32, 4) and paya.masks["stage3_paya"].shape == (2, 8, 8, 4)
    np.testing.assert_allclose(paya.masks["stage2_paya"].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(paya.head_gates["stage3_paya"].sum(-1), 1.0, rtol=1e-5)
    assert list(paya.global_gates) == ["stage3_paya", "stage2_paya", "stage1_paya", "predictions"]
    np.testing.assert_allclose(sum(paya.global_gates.values()), 1.0, rtol=1e-5)
    assert paya.module_scores["stage1_paya"].shape == (2, 10) and paya.net_scores.shape == (2, 10)
    # the model's scores are the softmax of the gated log-probabilities of these predictions
    gated = sum(paya.global_gates[k][:, None] * np.log(paya.module_scores[k]) for k in paya.module_scores)
    gated = gated + paya.global_gates["predictions"][:, None] * np.log(paya.net_scores)
    np.testing.assert_allclose(model.predict(x, verbose=0), softmax(gated), rtol=1e-3, atol=1e-6)
    assert explain(zoo.load("resnet20"), x).paya is None

    out = tmp_path / "cat.png"
    assert main(["explain", str(cifar_jpegs / "cat" / "0000.jpg"), "--model", "paya_resnet20", "-o", str(out)]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert len([line for line in lines if "PAYA masks" in line]) == 3
    with Image.open(out) as image:  # image, Grad-CAM, one panel per module
        assert image.size == (5 * PANEL_INCHES * DPI, PANEL_INCHES * DPI)


# ---------------------------------------------------------------- early exit (ours)

from keras_attn_zoo.early_exit import EarlyExit, macs  # noqa: E402


@pytest.fixture(scope="module")
def paya_resnet20():
    keras.utils.set_random_seed(0)
    return zoo.load("paya_resnet20")


def test_threshold_zero_leaves_at_the_first_module(paya_resnet20):
    exits = EarlyExit(paya_resnet20)
    assert exits.exit_names == ["stage1_paya", "stage2_paya", "stage3_paya", "full"]
    x = sample_images(5)
    result = exits.predict(x, threshold=0.0)
    assert (result.exit_index == 0).all() and result.exit_shares()["stage1_paya"] == 1.0
    own = softmax(np_(paya_outputs_model(paya_resnet20)(x)["stage1_paya/logits"]).astype("float64"))
    np.testing.assert_allclose(result.scores, own, rtol=1e-4, atol=1e-6)
    assert (result.macs == exits.cumulative_macs[0]).all()


def test_threshold_above_one_equals_the_full_model(paya_resnet20):
    exits = EarlyExit(paya_resnet20)
    x = sample_images(5)
    result = exits.predict(x, threshold=1.01, batch_size=2)
    assert (result.exit_index == 3).all()
    np.testing.assert_allclose(result.scores, paya_resnet20.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # the segments cut the model without overlap: their costs add up to the model's
    assert sum(exits.segment_macs) == macs(paya_resnet20) == exits.cumulative_macs[-1]
    assert exits.segment_macs[0] < exits.cumulative_macs[1] < exits.cumulative_macs[-1]


def test_images_leave_the_batch_where_confident(paya_resnet20):
    """A threshold between the images' confidences: each image leaves at its own first
    confident module, and the ones that go on get exactly the full model's scores."""
    exits = EarlyExit(paya_resnet20)
    x = sample_images(6, seed=3)
    out = paya_outputs_model(paya_resnet20)(x)
    conf = {m: softmax(np_(out[f"{m}/logits"]).astype("float64")).max(-1) for m in exits.exit_names[:-1]}
    threshold = float(np.median(conf["stage1_paya"]))
    result = exits.predict(x, threshold=threshold)
    for b in range(6):
        expected = next((i for i, m in enumerate(exits.exit_names[:-1]) if conf[m][b] >= threshold), 3)
        assert result.exit_index[b] == expected
    full = result.exit_index == 3
    np.testing.assert_allclose(result.scores[full], paya_resnet20.predict(x, verbose=0)[full], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="threshold must be a number >= 0, got -1"):
        exits.predict(x, threshold=-1)
    with pytest.raises(ValueError, match="no PAYA attention modules"):
        EarlyExit(zoo.load("resnet20"))


def test_cli_predict_with_early_exit(cifar_jpegs, capsys):
    from keras_attn_zoo.cli import main

    photo = str(cifar_jpegs / "cat" / "0000.jpg")
    assert main(["predict", photo, "--model", "paya_resnet20", "--early-exit", "0"]) == 0
    assert capsys.readouterr().out.strip().endswith("(exit: stage1_paya)")
    assert main(["predict", photo, "--model", "paya_resnet20", "--early-exit", "1.5"]) == 0
    assert capsys.readouterr().out.strip().endswith("(exit: full)")
    assert main(["predict", photo, "--model", "resnet20", "--early-exit", "0.5"]) == 2
    assert "no PAYA attention modules" in capsys.readouterr().err


def test_early_exit_script_on_a_tiny_subset(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "early_exit.py"
    spec = importlib.util.spec_from_file_location("early_exit_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "early_exit.md"
    assert script.main(["paya_resnet20", "--data", str(CIFAR10_ARCHIVE_PATH), "--limit", "12",
                        "--thresholds", "0", "0.5", "2", "--latency-images", "2", "-o", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    first, middle, none = report["rows"]
    assert first["exit_shares"]["stage1_paya"] == 1.0 and first["macs_ratio"] < 0.5
    assert none["exit_shares"]["full"] == 1.0 and none["top1"] == report["full"]["top1"]
    assert none["macs_ratio"] == 1.0 and all(r["latency_ms"] > 0 for r in report["rows"])
    assert set(report["modules"]) == {"stage1_paya", "stage2_paya", "stage3_paya", "predictions"}
    text = out.read_text()
    assert "| full model |" in text and "left at stage1_paya" in text
    # the page says how it was made: the command as typed, when, on what
    assert text.split("\n")[2].startswith("Written by `python scripts/early_exit.py paya_resnet20 --data ")
    assert "CPU latency: the median wall time over 2 images fed one at a time (batch 1)" in text
    assert report["command"].startswith("python scripts/early_exit.py paya_resnet20")


@pytest.mark.multibackend
def test_the_authors_cifar_recipe():
    from keras_attn_zoo.training import get_recipe

    recipe = get_recipe("paya_cifar")
    assert (recipe.epochs, recipe.batch_size, recipe.learning_rate, recipe.weight_decay) == (200, 128, 0.1, 5e-4)
    assert recipe.milestones == (60, 120, 160) and recipe.gamma == 0.2 and recipe.nesterov
    assert recipe.augmentation == "cifar_reflect"


@pytest.mark.multibackend
def test_reflect_pad_crop_is_numpys_reflect_padding():
    from keras_attn_zoo.data.augment import RandomPadCrop, augmentation_layers

    x = np.arange(2 * 6 * 6 * 1, dtype="float32").reshape(2, 6, 6, 1)
    crops = np_(RandomPadCrop(2, seed=1, fill_mode="mirror")(x, training=True))
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    for b in range(2):  # each output is some 6x6 window of the reflect-padded image
        windows = [padded[b, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(np.array_equal(crops[b], w) for w in windows)
    assert augmentation_layers("cifar_reflect", (32, 32, 3))[0].fill_mode == "mirror"
    with pytest.raises(ValueError, match="fill_mode must be 'constant' or 'mirror', got 'wrap'"):
        RandomPadCrop(4, fill_mode="wrap")
