"""The Attention Branch Network: counts, the map, the weighting, the two-branch training."""

import numpy as np
import pytest

import keras
from keras import ops

import keras_attn_zoo as zoo
from helpers import cifar_sample, param_count, run_model_saving_test, sample_images
from keras_attn_zoo.layers.attention_branch import AttentionMapWeighting, TaskwiseDense
from keras_attn_zoo.models import densenet_bc, resnet_multitask_abn, wide_resnet
from keras_attn_zoo.models.abn import ABNModel, abn_outputs, abn_outputs_model

OFFICIAL = [
    (name, classes, count)
    for name in zoo.list_models()
    for classes, count in zoo.get_spec(name).official_params.items()
]


def test_official_counts_cover_what_the_issue_lists():
    names = {name for name, _, _ in OFFICIAL}
    assert {"abn_resnet20", "abn_resnet56", "abn_resnet110", "abn_wrn28_10", "abn_resnext29_8x64d",
            "abn_resnet50", "abn_resnet101", "abn_resnet152"} <= names


@pytest.mark.parametrize("name,classes,count", OFFICIAL, ids=[f"{n}-{k}" for n, k, _ in OFFICIAL])
def test_parameter_counts_match_the_official_definitions(name, classes, count):
    assert param_count(name, classes=classes) == count + zoo.get_spec(name).official_params_delta


def test_resnext_leaves_out_the_unused_bn():
    spec = zoo.get_spec("abn_resnext29_8x64d")
    assert spec.official_params_delta == -2048 and "never calls it" in spec.notes
    assert "abn_bn" not in {layer.name for layer in spec.build(base_width=16).layers}


@pytest.mark.parametrize(
    "name,input_shape,side",
    [("abn_resnet20", (32, 32, 3), 16), ("abn_resnet18", (224, 224, 3), 14)],
)
def test_attention_map_is_in_unit_interval_at_the_branch_point(name, input_shape, side):
    model = zoo.load(name, input_shape=input_shape)
    out = abn_outputs(model, sample_images(2, input_shape))
    m = out["attention_map"]
    # a sigmoid: in (0, 1), which float32 rounds to [0, 1] where it saturates
    assert m.shape == (2, side, side, 1) and np.all((m >= 0) & (m <= 1)) and m.std() > 0
    assert out["logits"].shape == (2, model.output_shape[-1])


def test_other_families_branch_where_the_paper_says():
    for model, side in (
        (wide_resnet(10, 1, "abn"), 16),  # after group 2
        (densenet_bc(22, 4, "abn"), 8),  # after transition 2
    ):
        assert abn_outputs_model(model).output["attention_map"].shape[1:] == (side, side, 1)


def test_perception_branch_sees_one_plus_m_times_g():
    model = zoo.load("abn_resnet20")
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in
                                       ("stage2_block3_out", "abn_attention_map", "abn_weighting")])
    g, m, weighted = probe.predict(sample_images(2), verbose=0)
    np.testing.assert_allclose(weighted, (1 + m) * g, rtol=1e-6)
    eq1 = AttentionMapWeighting("multiply")([g, m])
    np.testing.assert_allclose(ops.convert_to_numpy(eq1), m * g, rtol=1e-6)


def test_predict_gives_perception_class_scores_and_round_trips(tmp_path):
    model = zoo.load("abn_resnet20")
    assert isinstance(model, ABNModel) and model.output_shape == (None, 10)
    probs = model.predict(sample_images(3), verbose=0)
    assert probs.shape == (3, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    run_model_saving_test(model, tmp_path, sample_images(2))


@pytest.mark.multibackend
def test_fit_lowers_both_branch_losses_on_real_cifar():
    x, y = cifar_sample(per_class=16)
    model = zoo.load("abn_resnet20")

    def losses():
        out = abn_outputs(model, x, batch_size=64)
        per = keras.losses.sparse_categorical_crossentropy(y, model.predict(x, batch_size=64, verbose=0))
        att = keras.losses.sparse_categorical_crossentropy(y, out["logits"], from_logits=True)
        return float(np.mean(ops.convert_to_numpy(att))), float(np.mean(ops.convert_to_numpy(per)))

    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # settle BN statistics before measuring
    att_before, per_before = losses()
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    att_after, per_after = losses()
    assert att_after < 0.8 * att_before and per_after < 0.8 * per_before, (att_before, att_after, per_before, per_after)
    # the training loss is L_att + L_per (Eq. 3): larger than the perception loss alone
    assert history.history["loss"][-1] > 0


@pytest.mark.multibackend
def test_training_loss_is_the_sum_of_both_branches():
    model = zoo.load("abn_resnet20")
    x, y = sample_images(4), np.array([0, 1, 2, 3])
    model.compile("sgd", "sparse_categorical_crossentropy")
    y_pred = model(x, training=True)
    total = ops.convert_to_numpy(model.compute_loss(x, y, y_pred))
    per = keras.losses.sparse_categorical_crossentropy(y, y_pred["predictions"])
    att = keras.losses.sparse_categorical_crossentropy(y, y_pred["abn_logits"], from_logits=True)
    expected = np.mean(ops.convert_to_numpy(per)) + np.mean(ops.convert_to_numpy(att))
    np.testing.assert_allclose(total, expected, rtol=1e-5)
    one_hot = keras.utils.to_categorical(y, 10)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.attention_loss(one_hot, y_pred["abn_logits"])),
        np.mean(ops.convert_to_numpy(att)), rtol=1e-5,
    )


@pytest.mark.multibackend
def test_the_logs_name_the_two_losses_whose_sum_is_the_training_loss():
    """One step on one batch: ``loss`` is logged with its parts ``attention_loss`` (L_att) and
    ``perception_loss`` (L_per), as computed by hand before the step; validation, which runs the
    perception branch only, logs ``val_perception_loss`` (its ``val_loss``) and no attention part."""
    model = zoo.load("abn_resnet20", num_classes=4)
    x, y = sample_images(4), np.array([0, 1, 2, 3])
    model.compile("sgd", "sparse_categorical_crossentropy")
    y_pred = model(x, training=True)
    per = np.mean(ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(y, y_pred["predictions"])))
    att = np.mean(ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(y, y_pred["abn_logits"], from_logits=True)))
    logs = {k: v[0] for k, v in model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False,
                                          validation_data=(x, y)).history.items()}
    assert sorted(logs) == ["attention_loss", "loss", "perception_loss", "val_loss", "val_perception_loss"]
    np.testing.assert_allclose([logs["attention_loss"], logs["perception_loss"]], [att, per], rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], logs["attention_loss"] + logs["perception_loss"], rtol=1e-5)
    assert logs["val_perception_loss"] == pytest.approx(logs["val_loss"], rel=1e-6)


@pytest.mark.multibackend
def test_multitask_weighting_and_heads_on_hand_made_tensors():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    m = rng.normal(size=(2, 3, 3, 5)).astype("float32")
    out = ops.convert_to_numpy(AttentionMapWeighting()([g, m]))
    assert out.shape == (10, 3, 3, 4)
    for b in range(2):
        for t in range(5):
            np.testing.assert_allclose(out[b * 5 + t], (1 + m[b, :, :, t:t + 1]) * g[b], rtol=1e-6)
    heads = TaskwiseDense(5, 2)
    feats = rng.normal(size=(10, 4)).astype("float32")
    y = ops.convert_to_numpy(heads(feats))
    kernel, bias = (ops.convert_to_numpy(w) for w in heads.weights)
    for b in range(2):
        for t in range(5):
            np.testing.assert_allclose(y[b, 2 * t:2 * t + 2], feats[b * 5 + t] @ kernel[t] + bias[t], rtol=1e-5)


def test_multitask_model_each_task_uses_its_own_map(tmp_path):
    model = resnet_multitask_abn(18, classes=3, input_shape=(64, 64, 3))
    x = sample_images(2, (64, 64, 3))
    probs = model.predict(x, verbose=0)
    assert probs.shape == (2, 3) and np.all((probs >= 0) & (probs <= 1))
    # the per-task perception features, rows b * T + t (before the saturating sigmoid heads)
    features = keras.Model(model.inputs, model.get_layer("head_pool").output)
    before = features.predict(x, verbose=0)
    assert before.shape == (6, 512)
    conv = model.get_layer("abn_attention_map")
    (kernel,) = conv.get_weights()
    kernel[..., 1] *= 3.0  # change task 1's map only
    conv.set_weights([kernel])
    after = features.predict(x, verbose=0)
    others = [0, 2, 3, 5]
    np.testing.assert_allclose(after[others], before[others], rtol=1e-5)
    assert not np.allclose(after[[1, 4]], before[[1, 4]])
    labels = np.array([[1, 0, 1], [0, 1, 1]], "float32")
    model.compile("sgd", "binary_crossentropy")
    y_pred = model(x, training=True)
    att = keras.losses.binary_crossentropy(labels[..., None], y_pred["abn_logits"][..., None], from_logits=True)
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.attention_loss(labels, y_pred["abn_logits"])),
        np.mean(ops.convert_to_numpy(att)), rtol=1e-5,
    )
    run_model_saving_test(model, tmp_path, x)


def test_abn_needs_its_classifier():
    with pytest.raises(ValueError, match="include_top=True"):
        zoo.load("abn_resnet20", include_top=False)
    with pytest.raises(ValueError, match="attention must be one of"):
        wide_resnet(28, 10, "fa")


def test_weights_load_into_another_number_of_classes(tmp_path):
    """Everything but the class-sized layers (the classifier and the attention branch's
    class convolutions) is reused, and the skipped layers are reported."""
    source = zoo.load("abn_resnet20")
    path = tmp_path / "abn_resnet20.weights.h5"
    source.save_weights(path)
    with pytest.warns(UserWarning, match="abn_class_conv"):
        model = zoo.load("abn_resnet20", weights=str(path), num_classes=3)
    for name in ("stem_conv", "abn_block1_1_conv", "stage3_block3_2_conv", "abn_map_bn"):
        for a, b in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert model.get_layer("abn_class_conv").get_weights()[0].shape[-1] == 3


def test_explain_returns_the_models_own_attention_map():
    from keras_attn_zoo.explain import explain

    model = zoo.load("abn_resnet20")
    x = sample_images(2)
    result = explain(model, x)
    np.testing.assert_array_equal(result.abn_attention_map, abn_outputs(model, x)["attention_map"])
    assert result.grad_cam.shape[0] == 2 and result.fa_gates == {} and result.se_weights == {}
