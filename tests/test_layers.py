"""The attention layers against their equations, on hand-made tensors (every backend)."""

import numpy as np
import pytest

import keras
from keras import ops

from helpers import run_layer_serialization_test
from keras_attn_zoo.layers import FocusAssociation, SqueezeExcite, fa_weighting
from keras_attn_zoo.models.common import FAChain

pytestmark = pytest.mark.multibackend


def np_(t):
    return ops.convert_to_numpy(t)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def relu(z):
    return np.maximum(z, 0)


@pytest.fixture
def xu():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 4, 8)).astype("float32")
    u = rng.normal(size=(3, 4, 4, 8)).astype("float32")
    return x, u


def test_weighting_equation(xu):
    x, u = xu
    np.testing.assert_allclose(np_(fa_weighting(x, u, np.zeros((3, 1), "float32"))), x)
    np.testing.assert_allclose(np_(fa_weighting(x, u, np.ones((3, 1), "float32"))), u, atol=1e-6)
    k = np.array([[0.25], [0.5], [0.9]], "float32")
    expected = x + (u - x) * k[:, :, None, None]
    np.testing.assert_allclose(np_(fa_weighting(x, u, k)), expected, atol=1e-6)


def _set_gate(layer, bias):
    """Saturate the gate: zero kernels and a large bias on the last sigmoid unit."""
    last = layer.association_out if layer.num_previous else layer.focus_out
    kernel, _ = last.get_weights()
    last.set_weights([np.zeros_like(kernel), np.full((1,), bias, "float32")])


@pytest.mark.parametrize("previous", [0, 2])
def test_gate_zero_returns_x_and_one_returns_u(xu, previous):
    x, u = xu
    gates = [np.full((3, 1), 0.3, "float32")] * previous
    layer = FocusAssociation()
    layer([x, u, *gates])
    _set_gate(layer, -60.0)
    out, k = layer([x, u, *gates])
    np.testing.assert_allclose(np_(k), 0.0, atol=1e-12)
    np.testing.assert_allclose(np_(out), x, atol=1e-6)
    _set_gate(layer, 60.0)
    out, k = layer([x, u, *gates])
    np.testing.assert_allclose(np_(k), 1.0)
    np.testing.assert_allclose(np_(out), u, atol=1e-6)


def test_focus_is_eqs_5_to_7(xu):
    x, u = xu
    layer = FocusAssociation(focus_ratio=4)
    out, k = layer([x, u])
    w1, b1 = layer.focus_reduce.get_weights()
    w2, b2 = layer.focus_out.get_weights()
    assert w1.shape == (8, 2) and w2.shape == (2, 1)  # C -> C / r1 -> 1
    expected_k = sigmoid(relu(x.mean(axis=(1, 2)) @ w1 + b1) @ w2 + b2)
    np.testing.assert_allclose(np_(k), expected_k, rtol=1e-5)
    np.testing.assert_allclose(np_(out), x + (u - x) * expected_k[:, :, None, None], rtol=1e-5, atol=1e-6)


def test_association_is_eq_8(xu):
    x, u = xu
    earlier = [np.array([[0.2], [0.5], [0.7]], "float32"), np.array([[0.9], [0.1], [0.4]], "float32")]
    layer = FocusAssociation(association_ratio=4)
    _, k = layer([x, u, *earlier])
    w1, b1 = layer.focus_reduce.get_weights()
    w2, b2 = layer.focus_out.get_weights()
    k_focus = sigmoid(relu(x.mean(axis=(1, 2)) @ w1 + b1) @ w2 + b2)
    w3, b3 = layer.association_expand.get_weights()
    w4, b4 = layer.association_out.get_weights()
    assert w3.shape == (3, 12) and w4.shape == (12, 1)  # i -> r2 * i -> 1, i = 3
    s = np.concatenate([*earlier, k_focus], axis=-1)
    np.testing.assert_allclose(np_(k), sigmoid(relu(s @ w3 + b3) @ w4 + b4), rtol=1e-5)


def test_chain_association_grows_with_block_index_and_gates_in_unit_interval():
    inputs = keras.Input((8, 8, 4))
    chain = FAChain(True)
    x = inputs
    for b in range(5):
        block_in = x
        x = chain(block_in, keras.layers.Conv2D(4, 3, padding="same")(x), f"block{b}_fa")
    model = keras.Model(inputs, x)
    fa = [layer for layer in model.layers if isinstance(layer, FocusAssociation)]
    assert [layer.name for layer in fa] == ["block1_fa", "block2_fa", "block3_fa", "block4_fa"]
    assert not hasattr(fa[0], "association_expand")  # Eq. 4: k_1 = k'_1
    widths = [tuple(layer.association_expand.kernel.shape) for layer in fa[1:]]
    assert widths == [(2, 8), (3, 12), (4, 16)]
    gates = keras.Model(inputs, [layer.output[1] for layer in fa])
    for k in gates.predict(np.random.default_rng(0).normal(size=(6, 8, 8, 4)) * 50, verbose=0):
        assert k.shape == (6, 1) and np.all((k > 0) & (k < 1))


def test_projection_when_shapes_differ():
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 4)).astype("float32")
    u = np.random.default_rng(3).normal(size=(2, 4, 4, 6)).astype("float32")
    layer = FocusAssociation()
    out, k = layer([x, u])
    assert tuple(layer.projection.kernel.shape) == (1, 1, 4, 6) and not layer.projection.use_bias
    assert tuple(layer.focus_reduce.kernel.shape) == (4, 1)  # focus reads X itself
    xp = np.einsum("bhwc,cd->bhwd", x[:, ::2, ::2], layer.projection.get_weights()[0][0, 0])
    kk = np_(k)[:, :, None, None]
    np.testing.assert_allclose(np_(out), xp + (u - xp) * kk, rtol=1e-4, atol=1e-5)


def test_squeeze_excite_equation():
    x = np.random.default_rng(4).normal(size=(2, 5, 5, 16)).astype("float32")
    layer = SqueezeExcite(ratio=4)
    y = np_(layer(x))
    w1, b1 = layer.squeeze.get_weights()
    w2, b2 = layer.excite.get_weights()
    assert w1.shape == (16, 4) and w2.shape == (4, 16)
    scale = sigmoid(relu(x.mean(axis=(1, 2)) @ w1 + b1) @ w2 + b2)
    np.testing.assert_allclose(y, x * scale[:, None, None, :], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np_(layer.excitation(x)), scale, rtol=1e-5)


def test_serialization_round_trips(xu):
    x, u = xu
    clone = run_layer_serialization_test(FocusAssociation(focus_ratio=2, association_ratio=3), [x, u, x[:, 0, 0, :1]])
    assert clone.focus_ratio == 2 and clone.association_ratio == 3
    assert run_layer_serialization_test(SqueezeExcite(ratio=2), x).ratio == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True])
def test_bad_ratios_are_rejected(bad):
    with pytest.raises(ValueError, match="ratio"):
        FocusAssociation(focus_ratio=bad)
    with pytest.raises(ValueError, match="ratio"):
        SqueezeExcite(ratio=bad)


def test_bad_inputs_say_what_was_expected(xu):
    x, u = xu
    with pytest.raises(ValueError, match=r"list \[x, u"):
        FocusAssociation()(x)
    with pytest.raises(ValueError, match="4D"):
        SqueezeExcite()(np.ones((2, 8), "float32"))
    with pytest.raises(ValueError, match="multiple"):
        FocusAssociation()([x, np.ones((3, 3, 3, 8), "float32")])
    layer = FocusAssociation()
    layer([x, u, np.ones((3, 1), "float32")])
    with pytest.raises(ValueError, match="1 earlier gates, got 0"):
        layer([x, u])
