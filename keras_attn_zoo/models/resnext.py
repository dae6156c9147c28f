"""CIFAR ResNeXt-29 (Xie et al. 2017) with SE, FA or FA-SE, as in FANet Tables I-II."""

import keras

from keras_attn_zoo.models.abn import attention_branch
from keras_attn_zoo.models.common import (
    check_classes, conv_bn, finish, head, model_input, parse_attention,
)

STAGE_OUTPUTS = (256, 512, 1024)


def bottleneck_block(x, width, out_channels, strides, cardinality, name, attention, epsilon=1e-3):
    """1x1 -> grouped 3x3 (stride here) -> 1x1 (+ SE) + 1x1-conv-BN projection shortcut."""
    if strides != 1 or x.shape[-1] != out_channels:
        shortcut = conv_bn(x, out_channels, 1, f"{name}_shortcut", strides=strides, relu=False, epsilon=epsilon)
    else:
        shortcut = x
    y = conv_bn(x, width, 1, f"{name}_1", epsilon=epsilon)
    y = conv_bn(y, width, 3, f"{name}_2", strides=strides, groups=cardinality, epsilon=epsilon)
    y = conv_bn(y, out_channels, 1, f"{name}_3", relu=False, epsilon=epsilon)
    y = attention.squeeze_excite(y, f"{name}_se")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y), shortcut


def resnext_cifar(
    depth=29,
    cardinality=8,
    base_width=64,
    attention=None,
    *,
    bn_epsilon=1e-3,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    se_ratio=8,
    fa_ratios=(4, 4),
    stem_strides=None,
    name=None,
):
    """CIFAR ResNeXt-(9n+2): 3 stages of n bottleneck blocks, outputs 256/512/1024 channels.

    Reference: Xie et al., "Aggregated Residual Transformations for Deep Neural Networks"
    (CVPR 2017), Section 5.3; FANet (Liu et al.) uses ResNeXt-29 with cardinality 8 and width
    16, the ABN paper 8x64d. Stage s has bottleneck width ``cardinality * base_width * 2**s``.
    Attention is deployed as for the CIFAR ResNet: SE in each residual branch (r = 8 reproduces
    Tables I-II), FA among blocks and among stages, the stage-level X being the stage input
    projected by its first block's shortcut; or ABN (Fukui et al.): the attention branch after
    stage 2 (a stride-1 copy of stage 3), stage 3 as the perception branch.

    Args:
        depth: 9n + 2. Defaults to 29.
        cardinality: number of groups. Defaults to 8.
        base_width: width of one group in the first stage. Defaults to 64.
        attention: None, "se", "fa", "fa_se" or "abn". Defaults to None.
        bn_epsilon: BatchNorm epsilon (1e-5 matches PyTorch checkpoints). Defaults to 1e-3.
        include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``; input at least 8x8.
        se_ratio: SE reduction ratio. Defaults to 8.
        fa_ratios: FA (r1, r2). Defaults to (4, 4).
        stem_strides: first conv's stride. Defaults to 2 for inputs of 64 pixels or more.
        name: model name. Defaults to e.g. "fa_resnext29_8x16d".

    Returns:
        A functional ``keras.Model``.

    Example:
    >>> resnext_cifar(base_width=16, attention="se").name
    'se_resnext29_8x16d'
    """
    if not isinstance(depth, int) or depth < 11 or (depth - 2) % 9:
        raise ValueError(f"CIFAR ResNeXt depth must be 9n + 2 (29, ...), got {depth!r}.")
    for arg, value in (("cardinality", cardinality), ("base_width", base_width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}.")
    blocks = (depth - 2) // 9
    att = parse_attention(
        attention, se_ratio, fa_ratios, allowed=(None, "se", "fa", "fa_se", "abn"), include_top=include_top
    )
    classes = check_classes(classes, include_top, classifier_activation, att)
    inputs = model_input(input_shape, input_tensor, (32, 32, 3), 8, "CIFAR ResNeXt")
    if stem_strides is None:
        side = inputs.shape[1]
        stem_strides = 2 if side is not None and side >= 64 else 1

    def stage(x, s, strides, prefix):
        width = cardinality * base_width * 2 ** (s - 1)
        chain = att.chain()
        for b in range(1, blocks + 1):
            block_in = x
            u, short = bottleneck_block(
                x, width, STAGE_OUTPUTS[s - 1], strides if b == 1 else 1, cardinality,
                f"{prefix}_block{b}", att, bn_epsilon,
            )
            if b == 1:
                stage_in = short
            x = chain(block_in, u, f"{prefix}_block{b}_fa")
        return x, stage_in

    x = conv_bn(inputs, 64, 3, "stem", strides=stem_strides, epsilon=bn_epsilon)
    stages = att.chain()
    abn_logits = None
    for s in (1, 2, 3):
        if att.abn and s == 3:
            # the authors' ResNeXt creates the BN after the stage copy but never calls it
            x, abn_logits, _ = attention_branch(
                x, lambda t: stage(t, 3, 1, "abn")[0], classes, bn_epsilon, branch_bn=False
            )
        u, stage_in = stage(x, s, 1 if s == 1 else 2, f"stage{s}")
        x = stages(stage_in, u, f"stage{s}_fa")
    x = head(x, include_top, pooling, classes, classifier_activation)
    default_name = f"{attention + '_' if attention else ''}resnext{depth}_{cardinality}x{base_width}d"
    return finish(inputs, x, name or default_name, abn_logits)
