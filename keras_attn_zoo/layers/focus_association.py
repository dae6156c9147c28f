"""The Focus-and-Association (FA) module of FANet, Eqs. (1)-(9)."""

import keras
from keras import ops


def fa_weighting(x, u, k):
    """Eq. (9): ``X + (U - X) * k``, with ``k`` of shape ``(batch, 1)``.

    ``k = 0`` returns ``X`` (the block is skipped), ``k = 1`` returns ``U``.
    """
    k = ops.reshape(k, (-1, 1, 1, 1))
    return ops.add(x, ops.multiply(ops.subtract(u, x), k))


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class FocusAssociation(keras.layers.Layer):
    """Block-wise attention: focus, association, weighting (FANet, Eqs. 1-9).

    Reference: Liu et al., "A Novel Block-wise Attention Method: Focus-and-Association
    Networks" (FANet), Section III.B.

    Called on ``[x, u, k_1, ..., k_{i-1}]``: ``x`` the input X_i of block i, ``u`` its output
    U_i, and the associative attentions of the earlier FA modules of the same chain (each of
    shape ``(batch, 1)``). Returns ``[u_tilde, k_i]``:

    - focus (Eqs. 5-7): ``k'_i = sigmoid(W2 relu(W1 GAP(X_i)))``, W1: C -> C/r1, W2: C/r1 -> 1;
    - association (Eq. 8): ``k_i = sigmoid(W4 relu(W3 [k_1..k_{i-1}, k'_i]))``,
      W3: i -> r2*i, W4: r2*i -> 1; skipped when no earlier gate is given (Eq. 4, k_i = k'_i);
    - weighting (Eq. 9): ``X_i + (U_i - X_i) * k_i``.

    When X_i and U_i differ in shape, X_i goes through a linear projection (a 1x1 convolution
    without bias, strided to U's size, Section III.B) for the weighting; the focus still reads
    X_i itself. Builders whose blocks already own a projection (a ResNet's projection shortcut)
    pass the projected X instead, which adds no parameters.

    Args:
        focus_ratio: r1, the reduction ratio of the focus step. Defaults to 4.
        association_ratio: r2, the increasing ratio of the association step. Defaults to 4.

    Example:
    >>> fa = FocusAssociation()
    >>> x = keras.ops.ones((2, 8, 8, 16))
    >>> out, k1 = fa([x, x * 2])
    >>> out2, k2 = FocusAssociation()([out, out * 2, k1])
    >>> tuple(k2.shape)
    (2, 1)
    """

    def __init__(self, focus_ratio=4, association_ratio=4, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("focus_ratio", focus_ratio), ("association_ratio", association_ratio)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"FocusAssociation {arg} must be a positive integer, got {value!r}."
                )
        self.focus_ratio = focus_ratio
        self.association_ratio = association_ratio

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2 or not isinstance(
            input_shape[0], (list, tuple)
        ):
            raise ValueError(
                "FocusAssociation is called on a list [x, u, k_1, ..., k_{i-1}]; "
                f"got input shape {input_shape!r}."
            )
        x_shape, u_shape, *gate_shapes = [tuple(s) for s in input_shape]
        if len(x_shape) != 4 or len(u_shape) != 4:
            raise ValueError(
                "FocusAssociation expects 4D channels-last x and u, got shapes "
                f"{x_shape} and {u_shape}."
            )
        for s in gate_shapes:
            if len(s) != 2 or s[-1] != 1:
                raise ValueError(f"Each earlier gate must have shape (batch, 1), got {s}.")
        channels, out_channels = x_shape[-1], u_shape[-1]
        if channels is None or out_channels is None:
            raise ValueError("FocusAssociation needs known channel counts.")
        self.num_previous = len(gate_shapes)
        hidden = max(1, channels // self.focus_ratio)
        self.focus_reduce = keras.layers.Dense(hidden, activation="relu", name="focus_reduce")
        self.focus_out = keras.layers.Dense(1, activation="sigmoid", name="focus_out")
        self.focus_reduce.build((None, channels))
        self.focus_out.build((None, hidden))
        if self.num_previous:
            width = self.num_previous + 1
            self.association_expand = keras.layers.Dense(
                self.association_ratio * width, activation="relu", name="association_expand"
            )
            self.association_out = keras.layers.Dense(
                1, activation="sigmoid", name="association_out"
            )
            self.association_expand.build((None, width))
            self.association_out.build((None, self.association_ratio * width))
        self.projection = None
        if x_shape[1:] != u_shape[1:]:
            strides = (1, 1)
            if None not in (x_shape[1], x_shape[2], u_shape[1], u_shape[2]):
                if x_shape[1] % u_shape[1] or x_shape[2] % u_shape[2]:
                    raise ValueError(
                        f"Cannot project x of shape {x_shape} onto u of shape {u_shape}: "
                        "the spatial size of x must be a multiple of u's."
                    )
                strides = (x_shape[1] // u_shape[1], x_shape[2] // u_shape[2])
            self.projection = keras.layers.Conv2D(
                out_channels, 1, strides=strides, use_bias=False, name="projection"
            )
            self.projection.build(x_shape)

    def focus(self, x):
        """Eqs. (5)-(7): the focused attention k'_i, shape ``(batch, 1)``."""
        return self.focus_out(self.focus_reduce(ops.mean(x, axis=(1, 2))))

    def call(self, inputs):
        x, u, *gates = inputs
        if len(gates) != self.num_previous:
            raise ValueError(
                f"This FocusAssociation was built for {self.num_previous} earlier gates, "
                f"got {len(gates)}."
            )
        k = self.focus(x)
        if gates:
            s = ops.concatenate([*gates, k], axis=-1)
            k = self.association_out(self.association_expand(s))
        if self.projection is not None:
            x = self.projection(x)
        return [fa_weighting(x, u, k), k]

    def compute_output_shape(self, input_shape):
        u_shape = tuple(input_shape[1])
        return [u_shape, (u_shape[0], 1)]

    def get_config(self):
        return {
            **super().get_config(),
            "focus_ratio": self.focus_ratio,
            "association_ratio": self.association_ratio,
        }
