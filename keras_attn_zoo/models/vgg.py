"""VGG-19 with batch normalisation and one FC classifier, as FANet uses it (Section IV.A)."""

import keras

from keras_attn_zoo.models.common import (
    check_classes, conv_bn, finish, head, model_input, parse_attention,
)

VGG19_STAGES = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def vgg_bn(
    stages=VGG19_STAGES,
    attention=None,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    se_ratio=4,
    fa_ratios=(4, 4),
    name=None,
):
    """VGG with BN before each ReLU, attention per block, a global max pool and one FC layer.

    Reference: Simonyan & Zisserman (ICLR 2015) as modified by FANet (Liu et al.), Section
    IV.A: BN before each activation, the two hidden FC layers removed, a global max pool before
    the classifier (Section IV.B; on 32x32 inputs the map is already 1x1, so it is a no-op).
    Each of the 5 blocks (its convolutions and its 2x2 max pool) is one FA block (Fig. 1,
    n = 4): block 1 is the benchmark, blocks 2-5 are recalibrated with X = the block's input,
    U = its pooled output, and FA's own 1x1 stride-2 projection of X (no bias) for the
    weighting. That reading reproduces Tables I, II, III and V exactly (e.g. FA-VGG-19 on
    CIFAR-10: 20,556,909 = 20.56M). SE rescales the last conv's output of each block
    (r = 4 reproduces Tables I-II; Table III's SE row used r = 8).

    Args:
        stages: (filters, convs) per block. Defaults to VGG-19's.
        attention: None, "se", "fa" or "fa_se". Defaults to None.
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``; input at least 32x32.
        se_ratio: SE reduction ratio. Defaults to 4.
        fa_ratios: FA (r1, r2). Defaults to (4, 4).
        name: model name. Defaults to e.g. "fa_vgg19_bn".

    Returns:
        A functional ``keras.Model``.

    Example:
    >>> vgg_bn(attention="fa").get_layer("stage5_fa").name
    'stage5_fa'
    """
    att = parse_attention(attention, se_ratio, fa_ratios)
    check_classes(classes, include_top)
    inputs = model_input(input_shape, input_tensor, (32, 32, 3), 2 ** len(stages), "VGG")
    x = inputs
    blocks = att.chain()
    for s, (filters, convs) in enumerate(stages, start=1):
        block_in = x
        for c in range(1, convs + 1):
            x = conv_bn(x, filters, 3, f"stage{s}_{c}")
        x = att.squeeze_excite(x, f"stage{s}_se")
        x = keras.layers.MaxPooling2D(2, name=f"stage{s}_pool")(x)
        x = blocks(block_in, x, f"stage{s}_fa")
    x = head(x, include_top, pooling, classes, classifier_activation, top_pool="max")
    depth = sum(c for _, c in stages) + 3
    default_name = f"{attention + '_' if attention else ''}vgg{depth}_bn"
    return finish(inputs, x, name or default_name, weights)
