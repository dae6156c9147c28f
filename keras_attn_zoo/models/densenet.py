"""DenseNet-BC (Huang et al., CVPR 2017) for CIFAR, plain or with an attention branch."""

import keras

from keras_attn_zoo.models.abn import attention_branch
from keras_attn_zoo.models.common import check_classes, finish, head, model_input, parse_attention


def _bn_relu_conv(x, filters, kernel, name, epsilon):
    x = keras.layers.BatchNormalization(epsilon=epsilon, name=f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)


def dense_block(x, layers, growth, name, epsilon, dropout):
    """``layers`` bottleneck layers (BN-ReLU-1x1 to 4k, BN-ReLU-3x3 to k), each concatenated."""
    for i in range(1, layers + 1):
        y = _bn_relu_conv(x, 4 * growth, 1, f"{name}_layer{i}_1", epsilon)
        y = _bn_relu_conv(y, growth, 3, f"{name}_layer{i}_2", epsilon)
        if dropout:
            y = keras.layers.Dropout(dropout, name=f"{name}_layer{i}_dropout")(y)
        x = keras.layers.Concatenate(name=f"{name}_layer{i}_concat")([x, y])
    return x


def densenet_bc(
    depth=100,
    growth_rate=12,
    attention=None,
    *,
    compression=0.5,
    dropout=0.0,
    bn_epsilon=1e-5,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name=None,
):
    """DenseNet-BC-depth-k: 3 dense blocks of (depth - 4) / 6 bottleneck layers.

    Reference: Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017), CIFAR
    version (3x3 stem conv to 2k channels, transitions BN-ReLU-1x1 conv with compression, 2x2
    average pool). With ``attention="abn"`` the attention branch of Fukui et al. sits after
    transition 2 (8x8 for 32x32 inputs): a copy of dense block 3, then the ABN heads; dense
    block 3 with the final BN-ReLU is the perception branch.

    Args:
        depth: 6n + 4. Defaults to 100.
        growth_rate: k. Defaults to 12.
        attention: None or "abn". Defaults to None.
        compression: transition compression. Defaults to 0.5.
        dropout: dropout after each 3x3 conv. Defaults to 0.
        bn_epsilon: BatchNorm epsilon. Defaults to 1e-5 (the PyTorch checkpoints').
        include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``; input at least 8x8.
        name: model name. Defaults to e.g. "abn_densenet_bc100_12".

    Returns:
        A functional ``keras.Model`` (an ``ABNModel`` with ``attention="abn"``).

    Example:
    >>> densenet_bc(40, 12).name
    'densenet_bc40_12'
    """
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth must be 6n + 4 (40, 100, 190...), got {depth!r}.")
    if not 0 < compression <= 1:
        raise ValueError(f"compression must be in (0, 1], got {compression!r}.")
    att = parse_attention(attention, 16, allowed=(None, "abn"), include_top=include_top)
    classes = check_classes(classes, include_top, classifier_activation, att)
    inputs = model_input(input_shape, input_tensor, (32, 32, 3), 8, "DenseNet-BC")
    layers = (depth - 4) // 6

    x = keras.layers.Conv2D(2 * growth_rate, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    abn_logits = None
    for s in (1, 2, 3):
        if att.abn and s == 3:
            x, abn_logits, _ = attention_branch(
                x, lambda t: dense_block(t, layers, growth_rate, "abn", bn_epsilon, dropout), classes, bn_epsilon
            )
        x = dense_block(x, layers, growth_rate, f"stage{s}", bn_epsilon, dropout)
        if s < 3:
            x = _bn_relu_conv(x, int(x.shape[-1] * compression), 1, f"transition{s}", bn_epsilon)
            x = keras.layers.AveragePooling2D(2, name=f"transition{s}_pool")(x)
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, name="head_bn")(x)
    x = keras.layers.ReLU(name="head_relu")(x)
    x = head(x, include_top, pooling, classes, classifier_activation)
    default_name = f"{attention + '_' if attention else ''}densenet_bc{depth}_{growth_rate}"
    return finish(inputs, x, name or default_name, abn_logits)
