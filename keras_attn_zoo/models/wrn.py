"""Wide ResNet (Zagoruyko & Komodakis, BMVC 2016) for CIFAR, plain, with an attention branch
(ABN) or with PAYA attention modules (WARN, Attend-and-Rectify)."""

import keras

from keras_attn_zoo.models.abn import attention_branch
from keras_attn_zoo.models.common import check_classes, classifier_top, conv2d, model_input, parse_attention


def wide_block(x, filters, strides, dropout, name, epsilon, spatial_dropout=False):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, plus a shortcut that is
    a plain 1x1 conv (no BN) from the pre-activated input when the shape changes.

    Returns (output, the pre-activated input ``{name}_1_relu``)."""
    pre = keras.layers.BatchNormalization(epsilon=epsilon, name=f"{name}_1_bn")(x)
    pre = keras.layers.ReLU(name=f"{name}_1_relu")(pre)
    if strides != 1 or x.shape[-1] != filters:
        short = conv2d(pre, filters, 1, f"{name}_shortcut_conv", strides=strides)
    else:
        short = x
    y = conv2d(pre, filters, 3, f"{name}_1_conv", strides=strides)
    y = keras.layers.BatchNormalization(epsilon=epsilon, name=f"{name}_2_bn")(y)
    y = keras.layers.ReLU(name=f"{name}_2_relu")(y)
    if dropout:
        drop = keras.layers.SpatialDropout2D if spatial_dropout else keras.layers.Dropout
        y = drop(dropout, name=f"{name}_dropout")(y)
    y = conv2d(y, filters, 3, f"{name}_2_conv")
    return keras.layers.Add(name=f"{name}_add")([short, y]), pre


def wide_resnet(
    depth=28,
    width=10,
    attention=None,
    *,
    dropout=0.0,
    spatial_dropout=False,
    bn_epsilon=1e-5,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    attention_depth=3,
    attention_heads=4,
    reg_weight=1e-3,
    gate="softmax",
    auxiliary_weight=0.0,
    name=None,
):
    """WRN-depth-width: 3 groups of (depth - 4) / 6 pre-activation blocks, 16k/32k/64k channels.

    Reference: Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016); with
    ``attention="abn"`` the attention branch of Fukui et al. sits after group 2 (a stride-1
    copy of group 3), group 3 being the perception branch. With ``attention="paya"`` (the
    WARN of Rodriguez et al., "Attend and Rectify", ECCV 2018, as the authors' code builds it)
    the stem gets BN-ReLU (``stem_bn``, ``stem_relu``) and PAYA modules sit at the end of the
    last ``attention_depth`` groups, on the group's output after the next block's
    pre-activation (``stage2_block1_1_relu``, ``stage3_block1_1_relu``; ``head_relu`` for the
    last group), named ``stage1_paya``... (see :mod:`keras_attn_zoo.models.paya`).

    Args:
        depth: 6n + 4. Defaults to 28.
        width: widening factor k. Defaults to 10.
        attention: None, "abn" or "paya". Defaults to None.
        dropout: dropout rate between the convs of a block (the ABN paper: 0.3). Defaults to 0.
        spatial_dropout: drop whole channels (``SpatialDropout2D``, PyTorch's ``Dropout2d`` as
            the PAYA authors' code) instead of single activations. Defaults to False.
        bn_epsilon: BatchNorm epsilon. Defaults to 1e-5 (the PyTorch checkpoints').
        include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``; input at least 8x8.
        attention_depth: PAYA: the number of modules, 1 to 3 (the last groups). Defaults to 3.
        attention_heads: PAYA: heads per module. Defaults to 4.
        reg_weight: PAYA: weight of the head-diversity regulariser (averaged over modules).
            Defaults to 1e-3.
        gate: PAYA: "softmax" or "sigmoid" global gates. Defaults to "softmax".
        auxiliary_weight: PAYA: weight of a per-module cross-entropy added in training (ours,
            not the papers'). Defaults to 0.
        name: model name. Defaults to e.g. "abn_wrn28_10".

    Returns:
        A functional ``keras.Model`` (an ``ABNModel`` with ``attention="abn"``, a
        ``PAYAModel`` with ``attention="paya"``).

    Example:
    >>> wide_resnet(16, 2).name
    'wrn16_2'
    """
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n + 4 (16, 22, 28, 40...), got {depth!r}.")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"WRN width must be a positive integer, got {width!r}.")
    att = parse_attention(attention, 16, allowed=(None, "abn", "paya"), include_top=include_top)
    classes = check_classes(classes, include_top, classifier_activation, att)
    inputs = model_input(input_shape, input_tensor, (32, 32, 3), 8, "Wide ResNet")
    n = (depth - 4) // 6
    filters = (16 * width, 32 * width, 64 * width)

    pre_activations = []  # each group's first pre-activation: the end of the group before

    def group(x, g, strides, prefix):
        for b in range(1, n + 1):
            x, pre = wide_block(x, filters[g - 1], strides if b == 1 else 1, dropout, f"{prefix}_block{b}", bn_epsilon, spatial_dropout)
            if b == 1:
                pre_activations.append(pre)
        return x

    x = conv2d(inputs, 16, 3, "stem_conv")
    if att.paya:  # the authors' attention model has a stem BN-ReLU, their plain WRN none
        x = keras.layers.BatchNormalization(epsilon=bn_epsilon, name="stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
    abn_logits = None
    for g in (1, 2, 3):
        if att.abn and g == 3:
            x, abn_logits, _ = attention_branch(x, lambda t: group(t, 3, 1, "abn"), classes, bn_epsilon)
        x = group(x, g, 1 if g == 1 else 2, f"stage{g}")
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, name="head_bn")(x)
    x = keras.layers.ReLU(name="head_relu")(x)
    default_name = f"{attention + '_' if attention else ''}wrn{depth}_{width}"
    # stage g ends where stage g + 1's first block pre-activates; the last at head_relu
    stage_features = [pre_activations[1], pre_activations[2], x]
    paya_options = {"attention_depth": attention_depth, "attention_heads": attention_heads, "reg_weight": reg_weight,
                    "gate": gate, "auxiliary_weight": auxiliary_weight}
    return classifier_top(inputs, x, stage_features, att, paya_options, include_top=include_top, pooling=pooling,
                          classes=classes, classifier_activation=classifier_activation, name=name or default_name,
                          abn_logits=abn_logits)
