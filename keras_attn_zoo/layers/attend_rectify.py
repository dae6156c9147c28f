"""The attention modules, gates and output aggregation of Attend-and-Rectify / PAYA.

Reference: Rodriguez et al., "Attend and Rectify: a Gated Attention Mechanism for Fine-Grained
Recovery" (ECCV 2018) and "Pay Attention to the Activations: a Modular Attention Mechanism for
Fine-Grained Image Recognition" (IEEE TMM 2019, arXiv 1907.13075), as the authors' code
(prlz77/attend-and-rectify) runs it; ``shared/specs/paya.md`` Sections 1 and 7.

- :class:`PayaModule`: on a feature map Z, H spatial-softmax attention masks, per-head class
  logits under each mask, per-head gates, and the gate-weighted module logits; it adds the
  head-diversity regulariser (:func:`head_diversity`) to the model's losses in training.
- :class:`PayaGate`: the global gates over the AD modules and the network's own classifier.
- :class:`PayaAggregation`: the gate-weighted sum of the log-softmax of every output.
"""

import keras
from keras import ops

GATE_MODES = ("softmax", "sigmoid")


def kaiming_normal():
    """PyTorch's ``kaiming_normal_`` (fan in, std sqrt(2 / fan_in), not truncated)."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def _positive_int(owner, arg, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner} {arg} must be a positive integer, got {value!r}.")


def _gate_mode(owner, mode):
    if mode not in GATE_MODES:
        raise ValueError(f"{owner} mode must be one of {GATE_MODES}, got {mode!r}.")


def _positions(x):
    """h*w when both are static (exporters need at most one dynamic reshape size), else -1."""
    h, w = x.shape[1], x.shape[2]
    return -1 if h is None or w is None else h * w


def head_diversity(masks):
    """The authors' inter-mask regulariser of one module, before its weight.

    The masks ``(batch, h, w, H)`` are 2x2 average-pooled (floor, as PyTorch's ``avg_pool2d``;
    maps smaller than 2x2 are used as they are), flattened to ``M'`` of shape
    ``(batch, h*w/4, H)``; the Gram matrices ``G = M'^T M'`` ``(batch, H, H)`` get a zero
    diagonal, and the result is the mean of ``G**2`` over all ``batch * H * H`` entries (the
    zeroed diagonal counts in the mean). One head gives 0.

    Returns:
        A scalar tensor.
    """
    heads = masks.shape[-1]
    if masks.shape[1] is not None and masks.shape[2] is not None and min(masks.shape[1:3]) >= 2:
        masks = ops.average_pool(masks, 2, strides=2, padding="valid")
    flat = ops.reshape(masks, (ops.shape(masks)[0], _positions(masks), heads))
    gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat)
    off_diagonal = gram * (1.0 - ops.eye(heads, dtype=gram.dtype))
    return ops.mean(ops.square(off_diagonal))


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class PayaModule(keras.layers.Layer):
    """One attention module: H attention heads, output heads and head gates on a feature map.

    Reference: Rodriguez et al., "Pay Attention to the Activations" (TMM 2019) / "Attend and
    Rectify" (ECCV 2018), as the authors' ``AttentionModule`` computes it. On ``Z`` of shape
    ``(batch, h, w, c)``, with 3x3 "same" convolutions without bias (Kaiming-normal init):

    - masks: ``M = softmax over the h*w positions of conv_{c->H}(Z)``, each sums to 1;
    - output heads: ``O = conv_{c->H*C}(Z)`` (channel ``head * C + class``, head-major);
      head k's class logits ``o_k = sum_xy M_k * O_k``, ``(batch, H, C)``;
    - head gates: ``s_k = sum_xy M_k * conv_{c->H}(Z)_k``, ``g = softmax_over_heads(tanh(s))``;
    - module logits: ``sum_k g_k o_k``, ``(batch, C)`` (logits: no softmax yet).

    In training (and when ``diversity_weight > 0``) it adds
    ``diversity_weight * head_diversity(M)`` to the model's losses. The authors average the
    modules' terms, so a network of AD modules with regulariser weight ``reg_w`` gives each
    module ``diversity_weight = reg_w / AD`` (the builders do).

    Args:
        classes: C, the number of classes.
        heads: H, attention heads. Defaults to 4.
        diversity_weight: weight of this module's regulariser term. Defaults to 1e-3.

    Returns (when called): ``[logits (batch, C), masks (batch, h, w, H), head_gates
    (batch, H)]``; the masks and gates are how the attention is observed.

    Example:
    >>> module = PayaModule(classes=10, heads=2)
    >>> logits, masks, gates = module(keras.ops.ones((2, 8, 8, 16)))
    >>> tuple(logits.shape), tuple(masks.shape), tuple(gates.shape)
    ((2, 10), (2, 8, 8, 2), (2, 2))
    """

    def __init__(self, classes, heads=4, diversity_weight=1e-3, **kwargs):
        super().__init__(**kwargs)
        _positive_int("PayaModule", "classes", classes)
        _positive_int("PayaModule", "heads", heads)
        if isinstance(diversity_weight, bool) or not isinstance(diversity_weight, (int, float)) or diversity_weight < 0:
            raise ValueError(
                f"PayaModule diversity_weight must be a number >= 0, got {diversity_weight!r}."
            )
        self.classes = classes
        self.heads = heads
        self.diversity_weight = float(diversity_weight)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "PayaModule expects a 4D channels-last input (batch, h, w, c) with a known c, "
                f"got shape {tuple(input_shape)}."
            )

        def conv(filters, name):
            layer = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, kernel_initializer=kaiming_normal(),
                name=name,
            )
            layer.build(tuple(input_shape))
            return layer

        self.attention_conv = conv(self.heads, "attention_conv")
        self.output_conv = conv(self.heads * self.classes, "output_conv")
        self.gate_conv = conv(self.heads, "gate_conv")

    def masks(self, z):
        """The attention masks ``(batch, h, w, H)``, each a softmax over the h*w positions."""
        scores = self.attention_conv(z)
        flat = ops.softmax(ops.reshape(scores, (ops.shape(z)[0], _positions(z), self.heads)), axis=1)
        return ops.reshape(flat, ops.shape(scores))

    def call(self, z, training=None):
        heads, classes = self.heads, self.classes
        batch, n = ops.shape(z)[0], _positions(z)
        # The three convolutions read the same z: run them as one, their kernels side by side
        # (each output channel is computed as by its own layer, bit for bit), and flatten the
        # positions once. One convolution of H * (C + 2) filters instead of three (two of only H)
        # is a third less latency overhead on TensorFlow and onnxruntime (docs/benchmarks.md).
        kernel = ops.concatenate(
            [self.attention_conv.kernel, self.output_conv.kernel, self.gate_conv.kernel], axis=-1
        )
        y = ops.reshape(ops.conv(z, kernel, padding="same"), (batch, n, heads * (classes + 2)))
        m = ops.softmax(y[..., :heads], axis=1)  # (B, n, H): each mask sums to 1 over the positions
        masks = ops.reshape(m, (batch, ops.shape(z)[1], ops.shape(z)[2], heads))
        m_t = ops.expand_dims(ops.transpose(m, (0, 2, 1)), 2)  # (B, H, 1, n)
        out = ops.reshape(y[..., heads:heads + heads * classes], (batch, n, heads, classes))
        head_logits = ops.squeeze(ops.matmul(m_t, ops.transpose(out, (0, 2, 1, 3))), 2)  # (B, H, C)
        s = ops.sum(m * y[..., heads + heads * classes:], axis=1)  # (B, H)
        head_gates = ops.softmax(ops.tanh(s), axis=-1) if self.heads > 1 else ops.ones_like(s)
        logits = ops.sum(ops.expand_dims(head_gates, -1) * head_logits, axis=1)  # (B, C)
        if training and self.diversity_weight > 0:
            self.add_loss(self.diversity_weight * head_diversity(masks))
        return [logits, masks, head_gates]

    def compute_output_shape(self, input_shape):
        batch, h, w, _ = tuple(input_shape)
        return [(batch, self.classes), (batch, h, w, self.heads), (batch, self.heads)]

    def get_config(self):
        return {
            **super().get_config(),
            "classes": self.classes,
            "heads": self.heads,
            "diversity_weight": self.diversity_weight,
        }


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class PayaGate(keras.layers.Layer):
    """The global gates: how much each of the AD + 1 outputs counts in the final one.

    As the authors' ``Gate`` (gate depth 1): pooled final features ``f`` ``(batch, F)`` ->
    Dense to ``outputs`` without bias (Kaiming-normal init) -> BatchNormalization (momentum 0.9,
    epsilon 1e-5: PyTorch's 0.1 / 1e-5) -> tanh -> softmax over the outputs (``mode="softmax"``,
    the weights sum to 1) or sigmoid (``mode="sigmoid"``, each in (0, 1); the aggregation then
    divides by their sum).

    Args:
        outputs: AD + 1, the number of outputs gated (modules and the network's classifier).
        mode: "softmax" or "sigmoid". Defaults to "softmax".

    Returns (when called): the gate weights ``(batch, outputs)``, in the order the
    aggregation takes its logits.

    Example:
    >>> PayaGate(4)(keras.ops.ones((2, 64))).shape
    (2, 4)
    """

    def __init__(self, outputs, mode="softmax", **kwargs):
        super().__init__(**kwargs)
        _positive_int("PayaGate", "outputs", outputs)
        _gate_mode("PayaGate", mode)
        self.outputs = outputs
        self.mode = mode

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"PayaGate expects pooled features (batch, channels), got {tuple(input_shape)}.")
        self.dense = keras.layers.Dense(
            self.outputs, use_bias=False, kernel_initializer=kaiming_normal(), name="dense"
        )
        self.bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")
        self.dense.build(tuple(input_shape))
        self.bn.build((input_shape[0], self.outputs))

    def call(self, features, training=None):
        gamma = ops.tanh(self.bn(self.dense(features), training=training))
        return ops.softmax(gamma, axis=-1) if self.mode == "softmax" else ops.sigmoid(gamma)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.outputs)

    def get_config(self):
        return {**super().get_config(), "outputs": self.outputs, "mode": self.mode}


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class PayaAggregation(keras.layers.Layer):
    """The final output: the gate-weighted sum of every output's log-softmax.

    Called on ``[w, logits_0, ..., logits_AD]``: gate weights ``w`` ``(batch, AD + 1)`` and the
    outputs' logits, each ``(batch, C)``, in the authors' order (deepest module first, the
    network's own classifier last). Returns ``sum_i w_i log_softmax(logits_i)`` ``(batch, C)``
    (``mode="softmax"``), or that divided by ``1e-6 + sum_i w_i`` (``mode="sigmoid"``). It is
    not renormalised: the authors train with NLL on it, i.e. ``sum_i w_i CE_i``; its softmax
    is the product of experts ``prod_i p_i^{w_i}``, normalised.

    Args:
        mode: the gate's mode, "softmax" or "sigmoid". Defaults to "softmax".
        auxiliary_weight: weight of the optional per-module cross-entropy that a
            :class:`~keras_attn_zoo.models.paya.PAYAModel` adds in training (not the papers':
            ours, for early exit). Stored here so that it travels with the model. Defaults to 0.

    Example:
    >>> w = keras.ops.convert_to_tensor([[0.5, 0.5]])
    >>> out = PayaAggregation()([w, keras.ops.zeros((1, 4)), keras.ops.zeros((1, 4))])
    >>> round(float(out[0, 0]), 4)  # log(1/4)
    -1.3863
    """

    def __init__(self, mode="softmax", auxiliary_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        _gate_mode("PayaAggregation", mode)
        if isinstance(auxiliary_weight, bool) or not isinstance(auxiliary_weight, (int, float)) or auxiliary_weight < 0:
            raise ValueError(
                f"PayaAggregation auxiliary_weight must be a number >= 0, got {auxiliary_weight!r}."
            )
        self.mode = mode
        self.auxiliary_weight = float(auxiliary_weight)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2 or not isinstance(
            input_shape[0], (list, tuple)
        ):
            raise ValueError(
                f"PayaAggregation is called on [gates, logits_0, ...]; got input shape {input_shape!r}."
            )
        gates, *outputs = (tuple(s) for s in input_shape)
        if gates[-1] is not None and gates[-1] != len(outputs):
            raise ValueError(
                f"PayaAggregation got {len(outputs)} outputs but {gates[-1]} gate weights."
            )
        if len({s[-1] for s in outputs}) != 1:
            raise ValueError(f"All outputs must have the same number of classes, got shapes {outputs}.")

    def call(self, inputs):
        gates, *outputs = inputs
        log_probs = ops.log_softmax(ops.stack(outputs, axis=1), axis=-1)  # (B, AD + 1, C)
        out = ops.sum(ops.expand_dims(gates, -1) * log_probs, axis=1)
        if self.mode == "sigmoid":
            out = out / (1e-6 + ops.sum(gates, axis=-1, keepdims=True))
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "auxiliary_weight": self.auxiliary_weight}
