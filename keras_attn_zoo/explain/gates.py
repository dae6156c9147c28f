"""Block-wise and channel-wise gates of a batch: FA's k_i and SE's channel weights; PAYA's
masks, head gates and global gates.

Both come from the model's own layers (no copy of the network): the FA gates are outputs of the
``FocusAssociation`` layers, the SE weights are ``SqueezeExcite.excitation`` of each SE layer's
input.
"""

import dataclasses

import keras
import numpy as np

from keras_attn_zoo.explain.outputs import functional, run
from keras_attn_zoo.layers import FocusAssociation, PayaModule, SqueezeExcite
from keras_attn_zoo.models.paya import paya_layers, paya_outputs_model


def fa_layers(model):
    """The model's FA layers in graph order."""
    return [layer for layer in model.layers if isinstance(layer, FocusAssociation)]


def se_layers(model):
    """The model's SE layers in graph order."""
    return [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]


def has_paya(model):
    """Whether the model has PAYA attention modules."""
    return any(isinstance(layer, PayaModule) for layer in model.layers)


def gate_model(model):
    """A ``keras.Model`` sharing ``model``'s layers whose outputs are the FA gates k_i."""
    layers = fa_layers(model)
    if not layers:
        raise ValueError(f"{model.name} has no FocusAssociation layers, so it has no FA gates.")
    return keras.Model(functional(model).input, {layer.name: layer.output[1] for layer in layers})


def fa_gates(model, images, batch_size=32):
    """The associative attention k_i of every FA layer for a batch of images.

    Args:
        model: a model with ``FocusAssociation`` layers.
        images: a batch of model inputs, ``(batch, H, W, C)``.
        batch_size: images per forward pass. Defaults to 32.

    Returns:
        A dict from layer name (``stage2_block3_fa``, ``stage3_fa``...) in graph order to a
        NumPy array of shape ``(batch,)`` with values in (0, 1).
    """
    outputs = run(gate_model(model), images, batch_size)
    return {layer.name: outputs[layer.name][:, 0] for layer in fa_layers(model)}


def se_weights(model, images, batch_size=32):
    """The channel weights of every SE layer for a batch of images.

    Each is ``layer.excitation`` of the layer's input: the factors in (0, 1) by which SE
    rescales the channels of its block, ``sigmoid(W2 relu(W1 GAP(x)))``.

    Args:
        model: a model with ``SqueezeExcite`` layers.
        images: a batch of model inputs, ``(batch, H, W, C)``.
        batch_size: images per forward pass. Defaults to 32.

    Returns:
        A dict from layer name (``stage1_block1_se``...) in graph order to a NumPy array of
        shape ``(batch, channels)``.
    """
    layers = se_layers(model)
    if not layers:
        raise ValueError(f"{model.name} has no SqueezeExcite layers, so it has no SE weights.")
    inputs = keras.Model(functional(model).input, {layer.name: layer.input for layer in layers})
    features = run(inputs, images, batch_size)
    return {
        layer.name: keras.ops.convert_to_numpy(layer.excitation(features[layer.name]))
        for layer in layers
    }


def paya_attention(model, images, batch_size=32):
    """Everything a PAYA model's attention says about a batch, from its own layers.

    Args:
        model: a model with ``PayaModule`` layers (``paya_*`` registry models).
        images: a batch of model inputs, ``(batch, H, W, C)``.
        batch_size: images per forward pass. Defaults to 32.

    Returns:
        A :class:`PayaAttention`.
    """

    out = run(paya_outputs_model(model), images, batch_size)
    gated = [layer.name for layer in paya_layers(model)] + ["predictions"]  # the gates' order
    modules = gated[-2::-1]  # shallowest first

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return PayaAttention(
        masks={m: out[f"{m}/masks"] for m in modules},
        head_gates={m: out[f"{m}/head_gates"] for m in modules},
        global_gates={name: out["gates"][:, i] for i, name in enumerate(gated)},
        module_scores={m: softmax(out[f"{m}/logits"]) for m in modules},
        net_scores=softmax(out["net_logits"]),
    )


@dataclasses.dataclass
class PayaAttention:
    """A PAYA model's attention for a batch (every dict in graph order, shallowest module first).

    Attributes:
        masks: module name (``stage1_paya``...) -> attention masks ``(batch, h, w, heads)``,
            each head's mask summing to 1 over the positions.
        head_gates: module name -> head gates ``(batch, heads)``, summing to 1.
        global_gates: output name (the modules, and ``predictions`` for the network's own
            classifier) -> its global gate weight ``(batch,)``.
        module_scores: module name -> the module's own class prediction, the softmax of its
            logits ``(batch, classes)`` (what early exit reads).
        net_scores: the network's own classifier's softmax ``(batch, classes)``.
    """

    masks: dict
    head_gates: dict
    global_gates: dict
    module_scores: dict
    net_scores: np.ndarray
