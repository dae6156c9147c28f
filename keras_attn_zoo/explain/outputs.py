"""Named outputs of any layer, added to a model's own: what export and explain read.

A selector names a layer, with shell wildcards, and for a layer with several outputs the index
of one: ``"stage3_block2_out"``, ``"stage2_fa:1"`` (an FA layer's gate k), ``"*_fa:1"`` (every
FA gate). The output is named after the layer, with ``_{index}`` when an index was given.
"""

import difflib
import fnmatch

import keras
import numpy as np


def functional(model):
    """``model`` as a functional model: a built ``Sequential`` is rewired, sharing its layers."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    if not hasattr(model, "output_names") or not model.inputs:
        raise ValueError(
            f"{model.name} is a subclassed model; reading its layers' outputs needs a functional "
            "model: build it as keras.Model(inputs, outputs)."
        )
    return model


def model_outputs(model):
    """The model's own outputs as a dict ``{name: KerasTensor}`` (names from its output layers)."""
    model = functional(model)
    if isinstance(model.output, dict):
        return dict(model.output)
    return dict(zip(model.output_names, keras.tree.flatten(model.output)))


def select_outputs(model, selectors=()):
    """The model's own outputs, then the layer outputs that ``selectors`` name.

    Args:
        model: a functional (or built Sequential) ``keras.Model``.
        selectors: layer names, optionally with shell wildcards and ``:index`` for layers with
            several outputs, e.g. ``["stage3_fa:1", "*_block2_fa:1"]``. Defaults to none.

    Returns:
        A dict ``{name: KerasTensor}`` in that order.

    Raises:
        ValueError: if a selector matches no layer, omits the index of a layer with several
            outputs, or gives an index the layer does not have.
    """
    model = functional(model)
    outputs = model_outputs(model)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if isinstance(selectors, str):
        selectors = [selectors]
    for selector in selectors:
        pattern, _, index = str(selector).partition(":")
        matched = [layer for layer in layers if fnmatch.fnmatchcase(layer.name, pattern)]
        if not matched:
            close = difflib.get_close_matches(pattern, [layer.name for layer in layers], n=5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"No layer of {model.name} matches {pattern!r}.{hint}")
        if index and not index.isdigit():
            raise ValueError(f"The output index in {selector!r} must be a number, e.g. 'stage2_fa:1'.")
        for layer in matched:
            tensors = keras.tree.flatten(layer.output)
            if not index:
                if len(tensors) != 1:
                    raise ValueError(
                        f"Layer {layer.name} has {len(tensors)} outputs; select one as "
                        f"{layer.name}:0 ... {layer.name}:{len(tensors) - 1}."
                    )
                outputs.setdefault(layer.name, tensors[0])
                continue
            if int(index) >= len(tensors):
                raise ValueError(
                    f"Layer {layer.name} has {len(tensors)} output(s); {selector!r} asks for index {index}."
                )
            outputs.setdefault(f"{layer.name}_{int(index)}", tensors[int(index)])
    return outputs


def run(model, images, batch_size=32):
    """``model`` called on ``images`` in batches (eagerly: no graph tracing per new model), with
    the output structure kept and every tensor converted to a NumPy array."""
    images = np.asarray(images, dtype="float32")
    if len(images) == 0:
        raise ValueError("No images given: the batch is empty.")
    parts = [model(images[i:i + batch_size], training=False) for i in range(0, len(images), batch_size)]
    return keras.tree.map_structure(
        lambda *batches: np.concatenate([keras.ops.convert_to_numpy(b) for b in batches]), *parts
    )


def with_outputs(model, selectors=()):
    """A ``keras.Model`` sharing ``model``'s layers whose dict outputs are :func:`select_outputs`.

    Example:
    >>> import keras_attn_zoo as zoo
    >>> tapped = with_outputs(zoo.load("fa_resnet20"), ["stage3_fa:1"])
    >>> list(tapped.output)
    ['predictions', 'stage3_fa_1']
    """
    model = functional(model)
    return keras.Model(model.input, select_outputs(model, selectors), name=model.name)
