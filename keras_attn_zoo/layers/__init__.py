"""Attention mechanisms as Keras layers, one file per mechanism."""

from keras_attn_zoo.layers.attend_rectify import PayaAggregation, PayaGate, PayaModule, head_diversity
from keras_attn_zoo.layers.focus_association import FocusAssociation, fa_weighting
from keras_attn_zoo.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "FocusAssociation", "PayaAggregation", "PayaGate", "PayaModule", "SqueezeExcite",
    "fa_weighting", "head_diversity",
]
