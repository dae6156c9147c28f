"""Analytic multiply-adds (MACs) of a built Keras model, layer by layer, for one image.

What is counted, per image (the convention of torchvision's and fvcore's counts, extended to
the attention layers' own products):

| layer | multiply-adds |
| --- | --- |
| ``Conv2D`` | ``H_out * W_out * C_out * k_h * k_w * C_in / groups`` |
| ``DepthwiseConv2D`` | ``H_out * W_out * C_in * multiplier * k_h * k_w`` |
| ``Dense`` | ``positions * C_in * units`` |
| ``SqueezeExcite`` | its two Dense layers, ``C * C/r + C/r * C``, and the scaling ``x * s``: ``H * W * C`` |
| ``FocusAssociation`` | focus ``C * C/r1 + C/r1``, association ``i * r2 i + r2 i`` (block i >= 2), the projection 1x1 convolution if any, and the weighting ``X + (U - X) k``: ``H * W * C`` |
| ``AttentionMapWeighting`` | ``(1 + M) * g``: ``H * W * C`` per task |
| ``TaskwiseDense`` | ``T * C * units`` |
| ``PayaModule`` | its three 3x3 convolutions, the masked sums ``sum_xy M_k O_k`` (``h w H C``) and ``sum_xy M_k s_k`` (``h w H``), and the gated head sum (``H C``) |
| ``PayaGate`` | its Dense layer |
| ``PayaAggregation`` | the gate-weighted sum, ``(AD + 1) * C`` |

Not counted (as in those conventions): biases, BatchNormalization (folded into the convolution
at inference), activations, additions, pooling and reductions, padding, softmax. A layer this
module does not know is an error, so a new layer gets its count before the zoo quotes one.

>>> import keras_attn_zoo as zoo
>>> count_macs(zoo.load("resnet20"))  # doctest: +SKIP
42909824
"""

import math

import keras

from keras_attn_zoo.layers import FocusAssociation, PayaAggregation, PayaGate, PayaModule, SqueezeExcite
from keras_attn_zoo.layers.attention_branch import AttentionMapWeighting, TaskwiseDense

# Layers whose work the convention does not count (see the module's docstring).
FREE = (
    keras.layers.InputLayer, keras.layers.BatchNormalization, keras.layers.ReLU,
    keras.layers.Activation, keras.layers.Add, keras.layers.Concatenate, keras.layers.ZeroPadding2D,
    keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D, keras.layers.Flatten, keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
)


def _shape(tensor):
    return tuple(tensor.shape)


def _positions(shape):
    """The product of a shape's axes between batch and channels (1 for a 2D tensor)."""
    return math.prod(shape[1:-1])


def _conv(layer, x_shape, y_shape):
    kh, kw = layer.kernel_size
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _positions(y_shape) * x_shape[-1] * layer.depth_multiplier * kh * kw
    return _positions(y_shape) * y_shape[-1] * kh * kw * x_shape[-1] // layer.groups


def _dense(layer, x_shape):
    return _positions(x_shape) * x_shape[-1] * layer.units


def _squeeze_excite(layer, x_shape):
    c, hidden = x_shape[-1], layer.squeeze.units
    return c * hidden + hidden * c + _positions(x_shape) * c


def _focus_association(layer, x_shape, u_shape):
    c, hidden = x_shape[-1], layer.focus_reduce.units
    macs = c * hidden + hidden
    if layer.num_previous:
        width = layer.num_previous + 1
        macs += width * layer.association_expand.units + layer.association_expand.units
    if layer.projection is not None:
        macs += _positions(u_shape) * u_shape[-1] * x_shape[-1]
    return macs + _positions(u_shape) * u_shape[-1]


def _paya_module(layer, z_shape):
    n, c, heads, classes = _positions(z_shape), z_shape[-1], layer.heads, layer.classes
    convs = n * 9 * c * (heads + heads * classes + heads)
    return convs + n * heads * classes + n * heads + heads * classes


def _layer_macs(layer, inputs, outputs):
    """Multiply-adds of one call of ``layer`` for the whole (concrete) batch of ``inputs``."""
    ins = [_shape(t) for t in keras.tree.flatten(inputs)]
    outs = [_shape(t) for t in keras.tree.flatten(outputs)]
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
        return ins[0][0] * _conv(layer, ins[0], outs[0])
    if isinstance(layer, keras.layers.Dense):
        return ins[0][0] * _dense(layer, ins[0])
    if isinstance(layer, SqueezeExcite):
        return ins[0][0] * _squeeze_excite(layer, ins[0])
    if isinstance(layer, FocusAssociation):
        return ins[0][0] * _focus_association(layer, ins[0], ins[1])
    if isinstance(layer, AttentionMapWeighting):
        g, m = ins
        return g[0] * math.prod(g[1:]) * m[-1]
    if isinstance(layer, TaskwiseDense):
        return outs[0][0] * layer.tasks * ins[0][-1] * layer.units
    if isinstance(layer, PayaModule):
        return ins[0][0] * _paya_module(layer, ins[0])
    if isinstance(layer, PayaGate):
        return ins[0][0] * ins[0][-1] * layer.outputs
    if isinstance(layer, PayaAggregation):
        return ins[0][0] * (len(ins) - 1) * ins[1][-1]
    if isinstance(layer, FREE):
        return 0
    raise ValueError(
        f"No multiply-add count is known for layer {layer.name!r} of type {type(layer).__name__}: "
        "add one to keras_attn_zoo/flops.py."
    )


def _run(model, inputs, per_layer, prefix=""):
    """Propagate ``inputs`` (symbolic, concrete batch) through ``model``'s graph, counting."""

    def counted(op):
        def call(*args, **kwargs):
            if isinstance(op, keras.Model) and hasattr(op, "_run_through_graph"):
                return _run(op, args[0], per_layer, f"{prefix}{op.name}/")
            outputs = op.compute_output_spec(*args, **kwargs)
            per_layer[f"{prefix}{op.name}"] = per_layer.get(f"{prefix}{op.name}", 0) + _layer_macs(op, args, outputs)
            return outputs
        return call

    return model._run_through_graph(inputs, operation_fn=counted)


def layer_macs(model, input_shape=None):
    """Multiply-adds per image of each layer of ``model`` with work in it (see the module's
    docstring for what is counted), in graph order.

    Args:
        model: a functional ``keras.Model`` (a registry model, or a model nesting one).
        input_shape: ``(H, W, C)`` of one image. Defaults to the model's input shape, which must
            then be fully known.

    Returns:
        ``{layer name: multiply-adds}``, zero-cost layers left out; names of a nested model's
        layers are prefixed by ``model_name/``.
    """
    if not hasattr(model, "_run_through_graph") or len(model.inputs) != 1:
        raise ValueError(f"Counting multiply-adds needs a functional model with one input; got {model!r}.")
    shape = tuple(model.inputs[0].shape[1:] if input_shape is None else input_shape)
    if len(shape) != len(model.inputs[0].shape) - 1 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(
            f"Counting multiply-adds needs a concrete image shape; {model.name} takes "
            f"{tuple(model.inputs[0].shape[1:])} and input_shape is {input_shape!r}: pass input_shape=(H, W, C)."
        )
    per_layer = {}
    _run(model, keras.KerasTensor((1, *shape), dtype=model.inputs[0].dtype), per_layer)
    return {name: macs for name, macs in per_layer.items() if macs}


def count_macs(model, input_shape=None):
    """Multiply-adds of one forward pass of ``model`` for one image: the sum of
    :func:`layer_macs` (all outputs included: an ABN model's attention branch, every PAYA
    module). GFLOP/s = ``2 * macs * images / seconds / 1e9``.

    Args:
        model: a functional ``keras.Model``.
        input_shape: ``(H, W, C)``. Defaults to the model's input shape.

    Returns:
        An ``int``.
    """
    return sum(layer_macs(model, input_shape).values())
