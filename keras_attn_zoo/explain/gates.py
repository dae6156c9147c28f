"""Block-wise and channel-wise gates of a batch: FA's k_i and SE's channel weights.

Both come from the model's own layers (no copy of the network): the FA gates are outputs of the
``FocusAssociation`` layers, the SE weights are ``SqueezeExcite.excitation`` of each SE layer's
input.
"""

import keras

from keras_attn_zoo.explain.outputs import functional, run
from keras_attn_zoo.layers import FocusAssociation, SqueezeExcite


def fa_layers(model):
    """The model's FA layers in graph order."""
    return [layer for layer in model.layers if isinstance(layer, FocusAssociation)]


def se_layers(model):
    """The model's SE layers in graph order."""
    return [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]


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
