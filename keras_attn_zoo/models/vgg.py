"""VGG-19 with batch normalisation and one FC classifier, as FANet uses it (Section IV.A)."""

import keras

from keras_attn_zoo.models.abn import attention_branch
from keras_attn_zoo.models.common import (
    check_classes, finish, head, model_input, parse_attention,
)

VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG19_STAGES = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
CLASSIFIERS = ("fanet", "imagenet")


def vgg_stage(x, filters, convs, name, conv_bias, epsilon):
    """``convs`` 3x3 conv -> BN -> ReLU layers, ``{name}_{c}_conv`` / ``_bn`` / ``_relu``."""
    for c in range(1, convs + 1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=conv_bias, name=f"{name}_{c}_conv")(x)
        x = keras.layers.BatchNormalization(epsilon=epsilon, name=f"{name}_{c}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_{c}_relu")(x)
    return x


def imagenet_classifier(x, classes, classifier_activation, dropout=0.5):
    """VGG's ImageNet top: flatten -> FC 4096 -> ReLU -> dropout (x2) -> ``predictions``."""
    x = keras.layers.Flatten(name="head_flatten")(x)
    for i in (1, 2):
        x = keras.layers.Dense(4096, activation="relu", name=f"head_fc{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"head_dropout{i}")(x)
    return keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)


def vgg_bn(
    stages=VGG19_STAGES,
    attention=None,
    *,
    include_top=True,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    se_ratio=4,
    fa_ratios=(4, 4),
    classifier="fanet",
    conv_bias=False,
    bn_epsilon=1e-3,
    name=None,
):
    """VGG with BN before each ReLU and attention per block (FANet's CIFAR VGG or ABN's VGG).

    Reference: Simonyan & Zisserman (ICLR 2015) as modified by FANet (Liu et al.), Section
    IV.A: BN before each activation, the two hidden FC layers removed, a global max pool before
    the classifier (Section IV.B; on 32x32 inputs the map is already 1x1, so it is a no-op).
    Each of the 5 blocks (its convolutions and its 2x2 max pool) is one FA block (Fig. 1,
    n = 4): block 1 is the benchmark, blocks 2-5 are recalibrated with X = the block's input,
    U = its pooled output, and FA's own 1x1 stride-2 projection of X (no bias) for the
    weighting. That reading reproduces Tables I, II, III and V exactly (e.g. FA-VGG-19 on
    CIFAR-10: 20,556,909 = 20.56M). SE rescales the last conv's output of each block
    (r = 4 reproduces Tables I-II; Table III's SE row used r = 8).

    With ``classifier="imagenet"`` the top is VGG's three FC layers (4096, 4096, classes) on
    the flattened 7x7 map, as in torchvision's ``vgg16_bn`` (use ``conv_bias=True`` and
    ``bn_epsilon=1e-5`` for its checkpoints). ``attention="abn"`` places the attention branch
    of Fukui et al. after block 4: a copy of block 5's convolutions (no pool), the ABN heads
    (convolutions only, CAM-style), block 5 and the FC layers as the perception branch.

    Args:
        stages: (filters, convs) per block. Defaults to VGG-19's.
        attention: None, "se", "fa", "fa_se" or "abn". Defaults to None.
        include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``; input at least 32x32.
        se_ratio: SE reduction ratio. Defaults to 4.
        fa_ratios: FA (r1, r2). Defaults to (4, 4).
        classifier: "fanet" (global max pool, one FC) or "imagenet" (flatten, three FC).
            Defaults to "fanet".
        conv_bias: biases in the convolutions. Defaults to False.
        bn_epsilon: BatchNorm epsilon. Defaults to 1e-3.
        name: model name. Defaults to e.g. "fa_vgg19_bn".

    Returns:
        A functional ``keras.Model``.

    Example:
    >>> vgg_bn(attention="fa").get_layer("stage5_fa").name
    'stage5_fa'
    """
    att = parse_attention(
        attention, se_ratio, fa_ratios, allowed=(None, "se", "fa", "fa_se", "abn"), include_top=include_top
    )
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}.")
    classes = check_classes(classes, include_top, classifier_activation, att)
    default_shape = (224, 224, 3) if classifier == "imagenet" else (32, 32, 3)
    inputs = model_input(input_shape, input_tensor, default_shape, 2 ** len(stages), "VGG")
    if classifier == "imagenet" and include_top and None in inputs.shape[1:3]:
        raise ValueError("VGG's ImageNet classifier flattens the last map: it needs a fixed input size.")
    x = inputs
    blocks = att.chain()
    abn_logits = None
    for s, (filters, convs) in enumerate(stages, start=1):
        if att.abn and s == len(stages):
            x, abn_logits, _ = attention_branch(
                x, lambda t: vgg_stage(t, filters, convs, "abn", conv_bias, bn_epsilon), classes, bn_epsilon
            )
        block_in = x
        x = vgg_stage(x, filters, convs, f"stage{s}", conv_bias, bn_epsilon)
        x = att.squeeze_excite(x, f"stage{s}_se")
        x = keras.layers.MaxPooling2D(2, name=f"stage{s}_pool")(x)
        x = blocks(block_in, x, f"stage{s}_fa")
    if classifier == "imagenet" and include_top:
        x = imagenet_classifier(x, classes, classifier_activation)
    else:
        x = head(x, include_top, pooling, classes, classifier_activation, top_pool="max")
    depth = sum(c for _, c in stages) + 3
    default_name = f"{attention + '_' if attention else ''}vgg{depth}_bn"
    return finish(inputs, x, name or default_name, abn_logits)
