"""Attention Branch Network pieces that are layers: the attention mechanism and per-task heads."""

import keras
from keras import ops

MODES = ("residual", "multiply")


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class AttentionMapWeighting(keras.layers.Layer):
    """ABN's attention mechanism: ``(1 + M) * g`` (Eq. 2, default) or ``M * g`` (Eq. 1).

    Reference: Fukui et al., "Attention Branch Network: Learning of Attention Mechanism for
    Visual Explanation" (CVPR 2019), Section 3.2.

    Called on ``[g, M]``: features ``g`` of shape ``(batch, H, W, C)`` and attention maps ``M``
    of shape ``(batch, H, W, 1)`` (one map for all channels) or ``(batch, H, W, T)`` (one map
    per task, multi-task ABN: the output then stacks the T weighted copies of each image along
    the batch axis, shape ``(batch * T, H, W, C)``, row ``b * T + t`` for image b and task t,
    so that one pass of the shared perception stage serves all tasks).

    Args:
        mode: "residual" for Eq. 2 or "multiply" for Eq. 1. Defaults to "residual".

    Example:
    >>> g, m = keras.ops.ones((2, 4, 4, 8)), keras.ops.full((2, 4, 4, 1), 0.5)
    >>> float(AttentionMapWeighting()([g, m])[0, 0, 0, 0])
    1.5
    """

    def __init__(self, mode="residual", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"AttentionMapWeighting mode must be one of {MODES}, got {mode!r}.")
        self.mode = mode

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError("AttentionMapWeighting is called on [features, attention_map].")
        g_shape, m_shape = (tuple(s) for s in input_shape)
        if len(g_shape) != 4 or len(m_shape) != 4 or g_shape[1:3] != m_shape[1:3]:
            raise ValueError(
                "Features and attention map must be 4D with the same height and width; got "
                f"{g_shape} and {m_shape}."
            )
        self.per_task = m_shape[-1] != 1

    def call(self, inputs):
        g, m = inputs
        if self.mode == "residual":
            m = 1.0 + m
        if not self.per_task:
            return g * m
        # (B, H, W, T) x (B, H, W, C) -> (B, T, H, W, C) -> (B * T, H, W, C)
        weighted = ops.expand_dims(ops.transpose(m, (0, 3, 1, 2)), -1) * ops.expand_dims(g, 1)
        return ops.reshape(weighted, (-1, *weighted.shape[2:]))

    def compute_output_shape(self, input_shape):
        g_shape, m_shape = (tuple(s) for s in input_shape)
        if m_shape[-1] == 1:
            return g_shape
        batch = None if g_shape[0] is None else g_shape[0] * m_shape[-1]
        return (batch, *g_shape[1:])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class TaskwiseDense(keras.layers.Layer):
    """Independent dense heads for T tasks: ``(batch * T, C) -> (batch, T * units)``.

    The input stacks each image's T task features along the batch axis (row ``b * T + t``, as
    :class:`AttentionMapWeighting` produces them); task t uses only its own kernel
    ``(C, units)``, so the T heads run as one op.

    Args:
        tasks: number of tasks T.
        units: outputs per task. Defaults to 1.
        activation: applied to the outputs. Defaults to None.
    """

    def __init__(self, tasks, units=1, activation=None, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("tasks", tasks), ("units", units)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}.")
        self.tasks = tasks
        self.units = units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"TaskwiseDense expects (batch * tasks, channels), got {tuple(input_shape)}.")
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(self.tasks, channels, self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.tasks, self.units), initializer="zeros")

    def call(self, x):
        x = ops.reshape(x, (-1, self.tasks, x.shape[-1]))
        y = ops.einsum("btc,tcu->btu", x, self.kernel) + self.bias
        return self.activation(ops.reshape(y, (-1, self.tasks * self.units)))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.tasks
        return (batch, self.tasks * self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "tasks": self.tasks,
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
        }
