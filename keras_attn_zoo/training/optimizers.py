"""SGD as the papers' code ran it: PyTorch's ``torch.optim.SGD`` with coupled L2 weight decay.

Keras' ``SGD(weight_decay=...)`` is *decoupled* (the weights shrink by ``lr * wd * w`` apart from
the momentum), and Keras' momentum accumulates ``lr * g`` where PyTorch accumulates ``g`` and
multiplies by the current ``lr``. The two agree only while the rate is constant and without
weight decay. The papers (FANet, ABN, DAT) trained with PyTorch's rule, so the recipes use
:class:`CoupledSGD`, which implements it exactly:

    g = grad + weight_decay * w          (coupled L2, on every trainable variable)
    b = momentum * b + g                 (b starts at 0, so b = g at the first step)
    w = w - lr * (g + momentum * b if nesterov else b)

Adding ``0.5 * weight_decay * ||w||^2`` to the loss would give the same gradient, but would also
inflate the reported loss and need every layer to carry a regulariser.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class CoupledSGD(keras.optimizers.SGD):
    """SGD with momentum and coupled L2 weight decay, PyTorch's update rule.

    Args:
        learning_rate: a float or a ``LearningRateSchedule``. Defaults to 0.1.
        momentum: momentum factor. Defaults to 0.9.
        nesterov: Nesterov momentum. Defaults to False.
        weight_decay: coupled L2 coefficient, PyTorch's ``weight_decay`` (e.g. 5e-4). It is
            applied to every trainable variable, BN and biases included, as PyTorch's default
            parameter list does. Defaults to 0.
        name: optimizer name. Defaults to "coupled_sgd".
        **kwargs: other ``keras.optimizers.Optimizer`` arguments (``clipnorm``...).

    Example:
    >>> optimizer = CoupledSGD(0.1, momentum=0.9, weight_decay=5e-4)
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, nesterov=False, weight_decay=0.0,
                 name="coupled_sgd", **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, momentum=float(momentum), nesterov=nesterov,
                         weight_decay=None, name=name, **kwargs)
        if weight_decay is None or weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
        self.coupled_weight_decay = float(weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            gradient = gradient + ops.cast(self.coupled_weight_decay, variable.dtype) * variable
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * gradient)
            return
        momentum = ops.cast(self.momentum, variable.dtype)
        buffer = self.momentums[self._get_variable_index(variable)]
        new_buffer = momentum * buffer + gradient
        self.assign(buffer, new_buffer)
        step = gradient + momentum * new_buffer if self.nesterov else new_buffer
        self.assign_sub(variable, learning_rate * step)

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.coupled_weight_decay}
