"""ImageNet ResNet (He et al. 2016) and SE-ResNet (Hu et al. 2018), plain or with ABN."""

import keras

from keras_attn_zoo.layers.attention_branch import AttentionMapWeighting, TaskwiseDense
from keras_attn_zoo.models.abn import abn_model, attention_branch
from keras_attn_zoo.models.common import (
    check_classes, conv_bn, finish, head, is_count, model_input, parse_attention,
)
from keras_attn_zoo.models.resnet_cifar import basic_block, bottleneck_block

# depth: (block, blocks per stage)
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_FILTERS = (64, 128, 256, 512)


def stem(inputs, epsilon):
    """7x7/2 conv-BN-ReLU and 3x3/2 max pool, padded as PyTorch pads them."""
    x = conv_bn(inputs, 64, 7, "stem", strides=2, epsilon=epsilon)
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)


def resnet_stages(x, depth, att, epsilon, stages=(1, 2, 3, 4), prefix="stage", first_strides=None):
    """Run the given stages of an ImageNet ResNet (stride 2 on the first block of stages 2-4)."""
    block, counts = DEPTHS[depth]
    block_fn = {"basic": basic_block, "bottleneck": bottleneck_block}[block]
    for s in stages:
        for b in range(1, counts[s - 1] + 1):
            strides = (first_strides or (1 if s == 1 else 2)) if b == 1 else 1
            name = f"{prefix}{s}_block{b}" if prefix == "stage" else f"{prefix}_block{b}"
            x, _ = block_fn(x, STAGE_FILTERS[s - 1], strides, name, att, "conv1x1", epsilon)
    return x


def resnet(
    depth=50,
    attention=None,
    *,
    bn_epsilon=1e-5,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    se_ratio=16,
    name=None,
):
    """ImageNet ResNet-18/34/50/101/152, with SE ("se"), an attention branch ("abn") or both.

    References: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),
    torchvision layout (stride in the 3x3 conv, 1x1-conv + BN projection shortcuts); Hu et al.,
    "Squeeze-and-Excitation Networks" (SE on each residual branch, r = 16); Fukui et al.,
    "Attention Branch Network" (the attention branch after stage 3, 14x14 for 224x224 inputs:
    a stride-1 copy of stage 4; stage 4 is the perception branch).

    Args:
        depth: 18, 34, 50, 101 or 152. Defaults to 50.
        attention: None, "se", "abn" or "abn_se". Defaults to None.
        bn_epsilon: BatchNorm epsilon. Defaults to 1e-5 (the PyTorch checkpoints').
        include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``. Defaults to 224x224x3 and 1000
            classes; inputs at least 32x32.
        se_ratio: SE reduction ratio. Defaults to 16.
        name: model name. Defaults to e.g. "abn_resnet152".

    Returns:
        A functional ``keras.Model`` (an ``ABNModel`` with an attention branch).

    Example:
    >>> resnet(18, input_shape=(64, 64, 3), classes=5).output_shape
    (None, 5)
    """
    if depth not in DEPTHS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(DEPTHS)}, got {depth!r}.")
    att = parse_attention(attention, se_ratio, allowed=(None, "se", "abn", "abn_se"), include_top=include_top)
    classes = check_classes(classes, include_top, classifier_activation, att)
    inputs = model_input(input_shape, input_tensor, (224, 224, 3), 32, "ImageNet ResNet")
    x = resnet_stages(stem(inputs, bn_epsilon), depth, att, bn_epsilon, stages=(1, 2, 3))
    abn_logits = None
    if att.abn:
        x, abn_logits, _ = attention_branch(
            x, lambda t: resnet_stages(t, depth, att, bn_epsilon, (4,), "abn", 1), classes, bn_epsilon
        )
    x = resnet_stages(x, depth, att, bn_epsilon, stages=(4,))
    x = head(x, include_top, pooling, classes, classifier_activation)
    default_name = f"{attention + '_' if attention else ''}resnet{depth}"
    if attention == "abn_se":
        default_name = f"abn_se_resnet{depth}"
    return finish(inputs, x, name or default_name, abn_logits)


def resnet_multitask_abn(
    depth=101,
    classes=40,
    *,
    bn_epsilon=1e-5,
    input_tensor=None,
    input_shape=None,
    name=None,
):
    """Multi-task ABN (Fukui et al., Section 3.4, Fig. 3): T binary attributes, one attention
    map and one perception pass per task.

    The attention branch (a stride-1 copy of stage 4 after stage 3, then BN) ends in a 1x1
    conv (no bias) to T maps ``abn_attention_map`` (no sigmoid); their global average
    ``abn_logits`` gives the attention branch's per-task logits. Task t's perception pass runs
    the shared stage 4 on ``(1 + M_t) * g``; the T passes are batched (``batch * T`` rows
    through stage 4 at once), and each task has its own 1-unit sigmoid output. ``predict``
    returns ``(batch, T)`` attribute probabilities; ``fit`` adds the attention branch's binary
    cross-entropy to the compiled loss (use ``"binary_crossentropy"``).

    Args:
        depth: ImageNet ResNet depth. Defaults to 101.
        classes: number of binary attributes (tasks) T. Defaults to 40 (CelebA).
        bn_epsilon: BatchNorm epsilon. Defaults to 1e-5.
        input_tensor, input_shape: as in ``keras.applications``. Defaults to
            224x224x3 (14x14 maps).
        name: model name. Defaults to "abn_resnet101_multitask".

    Returns:
        An ``ABNModel``.
    """
    if depth not in DEPTHS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(DEPTHS)}, got {depth!r}.")
    if not is_count(classes) or classes < 1:
        raise ValueError(f"classes (the number of tasks) must be a positive integer, got {classes!r}.")
    tasks = int(classes)
    att = parse_attention(None, 16, allowed=(None,))
    inputs = model_input(input_shape, input_tensor, (224, 224, 3), 32, "ImageNet ResNet")
    g = resnet_stages(stem(inputs, bn_epsilon), depth, att, bn_epsilon, stages=(1, 2, 3))
    a = resnet_stages(g, depth, att, bn_epsilon, (4,), "abn", 1)
    a = keras.layers.BatchNormalization(epsilon=bn_epsilon, name="abn_bn")(a)
    maps = keras.layers.Conv2D(tasks, 1, use_bias=False, name="abn_attention_map")(a)
    abn_logits = keras.layers.GlobalAveragePooling2D(name="abn_logits")(maps)
    x = AttentionMapWeighting(name="abn_weighting")([g, maps])
    x = resnet_stages(x, depth, att, bn_epsilon, stages=(4,))
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    predictions = TaskwiseDense(tasks, 1, activation="sigmoid", name="predictions")(x)
    return abn_model(inputs, predictions, abn_logits, name or f"abn_resnet{depth}_multitask")
