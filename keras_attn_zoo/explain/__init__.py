"""What a model attends to. The FA gates k_i of a batch come from the same layers, no copy."""

import keras
import numpy as np

from keras_attn_zoo.layers import FocusAssociation


def fa_layers(model):
    """The model's FA layers in graph order."""
    return [layer for layer in model.layers if isinstance(layer, FocusAssociation)]


def gate_model(model):
    """A ``keras.Model`` sharing ``model``'s layers whose outputs are the FA gates k_i."""
    layers = fa_layers(model)
    if not layers:
        raise ValueError(f"{model.name} has no FocusAssociation layers, so it has no FA gates.")
    return keras.Model(model.inputs, {layer.name: layer.output[1] for layer in layers})


def fa_gates(model, images, batch_size=32):
    """The associative attention k_i of every FA layer for a batch of images.

    Returns a dict from layer name (``stage2_block3_fa``, ``stage3_fa``...) to a NumPy array
    of shape ``(batch,)`` with values in (0, 1).
    """
    outputs = gate_model(model).predict(images, batch_size=batch_size, verbose=0)
    return {name: np.asarray(k)[:, 0] for name, k in outputs.items()}
