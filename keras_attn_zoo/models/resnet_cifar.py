"""CIFAR ResNet (He et al. 2016, Section 4.2) with SE, FA or FA-SE, as in FANet Tables I-VI."""

import keras

from keras_attn_zoo.models.common import (
    check_classes, conv_bn, finish, head, model_input, parse_attention,
)

STAGE_FILTERS = (16, 32, 64)


def paper_se_ratio(depth):
    """FANet tried r = 4 and 8 and kept the better: 4 for ResNet-20, 8 for the deeper ones."""
    return 4 if depth < 32 else 8


def basic_block(x, filters, strides, name, attention):
    """Two 3x3 conv-BN layers (+ SE) and a shortcut; returns (output, shortcut).

    A shortcut that changes shape is a 3x3 stride-2 convolution with BN: with it the baselines
    have exactly the trainable parameter counts of FANet Table I (ResNet-20: 292,954).
    """
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 3, f"{name}_shortcut", strides=strides, relu=False)
    else:
        shortcut = x
    y = conv_bn(x, filters, 3, f"{name}_1", strides=strides)
    y = conv_bn(y, filters, 3, f"{name}_2", relu=False)
    y = attention.squeeze_excite(y, f"{name}_se")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y), shortcut


def resnet_cifar(
    depth=20,
    attention=None,
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    se_ratio=None,
    fa_ratios=(4, 4),
    stem_strides=None,
    name=None,
):
    """CIFAR ResNet-(6n+2): 3 stages of n basic blocks with 16/32/64 channels.

    Reference: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), with the
    attention deployments of FANet (Liu et al.), Fig. 4 and Fig. 5: SE inside each residual
    branch, FA among the blocks of each stage and again among the stages, FA-SE both.

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110, ...). Defaults to 20.
        attention: None, "se", "fa" or "fa_se". Defaults to None.
        include_top: end in the classifier ``predictions``. Defaults to True.
        weights: None or the path of a ``.weights.h5`` file. Defaults to None.
        input_tensor: optional Keras tensor to build the model on.
        input_shape: (H, W, C). Defaults to (32, 32, 3); at least 8x8, or None for any size.
        pooling: with ``include_top=False``: None, "avg" or "max". Defaults to None.
        classes: number of classes. Defaults to 10.
        classifier_activation: activation of ``predictions``. Defaults to "softmax".
        se_ratio: SE reduction ratio. Defaults to the paper's: 4 for depth 20, else 8.
        fa_ratios: FA (r1, r2). Defaults to (4, 4).
        stem_strides: stride of the first conv. Defaults to 2 for inputs of 64 pixels or more
            (FANet's Tiny ImageNet setting), else 1.
        name: model name. Defaults to e.g. "fa_resnet56".

    Returns:
        A functional ``keras.Model``.

    Example:
    >>> model = resnet_cifar(56, attention="fa")
    >>> model.name, model.get_layer("stage3_block9_fa").name
    ('fa_resnet56', 'stage3_block9_fa')
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (20, 32, 56...), got {depth!r}.")
    blocks = (depth - 2) // 6
    att = parse_attention(attention, se_ratio or paper_se_ratio(depth), fa_ratios)
    check_classes(classes, include_top)
    inputs = model_input(input_shape, input_tensor, (32, 32, 3), 8, "CIFAR ResNet")
    if stem_strides is None:
        side = inputs.shape[1]
        stem_strides = 2 if side is not None and side >= 64 else 1

    x = conv_bn(inputs, STAGE_FILTERS[0], 3, "stem", strides=stem_strides)
    stages = att.chain()
    for s, filters in enumerate(STAGE_FILTERS, start=1):
        blocks_chain = att.chain()
        for b in range(1, blocks + 1):
            prefix = f"stage{s}_block{b}"
            block_in = x
            u, shortcut = basic_block(x, filters, 2 if (b == 1 and s > 1) else 1, prefix, att)
            if b == 1:
                stage_in = shortcut  # the stage's input, projected by the first block's shortcut
            x = blocks_chain(block_in, u, f"{prefix}_fa")
        x = stages(stage_in, x, f"stage{s}_fa")
    x = head(x, include_top, pooling, classes, classifier_activation)
    default_name = f"{attention + '_' if attention else ''}resnet{depth}"
    return finish(inputs, x, name or default_name, weights)
