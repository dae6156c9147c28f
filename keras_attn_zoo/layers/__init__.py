"""Attention mechanisms as Keras layers, one file per mechanism."""

from keras_attn_zoo.layers.focus_association import FocusAssociation, fa_weighting
from keras_attn_zoo.layers.squeeze_excite import SqueezeExcite

__all__ = ["FocusAssociation", "SqueezeExcite", "fa_weighting"]
