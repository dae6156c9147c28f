"""Squeeze-and-excitation (Hu et al., CVPR 2018), the channel-attention baseline of FANet."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class SqueezeExcite(keras.layers.Layer):
    """Channel recalibration: ``x * sigmoid(W2 relu(W1 GAP(x)))``.

    Reference: Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018), as used by FANet
    (Liu et al.) Tables I-V as the SENet baseline.

    Args:
        ratio: reduction ratio r of the bottleneck (C -> C/r -> C). Defaults to 16.
            The hidden width is ``max(1, C // r)``.

    Input: a channels-last 4D tensor ``(batch, H, W, C)``. Output: the same shape.
    The channel count C is read in ``build``.

    The channel weights for a batch are ``layer.excitation(x)``, shape ``(batch, C)``.

    Example:
    >>> layer = SqueezeExcite(ratio=4)
    >>> layer(keras.ops.ones((2, 8, 8, 16))).shape
    (2, 8, 8, 16)
    """

    def __init__(self, ratio=16, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 1:
            raise ValueError(f"SqueezeExcite ratio must be a positive integer, got {ratio!r}.")
        self.ratio = ratio

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "SqueezeExcite expects a 4D channels-last input (batch, H, W, C), "
                f"got shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("SqueezeExcite needs a known channel count (last axis).")
        self.squeeze = keras.layers.Dense(
            max(1, channels // self.ratio), activation="relu", name="squeeze"
        )
        self.excite = keras.layers.Dense(channels, activation="sigmoid", name="excite")
        self.squeeze.build((input_shape[0], channels))
        self.excite.build((input_shape[0], max(1, channels // self.ratio)))

    def excitation(self, x):
        """The per-channel weights in (0, 1), shape ``(batch, C)``."""
        return self.excite(self.squeeze(ops.mean(x, axis=(1, 2))))

    def call(self, x):
        scale = self.excitation(x)
        return x * ops.expand_dims(ops.expand_dims(scale, 1), 1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}
