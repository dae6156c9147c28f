"""keras_attn_zoo: a Keras 3 zoo of CNN attention mechanisms.

>>> import keras_attn_zoo
>>> keras_attn_zoo.list_models("fa_resnet*")[:2]
['fa_resnet110', 'fa_resnet20']
>>> model = keras_attn_zoo.load("fa_resnet56")

``import keras_attn_zoo`` imports no Keras (nor TensorFlow): the public names below are loaded
on first use (PEP 562), so that the command line answers at once. The first public name used
also registers the zoo's layers and models with Keras (``keras_attn_zoo.modelfile``), so a saved
``.keras`` file then loads with ``keras.saving.load_model``; ``import keras_attn_zoo.modelfile``
does that on its own.
"""

import importlib
import importlib.util
import typing

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "FocusAssociation": "keras_attn_zoo.layers",
    "PayaAggregation": "keras_attn_zoo.layers",
    "PayaGate": "keras_attn_zoo.layers",
    "PayaModule": "keras_attn_zoo.layers",
    "SqueezeExcite": "keras_attn_zoo.layers",
    "count_trainable": "keras_attn_zoo.registry",
    "fine_tune": "keras_attn_zoo.training.finetune",
    "get_spec": "keras_attn_zoo.registry",
    "list_models": "keras_attn_zoo.registry",
    "load": "keras_attn_zoo.registry",
    "model_info": "keras_attn_zoo.registry",
    "preprocess_input": "keras_attn_zoo.data.preprocessing",
}

__all__ = sorted(_LAZY)

if typing.TYPE_CHECKING:  # what the lazy names are, for readers and type checkers
    import keras_attn_zoo.modelfile  # noqa: F401
    from keras_attn_zoo.data.preprocessing import preprocess_input
    from keras_attn_zoo.layers import FocusAssociation, PayaAggregation, PayaGate, PayaModule, SqueezeExcite
    from keras_attn_zoo.registry import count_trainable, get_spec, list_models, load, model_info
    from keras_attn_zoo.training.finetune import fine_tune


def __getattr__(name):
    """A public name, or a submodule (``keras_attn_zoo.registry``...), imported on first use."""
    if name in _LAZY:
        importlib.import_module("keras_attn_zoo.modelfile")  # registers the layers for .keras loading
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # as the eager imports used to bind it
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
