"""keras_attn_zoo: a Keras 3 zoo of CNN attention mechanisms.

>>> import keras_attn_zoo
>>> keras_attn_zoo.list_models("fa_resnet*")[:2]
['fa_resnet110', 'fa_resnet20']
>>> model = keras_attn_zoo.load("fa_resnet56")
"""

from keras_attn_zoo.data.preprocessing import preprocess_input
from keras_attn_zoo.layers import FocusAssociation, PayaAggregation, PayaGate, PayaModule, SqueezeExcite
from keras_attn_zoo.registry import count_trainable, get_spec, list_models, load, model_info
from keras_attn_zoo.training.finetune import fine_tune

__version__ = "0.1.0"

__all__ = [
    "FocusAssociation",
    "PayaAggregation",
    "PayaGate",
    "PayaModule",
    "SqueezeExcite",
    "count_trainable",
    "fine_tune",
    "get_spec",
    "list_models",
    "load",
    "model_info",
    "preprocess_input",
]
