"""Inception-v4 (Szegedy et al. 2017) for small images, as FANet adapts it (Section IV.A)."""

import keras

from keras_attn_zoo.models.common import (
    check_classes, conv_bn, finish, head, model_input, parse_attention,
)

STAGE_BLOCKS = (4, 7, 3)  # Inception-A, -B, -C


def _concat(branches, name):
    return keras.layers.Concatenate(name=f"{name}_concat")(branches)


def _avg_branch(x, filters, name):
    y = keras.layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    return conv_bn(y, filters, 1, name)


def stem(x, reduction_padding):
    x = conv_bn(x, 32, 3, "stem_1", strides=2, padding="valid")
    x = conv_bn(x, 32, 3, "stem_2", padding="valid")
    x = conv_bn(x, 64, 3, "stem_3")
    a = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_4_pool")(x)
    b = conv_bn(x, 96, 3, "stem_4", strides=2, padding="valid")
    x = _concat([a, b], "stem_4")
    a = conv_bn(x, 64, 1, "stem_5a_1")
    a = conv_bn(a, 96, 3, "stem_5a_2", padding="valid")
    b = conv_bn(x, 64, 1, "stem_5b_1")
    b = conv_bn(b, 64, (7, 1), "stem_5b_2")
    b = conv_bn(b, 64, (1, 7), "stem_5b_3")
    b = conv_bn(b, 96, 3, "stem_5b_4", padding="valid")
    x = _concat([a, b], "stem_5")
    a = conv_bn(x, 192, 3, "stem_6", strides=2, padding=reduction_padding)
    b = keras.layers.MaxPooling2D(3, strides=2, padding=reduction_padding, name="stem_6_pool")(x)
    return _concat([a, b], "stem_6")


def inception_a(x, name):
    b0 = conv_bn(x, 96, 1, f"{name}_b0")
    b1 = conv_bn(conv_bn(x, 64, 1, f"{name}_b1_1"), 96, 3, f"{name}_b1_2")
    b2 = conv_bn(x, 64, 1, f"{name}_b2_1")
    b2 = conv_bn(conv_bn(b2, 96, 3, f"{name}_b2_2"), 96, 3, f"{name}_b2_3")
    return _concat([b0, b1, b2, _avg_branch(x, 96, f"{name}_b3")], name)


def inception_b(x, name, k):
    b0 = conv_bn(x, 384, 1, f"{name}_b0")
    b1 = conv_bn(x, 192, 1, f"{name}_b1_1")
    b1 = conv_bn(b1, 224, (1, k), f"{name}_b1_2")
    b1 = conv_bn(b1, 256, (k, 1), f"{name}_b1_3")
    b2 = conv_bn(x, 192, 1, f"{name}_b2_1")
    b2 = conv_bn(b2, 192, (1, k), f"{name}_b2_2")
    b2 = conv_bn(b2, 224, (k, 1), f"{name}_b2_3")
    b2 = conv_bn(b2, 224, (1, k), f"{name}_b2_4")
    b2 = conv_bn(b2, 256, (k, 1), f"{name}_b2_5")
    return _concat([b0, b1, b2, _avg_branch(x, 128, f"{name}_b3")], name)


def inception_c(x, name):
    b0 = conv_bn(x, 256, 1, f"{name}_b0")
    b1 = conv_bn(x, 384, 1, f"{name}_b1_1")
    b1 = [conv_bn(b1, 256, (1, 3), f"{name}_b1_2a"), conv_bn(b1, 256, (3, 1), f"{name}_b1_2b")]
    b2 = conv_bn(x, 384, 1, f"{name}_b2_1")
    b2 = conv_bn(b2, 448, (3, 1), f"{name}_b2_2")
    b2 = conv_bn(b2, 512, (1, 3), f"{name}_b2_3")
    b2 = [conv_bn(b2, 256, (1, 3), f"{name}_b2_4a"), conv_bn(b2, 256, (3, 1), f"{name}_b2_4b")]
    return _concat([b0, *b1, *b2, _avg_branch(x, 256, f"{name}_b3")], name)


def reduction_a(x, name, padding):
    b0 = conv_bn(x, 384, 3, f"{name}_b0", strides=2, padding=padding)
    b1 = conv_bn(x, 192, 1, f"{name}_b1_1")
    b1 = conv_bn(b1, 224, 3, f"{name}_b1_2")
    b1 = conv_bn(b1, 256, 3, f"{name}_b1_3", strides=2, padding=padding)
    b2 = keras.layers.MaxPooling2D(3, strides=2, padding=padding, name=f"{name}_b2_pool")(x)
    return _concat([b0, b1, b2], name)


def reduction_b(x, name, padding, k):
    b0 = conv_bn(x, 192, 1, f"{name}_b0_1")
    b0 = conv_bn(b0, 192, 3, f"{name}_b0_2", strides=2, padding=padding)
    b1 = conv_bn(x, 256, 1, f"{name}_b1_1")
    b1 = conv_bn(b1, 256, (1, k), f"{name}_b1_2")
    b1 = conv_bn(b1, 320, (k, 1), f"{name}_b1_3")
    b1 = conv_bn(b1, 320, 3, f"{name}_b1_4", strides=2, padding=padding)
    b2 = keras.layers.MaxPooling2D(3, strides=2, padding=padding, name=f"{name}_b2_pool")(x)
    return _concat([b0, b1, b2], name)


def inception_v4(
    attention=None,
    *,
    small_images=True,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    se_ratio=8,
    fa_ratios=(4, 4),
    name=None,
):
    """Inception-v4: stem, 4 Inception-A, Reduction-A, 7 Inception-B, Reduction-B, 3 Inception-C.

    Reference: Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual
    Connections on Learning" (AAAI 2017). With ``small_images`` (FANet Section IV.A) inputs
    smaller than 96x96 are zero-padded to 96x96, the reduction blocks (and the stem's last
    reduction) use same padding, and Inception-B uses 1x5/5x1 instead of 1x7/7x1. The paper's
    text names only Inception-B for that change, but its parameter counts are reproduced only
    when Reduction-B's 1x7/7x1 pair becomes 1x5/5x1 as well (SE-Inception-v4 on CIFAR-10:
    40,601,770 = 40.60M; leaving Reduction-B at 1x7 gives every row 0.29M too many), so we
    follow the counts.
    The three stages of Inception blocks carry the attention: SE on each block's output
    (r = 8 reproduces Table I), FA among the blocks of a stage and among the stages; a stage's
    X is its input, the output of the reduction before it, so no projection is needed.

    Args:
        attention: None, "se", "fa" or "fa_se". Defaults to None.
        small_images: FANet's small-image changes. Defaults to True.
        include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``. Defaults to 32x32x3 with
            ``small_images``, else 299x299x3; at least 75x75 after padding.
        se_ratio: SE reduction ratio. Defaults to 8.
        fa_ratios: FA (r1, r2). Defaults to (4, 4).
        name: model name. Defaults to e.g. "fa_inception_v4_small".

    Returns:
        A functional ``keras.Model``.

    Example:
    >>> inception_v4("se").get_layer("stage2_block7_se").name
    'stage2_block7_se'
    """
    att = parse_attention(attention, se_ratio, fa_ratios, allowed=(None, "se", "fa", "fa_se"))
    classes = check_classes(classes, include_top, classifier_activation, att)
    default_shape = (32, 32, 3) if small_images else (299, 299, 3)
    min_size = 1 if small_images else 75
    inputs = model_input(input_shape, input_tensor, default_shape, min_size, "Inception-v4")
    x = inputs
    if small_images:
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError("inception_v4(small_images=True) needs a fixed input height and width.")
        pad_h, pad_w = max(0, 96 - height), max(0, 96 - width)
        if pad_h or pad_w:
            x = keras.layers.ZeroPadding2D(
                ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)), name="stem_pad"
            )(x)
        elif min(height, width) < 75:
            raise ValueError(f"Inception-v4 needs at least 75x75 inputs, got {height}x{width}.")
    padding = "same" if small_images else "valid"
    k = 5 if small_images else 7

    x = stem(x, padding)
    blocks = {1: inception_a, 2: lambda t, n: inception_b(t, n, k), 3: inception_c}
    reductions = {2: reduction_a, 3: lambda t, n, p: reduction_b(t, n, p, k)}
    stages = att.chain()
    for s, count in enumerate(STAGE_BLOCKS, start=1):
        if s in reductions:
            x = reductions[s](x, f"reduction{s - 1}", padding)
        stage_in = x
        blocks_chain = att.chain()
        for b in range(1, count + 1):
            prefix = f"stage{s}_block{b}"
            block_in = x
            u = att.squeeze_excite(blocks[s](x, prefix), f"{prefix}_se")
            x = blocks_chain(block_in, u, f"{prefix}_fa")
        x = stages(stage_in, x, f"stage{s}_fa")
    x = head(x, include_top, pooling, classes, classifier_activation)
    suffix = "_small" if small_images else ""
    default_name = f"{attention + '_' if attention else ''}inception_v4{suffix}"
    return finish(inputs, x, name or default_name)
