"""The discriminative-attention objective: spec dat.md Section 4's hand-computed values, the
order of differentiation, one forward pass per step, and fit through the wrapper."""

import numpy as np
import pytest

import keras
from keras import ops

from keras_attn_zoo import losses
from keras_attn_zoo.autodiff import gradient
from keras_attn_zoo.training.dat import DATConfig, dat_model, objective_config, objective_record

pytestmark = pytest.mark.multibackend

A_T = np.array([[0, 1, 2, 0], [1, 4, 3, 0], [0, 2, 1, 0], [0, 0, 0, 0]], "float32")[None]
A_C = np.array([[0, 0, 1, 1], [0, 2, 3, 1], [0, 1, 0, 0], [0, 0, 0, 1]], "float32")[None]


def value(tensor):
    return ops.convert_to_numpy(tensor)


def test_soft_iou_4x4_without_and_with_masks():
    """Spec 4.1 (a) no mask, (b) binary and literal sigmoid mask, (c) normalised mask and the
    literal mask's dependence on the maps' scale."""
    np.testing.assert_allclose(value(losses.soft_iou(A_T, A_C)), [14 / 24], rtol=1e-6)
    binary = (A_T > 0.55 * 4).astype("float32")
    np.testing.assert_allclose(value(losses.soft_iou(A_T, A_C, binary)), [10 / 24], rtol=1e-6)
    literal = losses.target_mask(A_T)
    np.testing.assert_allclose(value(literal), binary, atol=1e-8)  # sigmoid(-20) = 2e-9
    np.testing.assert_allclose(value(losses.soft_iou(A_T, A_C, literal)), [0.41666667], rtol=1e-6)
    normalized = losses.target_mask(A_T, kind="normalized")
    np.testing.assert_allclose(value(losses.soft_iou(A_T, A_C, normalized)), [0.41778214], rtol=1e-6)
    scaled = losses.soft_iou(A_T * 0.01, A_C * 0.01, losses.target_mask(A_T * 0.01))
    np.testing.assert_allclose(value(scaled), [0.39054611], rtol=2e-6)
    # the normalised mask is scale-free
    np.testing.assert_allclose(value(losses.target_mask(A_T * 0.01, kind="normalized")), value(normalized), atol=1e-6)


def test_consistency_with_pinned_resampling():
    """Spec 4.2: the 2x2 last-layer mask brought to 4x4, nearest and bilinear (half-pixel)."""
    a_last = np.array([[1, 4], [0, 2]], "float32")[None]
    a_in = np.array([[1, 0, 2, 2], [0, 0, 1, 3], [1, 0, 0, 0], [0, 1, 0, 0]], "float32")[None]
    mask = losses.target_mask(a_last)
    np.testing.assert_allclose(value(mask), [[[0, 1], [0, 0]]], atol=1e-8)
    nearest = losses.resize_mask(mask, (4, 4), "nearest")
    np.testing.assert_allclose(value(losses.attention_consistency(a_in, nearest)), [0.8 - 8 / 11], rtol=1e-6)
    bilinear = losses.resize_mask(mask, (4, 4), "bilinear")
    np.testing.assert_allclose(value(bilinear)[0], np.outer([1, .75, .25, 0], [0, .25, .75, 1]), atol=1e-6)
    np.testing.assert_allclose(value(losses.attention_consistency(a_in, bilinear)), [0.2261364], rtol=1e-6)
    # no hinge: attention entirely inside the region gives theta - 1
    inside = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]], "float32")
    np.testing.assert_allclose(value(losses.attention_consistency(inside, nearest)), [-0.2], rtol=1e-5)


def test_confusing_class_is_the_highest_scoring_wrong_class():
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]], "float32")
    target = np.eye(3, dtype="float32")[[0, 0]]
    np.testing.assert_array_equal(value(losses.confusing_class(logits, target)), [2, 1])


# Spec 4.3: a linear GAP model with closed-form maps (H = W = 2, K = 2, C = 3, no bias, y = 0).
F = np.stack([[[1, 2], [3, 0]], [[2, 1], [2, 4]]], axis=-1).astype("float32")[None]
W = np.array([[1, -1, 0.5], [2, 1, -1]], "float32")


def linear_gap(**settings):
    """F -> inner (identity) -> last (identity) -> GAP -> Dense(W): both layers see F."""
    inputs = keras.Input((2, 2, 2))
    x = keras.layers.Activation("linear", name="inner")(inputs)
    x = keras.layers.Activation("linear", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = keras.layers.Dense(3, use_bias=False, name="predictions")(x)
    model = keras.Model(inputs, outputs, name="linear_gap")
    model.get_layer("predictions").set_weights([W])
    wrapper = dat_model(model, objective={"inner_layer": "inner", "last_layer": "last", **settings})
    return model, wrapper


@pytest.mark.parametrize("attention", ["channel", "pixel"])
def test_linear_gap_maps_and_soft_iou(attention):
    _, wrapper = linear_gap(attention=attention)
    out = wrapper.dat_outputs(F, np.array([0]))
    np.testing.assert_allclose(value(out["logits"]), [[6, 0.75, -1.5]], rtol=1e-6)
    assert value(out["confusing"]).tolist() == [1]
    maps = {k: value(v)[0] for k, v in out["maps"].items()}
    if attention == "channel":
        np.testing.assert_allclose(maps["target_last"], [[1.25, 1.0], [1.75, 2.0]], rtol=1e-6)
        np.testing.assert_allclose(maps["confusing_last"], [[0.5, 0.25], [0.5, 1.0]], rtol=1e-6)
        np.testing.assert_allclose(maps["mask_last"], [[1, 4.54e-5], [1, 1]], rtol=1e-2, atol=1e-7)
        expected = 0.4848512
    else:
        np.testing.assert_allclose(maps["target_last"], [[0.625, 0.5], [0.875, 1.0]], rtol=1e-6)
        np.testing.assert_allclose(maps["confusing_last"], [[0.125, 0], [0, 0.5]], rtol=1e-6)
        expected = 0.3447895
    np.testing.assert_allclose(maps["target_inner"], maps["target_last"])  # the same F
    terms = {k: value(v) for k, v in out["terms"].items()}
    np.testing.assert_allclose(terms["siou_last"], [expected], rtol=1e-6)
    np.testing.assert_allclose(terms["siou_inner"], [expected], rtol=1e-6)


def test_first_order_gradient_with_respect_to_the_features():
    """dsIoU/dF with alpha and the mask held fixed: -2 N 0.25 / D^2 on channel 0; on channel 1
    +0.0165289 at the masked pixels and -0.0440771 at (0, 1)."""
    _, wrapper = linear_gap()

    def siou(offset):
        return ops.sum(wrapper.dat_outputs(ops.add(F, offset), np.array([0]))["terms"]["siou_last"]), None

    grad, _ = gradient(siou, ops.zeros(F.shape))
    grad = value(grad)[0]
    np.testing.assert_allclose(grad[..., 0], np.full((2, 2), -0.0146924), atol=2e-6)
    # the spec's -0.0440771 takes the mask at (0, 1) as 0; the sigmoid's 4.5e-5 there adds
    # 2 * 4.5e-5 * alpha_C[1] / D = +2.75e-6
    np.testing.assert_allclose(grad[..., 1], [[0.0165289, -0.0440743], [0.0165289, 0.0165289]], atol=1e-6)


@pytest.mark.parametrize("second_order", [False, True])
def test_order_of_differentiation(second_order):
    """F is the input, so no parameter lies below it: in first order the soft IoU cannot reach
    W (exactly zero); in second order it reaches W through G = W / 4."""
    model, wrapper = linear_gap(second_order=second_order, cls_weight=0.0, siou_inner_weight=0.0,
                                consistency_weight=0.0)
    wrapper.compile(optimizer=keras.optimizers.SGD(1.0),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logs = wrapper.train_on_batch(F, np.array([0]), return_dict=True)
    np.testing.assert_allclose(logs["siou_last"], 0.4848512, rtol=1e-6)
    step = W - model.get_layer("predictions").get_weights()[0]  # = dsIoU/dW with lr 1
    if second_order:
        expected = [[-0.0881543, 0, 0], [-0.1322314, 0.3526171, 0]]
        np.testing.assert_allclose(step, expected, atol=2e-6)
    else:
        np.testing.assert_array_equal(step, np.zeros_like(W))


def test_batchnorm_statistics_update_once_per_step():
    """The maps come from the same forward pass: one DAT step moves BatchNormalization's moving
    statistics exactly as one plain step does (a second training-mode forward would move them
    twice)."""
    from helpers import sample_images
    from keras_attn_zoo import load

    x, y = sample_images(8) * 255, np.arange(8) % 10
    stats = []
    for objective in (None, "dat"):
        keras.utils.set_random_seed(0)
        model = load("resnet20", classifier_activation=None)
        wrapper = dat_model(model) if objective else model
        wrapper.compile(optimizer=keras.optimizers.SGD(0.1),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        wrapper.train_on_batch(x, y)
        stats.append([v for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
                      for v in layer.get_weights()[2:]])
    assert len(stats[0]) == 2 * 21  # moving mean and variance of 21 layers
    for plain, dat in zip(*stats):
        np.testing.assert_allclose(dat, plain, rtol=1e-5, atol=1e-6)


def test_wrapper_predicts_the_bare_models_scores():
    from helpers import sample_images
    from keras_attn_zoo import load

    model = load("resnet20")  # softmax classifier: the logits are read before it
    wrapper = dat_model(model)
    x = sample_images(3)
    np.testing.assert_allclose(wrapper.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    out = wrapper.dat_outputs(x)  # no labels: each image's top class is the target
    np.testing.assert_array_equal(value(out["target"]), np.argmax(model.predict(x, verbose=0), -1))
    assert value(out["maps"]["target_inner"]).shape == (3, 16, 16)
    assert value(out["maps"]["target_last"]).shape == (3, 8, 8)
    for term in ("siou_inner", "siou_last"):
        assert np.all((value(out["terms"][term]) >= 0) & (value(out["terms"][term]) <= 1))


def test_settings_are_validated_and_recorded():
    assert objective_config(None) is None and objective_config("cross_entropy") is None
    assert objective_config("dat") == DATConfig()
    assert objective_config({"name": "dat", "theta": 0.5}).theta == 0.5
    assert objective_record(None) == {"name": "cross_entropy"}
    record = objective_record({"attention": "pixel", "second_order": True})
    assert record["name"] == "dat" and record["attention"] == "pixel" and record["second_order"] is True
    for bad, message in [({"attention": "grad"}, "'grad'"), ({"resize": "cubic"}, "'cubic'"),
                         ({"omega": -1}, "-1"), ({"thetta": 1}, "thetta"), ("dta", "'dta'"),
                         ({"second_order": 1}, "second_order")]:
        with pytest.raises(ValueError, match=message):
            objective_config(bad)


def test_layer_errors_name_the_problem():
    from keras_attn_zoo import load

    model = load("resnet20")
    with pytest.raises(ValueError, match="no layer 'stage9_out'"):
        dat_model(model, objective={"inner_layer": "stage9_out"})
    with pytest.raises(ValueError, match="4D output"):
        dat_model(model, objective={"inner_layer": "head_pool"})
    with pytest.raises(ValueError, match="must differ"):
        dat_model(model, objective={"inner_layer": "stage3_block3_out"})
    with pytest.raises(ValueError, match="not a registered model"):
        dat_model(keras.Model(model.inputs, model.outputs, name="mine"))
    probs = keras.layers.Activation("softmax", name="probs")(model.get_layer("predictions").input)
    with pytest.raises(ValueError, match="single-label classifier"):
        dat_model(keras.Model(model.inputs, probs, name="resnet20"))


def test_second_order_refused_on_tensorflow_through_batchnorm_else_runs():
    """Keras' TensorFlow moments stop the mean's gradient in the variance: second-order terms
    through a training-mode BatchNormalization would be wrong, so TensorFlow refuses; JAX and
    PyTorch compute them (exact moments)."""
    from helpers import sample_images
    from keras_attn_zoo import load

    model = load("resnet20", classifier_activation=None)
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
            dat_model(model, objective={"second_order": True})
        return
    wrapper = dat_model(model, objective={"second_order": True})
    wrapper.compile(optimizer=keras.optimizers.SGD(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    logs = wrapper.train_on_batch(sample_images(4), np.arange(4), return_dict=True)
    assert all(np.isfinite(logs[k]) for k in ("loss", "l_cls", "siou_inner", "siou_last", "l_ac"))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_second_order_through_batchnorm_is_exact_except_on_tensorflow(monkeypatch):
    """Why TensorFlow refuses second order: a bias just before a training-mode BatchNormalization
    cannot change anything (BN removes the batch mean), so its gradient is exactly 0 to every
    order. JAX and PyTorch give 0; Keras' TensorFlow moments (stop_gradient on the mean in the
    variance) give a non-zero second-order gradient. If this starts to hold on TensorFlow too,
    the refusal in DATModel can go."""
    from keras_attn_zoo.training.dat import DATModel

    tensorflow = keras.backend.backend() == "tensorflow"
    if tensorflow:  # measure what the refusal prevents
        monkeypatch.setattr(DATModel, "_check_second_order", lambda self: None)
    rng = np.random.default_rng(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.ReLU(name="inner")(x)
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="last")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x), name="bn_check")
    for layer in ("conv1", "conv2", "predictions"):
        layer = model.get_layer(layer)
        layer.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in layer.get_weights()])
    wrapper = dat_model(model, objective={"inner_layer": "inner", "last_layer": "last", "second_order": True,
                                          "cls_weight": 0.0, "mask": "normalized", "omega": 10.0})
    wrapper.compile(optimizer=keras.optimizers.SGD(1.0),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    bias = model.get_layer("conv2").bias
    before = value(bias).copy()
    wrapper.train_on_batch(rng.normal(size=(8, 6, 6, 3)).astype("float32"), np.arange(8) % 3)
    step = np.abs(before - value(bias)).max()
    assert np.abs(value(model.get_layer("conv1").kernel)).max() > 0
    if tensorflow:
        assert step > 1e-4, step
    else:
        assert step < 1e-6, step


def test_abn_models_keep_both_branch_losses_in_l_cls():
    """On an ABN model L_cls is ABN's own L_per + L_att; the maps are the perception branch's."""
    from helpers import sample_images
    from keras_attn_zoo import load

    model = load("abn_resnet20", classifier_activation=None)
    wrapper = dat_model(model)
    wrapper.compile(optimizer=keras.optimizers.SGD(0.0),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = sample_images(4), np.arange(4)
    outputs = model(x, training=True)  # the same batch statistics as the step's forward pass
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = float(value(ce(y, outputs["predictions"]))) + float(value(ce(y, outputs["abn_logits"])))
    logs = wrapper.train_on_batch(x, y, return_dict=True)
    assert logs["l_cls"] == pytest.approx(expected, rel=1e-5)
    assert logs["loss"] == pytest.approx(sum(logs[t] for t in ("l_cls", "siou_inner", "siou_last", "l_ac")), rel=1e-5)
