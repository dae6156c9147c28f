"""Multiply-adds (keras_attn_zoo/flops.py) against hand counts and published numbers."""

import keras
import pytest

import keras_attn_zoo as zoo
from keras_attn_zoo.flops import count_macs, layer_macs
from keras_attn_zoo.layers import FocusAssociation, PayaModule, SqueezeExcite
from keras_attn_zoo.layers.attention_branch import AttentionMapWeighting


def _model(shape, *layers):
    x = inputs = keras.Input(shape)
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def test_a_single_convolution_and_dense_layer():
    # 3x3 conv, 5 -> 7 channels, stride 2 "same" on 9x9: a 5x5x7 output, each 3*3*5 products
    model = _model((9, 9, 5), keras.layers.Conv2D(7, 3, strides=2, padding="same", name="conv"),
                   keras.layers.BatchNormalization(), keras.layers.ReLU(),
                   keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, name="fc"))
    assert layer_macs(model) == {"conv": 5 * 5 * 7 * 3 * 3 * 5, "fc": 7 * 4}
    assert count_macs(model) == 5 * 5 * 7 * 45 + 28
    grouped = _model((8, 8, 8), keras.layers.Conv2D(16, 3, padding="same", groups=4, name="g"))
    assert count_macs(grouped) == 8 * 8 * 16 * 9 * 2  # each output sees C_in / groups = 2 channels
    depthwise = _model((6, 6, 4), keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"))
    assert count_macs(depthwise) == 4 * 4 * 4 * 2 * 9


def test_attention_layers_count_their_own_products():
    se = _model((4, 4, 16), SqueezeExcite(4, name="se"))
    assert count_macs(se) == 16 * 4 + 4 * 16 + 4 * 4 * 16  # two Dense layers and the scaling

    # FA on X (8x8x16) and U (4x4x32, a stride-2 conv of X) after one earlier gate k1
    x = keras.Input((8, 8, 16))
    u = keras.layers.Conv2D(32, 1, strides=2, use_bias=False, name="u")(x)
    k1 = keras.layers.Dense(1, activation="sigmoid", name="k1")(keras.layers.GlobalAveragePooling2D()(x))
    out, _ = FocusAssociation(4, 4, name="fa")([x, u, k1])
    # focus 16 -> 4 -> 1, association [k1, k'] 2 -> 8 -> 1, the 1x1 projection, the weighting
    assert layer_macs(keras.Model(x, out)) == {
        "u": 4 * 4 * 32 * 16, "k1": 16, "fa": 16 * 4 + 4 + 2 * 8 + 8 + 4 * 4 * 32 * 16 + 4 * 4 * 32}

    paya = _model((4, 4, 8), PayaModule(classes=3, heads=2, name="paya"))
    n = 4 * 4  # three 3x3 convs to H, H * C and H; sum_xy M O, sum_xy M s; gated head sum
    assert count_macs(paya) == n * 9 * 8 * (2 + 2 * 3 + 2) + n * 2 * 3 + n * 2 + 2 * 3

    # ABN's (1 + M) * g; multi-task ABN: one weighted copy of g per task, and every layer after
    # it runs on the T copies
    g = keras.Input((4, 4, 8))
    for tasks in (1, 3):
        m = keras.layers.Conv2D(tasks, 1, use_bias=False, name="m")(g)
        weighted = AttentionMapWeighting(name="w")([g, m])
        after = keras.layers.Conv2D(2, 1, use_bias=False, name="after")(weighted)
        assert layer_macs(keras.Model(g, after)) == {
            "m": 4 * 4 * tasks * 8, "w": tasks * 4 * 4 * 8, "after": tasks * 4 * 4 * 2 * 8}


def test_resnet20_is_he_et_als_count_plus_fanets_projection_shortcuts():
    """He et al.'s CIFAR ResNet-20 (3x3 convs, 16/32/64 channels at 32/16/8 pixels): 40.55M
    multiply-adds with parameter-free shortcuts (their ~41M); ours has FANet's two 3x3-conv
    projection shortcuts on top."""
    stem = 32 * 32 * 16 * 27
    stage1 = 6 * 32 * 32 * 16 * 9 * 16
    stage2 = 16 * 16 * 32 * 9 * 16 + 5 * 16 * 16 * 32 * 9 * 32
    stage3 = 8 * 8 * 64 * 9 * 32 + 5 * 8 * 8 * 64 * 9 * 64
    he = stem + stage1 + stage2 + stage3 + 64 * 10
    assert he == 40_551_040
    shortcuts = 16 * 16 * 32 * 9 * 16 + 8 * 8 * 64 * 9 * 32
    model = zoo.load("resnet20")
    assert count_macs(model) == he + shortcuts
    assert layer_macs(model)["stage2_block1_shortcut_conv"] == 16 * 16 * 32 * 9 * 16
    # the attention mechanisms add their own terms only
    se = zoo.load("se_resnet20")  # r = 4 in 9 blocks: C * C/4 * 2 + H W C
    blocks = [(32 * 32, 16)] * 3 + [(16 * 16, 32)] * 3 + [(8 * 8, 64)] * 3
    assert count_macs(se) - count_macs(model) == sum(2 * c * (c // 4) + n * c for n, c in blocks)


def test_imagenet_resnets_give_torchvisions_published_counts():
    """torchvision lists ResNet-18 at 1.81 and ResNet-50 at 4.09 "GFLOPS" (multiply-adds) for
    224x224 images; the size-agnostic build is counted at 224."""
    assert round(count_macs(zoo.load("resnet18", input_shape=(None, None, 3)), (224, 224, 3)) / 1e9, 2) == 1.81
    assert round(count_macs(zoo.load("resnet50")) / 1e9, 2) == 4.09


def test_unknown_layers_and_unknown_sizes_are_errors():
    with pytest.raises(ValueError, match="No multiply-add count is known for layer 'lstm' of type LSTM"):
        count_macs(_model((5, 3), keras.layers.LSTM(4, name="lstm")))
    with pytest.raises(ValueError, match=r"needs a concrete image shape; .* takes \(None, None, 3\).*input_shape=\(H, W, C\)"):
        count_macs(_model((None, None, 3), keras.layers.Conv2D(2, 3)))
