"""CIFAR ResNet (He et al. 2016, Section 4.2) with SE, FA, FA-SE (FANet), ABN or PAYA."""

import keras

from keras_attn_zoo.models.abn import attention_branch
from keras_attn_zoo.models.common import (
    check_classes, classifier_top, conv_bn, model_input, parse_attention,
)

STAGE_FILTERS = (16, 32, 64)
SHORTCUT_KERNELS = {"conv3x3": 3, "conv1x1": 1}


def paper_se_ratio(depth):
    """FANet tried r = 4 and 8 and kept the better: 4 for ResNet-20, 8 for the deeper ones."""
    return 4 if depth < 32 else 8


def _shortcut(x, channels, strides, name, shortcut, epsilon):
    if strides == 1 and x.shape[-1] == channels:
        return x
    kernel = SHORTCUT_KERNELS[shortcut]
    return conv_bn(x, channels, kernel, f"{name}_shortcut", strides=strides, relu=False, epsilon=epsilon)


def basic_block(x, filters, strides, name, attention, shortcut="conv3x3", epsilon=1e-3):
    """Two 3x3 conv-BN layers (+ SE) and a shortcut; returns (output, shortcut)."""
    short = _shortcut(x, filters, strides, name, shortcut, epsilon)
    y = conv_bn(x, filters, 3, f"{name}_1", strides=strides, epsilon=epsilon)
    y = conv_bn(y, filters, 3, f"{name}_2", relu=False, epsilon=epsilon)
    y = attention.squeeze_excite(y, f"{name}_se")
    y = keras.layers.Add(name=f"{name}_add")([short, y])
    return keras.layers.ReLU(name=f"{name}_out")(y), short


def bottleneck_block(x, filters, strides, name, attention, shortcut="conv1x1", epsilon=1e-3):
    """1x1 -> 3x3 (stride here) -> 1x1 to 4 * filters (+ SE) and a shortcut."""
    out = 4 * filters
    short = _shortcut(x, out, strides, name, shortcut, epsilon)
    y = conv_bn(x, filters, 1, f"{name}_1", epsilon=epsilon)
    y = conv_bn(y, filters, 3, f"{name}_2", strides=strides, epsilon=epsilon)
    y = conv_bn(y, out, 1, f"{name}_3", relu=False, epsilon=epsilon)
    y = attention.squeeze_excite(y, f"{name}_se")
    y = keras.layers.Add(name=f"{name}_add")([short, y])
    return keras.layers.ReLU(name=f"{name}_out")(y), short


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def resnet_cifar(
    depth=20,
    attention=None,
    *,
    block="basic",
    shortcut="conv3x3",
    bn_epsilon=1e-3,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    se_ratio=None,
    fa_ratios=(4, 4),
    stem_strides=None,
    attention_depth=3,
    attention_heads=4,
    reg_weight=1e-3,
    gate="softmax",
    auxiliary_weight=0.0,
    name=None,
):
    """CIFAR ResNet: 3 stages of n = (depth - 2) / 6 blocks with 16/32/64 base channels.

    Reference: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), with the
    attention deployments of FANet (Liu et al.), Fig. 4 and Fig. 5: SE inside each residual
    branch, FA among the blocks of each stage and again among the stages, FA-SE both; and the
    Attention Branch Network (Fukui et al.): the attention branch after stage 2 (a stride-1
    copy of stage 3), stage 3 as the perception branch; and PAYA (Rodriguez et al., "Attend
    and Rectify"): attention modules ``stage{s}_paya`` on the outputs of the last
    ``attention_depth`` stages (``stage{s}_block{n}_out``), global gates and the gated
    log-probability output (see :mod:`keras_attn_zoo.models.paya`).

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110, ...). Defaults to 20.
        attention: None, "se", "fa", "fa_se", "abn" or "paya". Defaults to None.
        block: "basic" (two 3x3 convs) or "bottleneck" (1x1-3x3-1x1, 4x wider output; the ABN
            authors' choice for depth >= 44, still with n = (depth - 2) / 6 blocks per stage).
            Defaults to "basic".
        shortcut: shape-changing shortcut, "conv3x3" (3x3 stride-2 conv + BN, which
            reproduces FANet's counts) or "conv1x1" (the ABN code's). Defaults to "conv3x3".
        bn_epsilon: BatchNorm epsilon (1e-5 matches PyTorch checkpoints). Defaults to 1e-3.
        include_top: end in the classifier ``predictions``. Defaults to True.
        input_tensor: optional Keras tensor to build the model on.
        input_shape: (H, W, C). Defaults to (32, 32, 3); at least 8x8, or None for any size.
        pooling: with ``include_top=False``: None, "avg" or "max". Defaults to None.
        classes: number of classes. Defaults to 10.
        classifier_activation: activation of ``predictions``. Defaults to "softmax".
        se_ratio: SE reduction ratio. Defaults to the paper's: 4 for depth 20, else 8.
        fa_ratios: FA (r1, r2). Defaults to (4, 4).
        stem_strides: stride of the first conv. Defaults to 2 for inputs of 64 pixels or more
            (FANet's Tiny ImageNet setting), else 1.
        attention_depth: PAYA: the number of modules, 1 to 3 (the last stages). Defaults to 3.
        attention_heads: PAYA: heads per module. Defaults to 4.
        reg_weight: PAYA: weight of the head-diversity regulariser (averaged over modules).
            Defaults to 1e-3.
        gate: PAYA: "softmax" or "sigmoid" global gates. Defaults to "softmax".
        auxiliary_weight: PAYA: weight of a per-module cross-entropy added in training (ours,
            not the papers'). Defaults to 0.
        name: model name. Defaults to e.g. "fa_resnet56".

    Returns:
        A functional ``keras.Model`` (an ``ABNModel`` with ``attention="abn"``, a
        ``PAYAModel`` with ``attention="paya"``).

    Example:
    >>> model = resnet_cifar(56, attention="fa")
    >>> model.name, model.get_layer("stage3_block9_fa").name
    ('fa_resnet56', 'stage3_block9_fa')
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (20, 32, 56...), got {depth!r}.")
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}.")
    if shortcut not in SHORTCUT_KERNELS:
        raise ValueError(f"shortcut must be one of {sorted(SHORTCUT_KERNELS)}, got {shortcut!r}.")
    blocks = (depth - 2) // 6
    att = parse_attention(
        attention, se_ratio or paper_se_ratio(depth), fa_ratios,
        allowed=(None, "se", "fa", "fa_se", "abn", "paya"), include_top=include_top,
    )
    classes = check_classes(classes, include_top, classifier_activation, att)
    inputs = model_input(input_shape, input_tensor, (32, 32, 3), 8, "CIFAR ResNet")
    if stem_strides is None:
        side = inputs.shape[1]
        stem_strides = 2 if side is not None and side >= 64 else 1
    block_fn = BLOCKS[block]

    def stage(x, filters, strides, prefix):
        """n blocks; FA among them; returns (output, the stage input as projected by block 1)."""
        chain = att.chain()
        for b in range(1, blocks + 1):
            block_in = x
            u, short = block_fn(x, filters, strides if b == 1 else 1, f"{prefix}_block{b}", att, shortcut, bn_epsilon)
            if b == 1:
                stage_in = short
            x = chain(block_in, u, f"{prefix}_block{b}_fa")
        return x, stage_in

    x = conv_bn(inputs, STAGE_FILTERS[0], 3, "stem", strides=stem_strides, epsilon=bn_epsilon)
    stages = att.chain()
    abn_logits = None
    stage_features = []
    for s, filters in enumerate(STAGE_FILTERS, start=1):
        if att.abn and s == len(STAGE_FILTERS):
            x, abn_logits, _ = attention_branch(
                x, lambda t: stage(t, filters, 1, "abn")[0], classes, bn_epsilon
            )
        u, stage_in = stage(x, filters, 1 if s == 1 else 2, f"stage{s}")
        x = stages(stage_in, u, f"stage{s}_fa")
        stage_features.append(x)
    default_name = f"{attention + '_' if attention else ''}resnet{depth}"
    paya_options = {"attention_depth": attention_depth, "attention_heads": attention_heads, "reg_weight": reg_weight,
                    "gate": gate, "auxiliary_weight": auxiliary_weight}
    return classifier_top(inputs, x, stage_features, att, paya_options, include_top=include_top, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation, name=name or default_name,
                          abn_logits=abn_logits)
