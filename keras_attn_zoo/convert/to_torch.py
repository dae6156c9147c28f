"""A registry model's PyTorch reference (``keras_attn_zoo.torch_reference``) with its weights.

:func:`reference_config` reads from a built model which reference module computes its function
(CIFAR ResNets plain or with SE, ABN ResNets on CIFAR and ImageNet) and with what arguments;
:func:`torch_state_dict` gives the model's weights under that module's keys (the ABN authors'
names, ``keras_attn_zoo.convert.abn_pytorch.official_key``), as NumPy arrays, so that a process
without Keras can load them. Models without a reference get ``None`` and the reason.

>>> import keras_attn_zoo as zoo
>>> config, why = reference_config(zoo.load("resnet20"), "resnet20")
>>> config["module"], config["blocks"], config["shortcut_kernel"]
('CifarResNet', 3, 3)
"""

import re

import numpy as np

import keras

from keras_attn_zoo.convert.abn_pytorch import BN_PARAMS, official_key
from keras_attn_zoo.layers import SqueezeExcite
from keras_attn_zoo.registry import get_spec

_NO_REFERENCE = {  # mechanism -> why there is no PyTorch reference (as the report says it)
    "fa": "none: FANet's authors published no code; ours is the only implementation",
    "fa_se": "none: FANet's authors published no code; ours is the only implementation",
    "paya": "none: the authors' code (prlz77/attend-and-rectify) is a Wide ResNet of another layout, "
            "not ported",
}


def _counts(model, stages):
    """Blocks per stage, from the layer names ``stage{s}_block{b}_add``."""
    blocks = {}
    for layer in model.layers:
        match = re.fullmatch(r"stage(\d+)_block(\d+)_add", layer.name)
        if match:
            s, b = int(match[1]), int(match[2])
            blocks[s] = max(blocks.get(s, 0), b)
    return [blocks[s] for s in range(1, stages + 1)]


def reference_config(model, name):
    """``(config, description)`` of the PyTorch reference of registry model ``name`` built as
    ``model``, or ``(None, why there is none)``.

    ``config`` is what ``keras_attn_zoo.torch_reference.build`` takes (JSON-serialisable).
    """
    spec = get_spec(name)
    attention = spec.kwargs.get("attention")
    names = {layer.name for layer in model.layers}
    classes = model.get_layer(spec.classifier).units
    bottleneck = "stage1_block1_3_conv" in names
    if spec.family == "resnet_cifar" and attention in (None, "se"):
        se = [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]
        config = {
            "module": "CifarResNet", "blocks": _counts(model, 3)[0], "classes": classes,
            "block": "bottleneck" if bottleneck else "basic",
            "shortcut_kernel": model.get_layer("stage2_block1_shortcut_conv").kernel_size[0],
            "eps": model.get_layer("stem_bn").epsilon, "se_ratio": se[0].ratio if se else None,
        }
        what = "SE-" if se else ""
        return config, (f"a {what}CIFAR ResNet module written for the benchmark in the ABN authors' key names "
                        f"(keras_attn_zoo.torch_reference.CifarResNet); logits checked equal to ours")
    if spec.family in ("resnet_cifar", "resnet") and attention == "abn":
        imagenet = spec.family == "resnet"
        config = {"module": "ABNResNet", "block": "bottleneck" if bottleneck else "basic",
                  "counts": _counts(model, 4 if imagenet else 3), "classes": classes, "imagenet": imagenet}
        return config, ("the ABN authors' ResNet as the converter tests re-create it, their key names "
                        "(keras_attn_zoo.torch_reference.ABNResNet)")
    why = _NO_REFERENCE.get(attention, f"none: no PyTorch reference of the {spec.family} family "
                            f"with {attention or 'no'} attention is wired into the benchmark")
    return None, why


def _values(layer):
    """``{suffix: array}`` of one Keras layer in PyTorch's layouts and names."""
    if isinstance(layer, keras.layers.BatchNormalization):
        values = dict(zip(BN_PARAMS, (np.asarray(w) for w in layer.get_weights())))
        return {**values, "num_batches_tracked": np.zeros((), "int64")}
    if isinstance(layer, keras.layers.Conv2D):
        weights = layer.get_weights()
        values = {"weight": np.ascontiguousarray(np.transpose(weights[0], (3, 2, 0, 1)))}
        return {**values, "bias": weights[1]} if layer.use_bias else values
    if isinstance(layer, keras.layers.Dense):
        kernel, bias = layer.get_weights()
        return {"weight": np.ascontiguousarray(kernel.T), "bias": bias}
    if isinstance(layer, SqueezeExcite):
        return {f"{fc}.{k}": v for fc, sub in (("fc1", layer.squeeze), ("fc2", layer.excite))
                for k, v in _values(sub).items()}
    raise ValueError(f"No PyTorch layout is known for layer {layer.name!r} of type {type(layer).__name__}.")


def torch_state_dict(model, name):
    """The weights of ``model`` (registry model ``name``) as its reference module's state dict:
    ``{key: NumPy array}`` (convolutions HWIO -> OIHW, dense (in, out) -> (out, in))."""
    family = get_spec(name).family
    state = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        match = re.fullmatch(r"stage(\d+)_block(\d+)_se", layer.name)
        prefix = f"layer{match[1]}.{int(match[2]) - 1}.se" if match else official_key(family, layer.name)
        if prefix is None:
            raise ValueError(f"No PyTorch key is known for layer {layer.name!r} of {name}.")
        state.update({f"{prefix}.{k}": v for k, v in _values(layer).items()})
    return state
