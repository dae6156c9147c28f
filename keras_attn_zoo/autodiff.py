"""Gradients with respect to layer outputs, on the TensorFlow, JAX and PyTorch backends.

``keras.ops`` has no gradient op, so the few places that need one (Grad-CAM, the
discriminative-attention objective) go through these helpers. A :class:`Probe` placed after a
layer adds a zero ``offset`` to its output: the gradient with respect to the offset is the
gradient with respect to the layer's output, computed in the same forward pass.
"""

import keras
from keras import ops

BACKENDS = ("tensorflow", "jax", "torch")


class Probe(keras.layers.Layer):
    """Identity in the graph; adds ``offset`` when one is set, so that the gradient with respect
    to the offset (at zero) is the gradient with respect to the layer output it follows."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.offset = None

    def call(self, x):
        return x if self.offset is None else x + self.offset


def check_backend(purpose):
    """The backend's name; a ValueError naming ``purpose`` on a backend without gradients here."""
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(
            f"{purpose} needs gradients, which keras.ops does not expose; it supports the "
            f"TensorFlow, JAX and PyTorch backends, and the backend is {backend!r}."
        )
    return backend


def gradient(fn, offset, purpose="This"):
    """``d fn(offset)[0] / d offset`` and ``fn(offset)[1]``, on the current backend (no graph
    kept for higher orders)."""
    backend = check_backend(purpose)
    if backend == "tensorflow":
        import tensorflow as tf

        offset = tf.convert_to_tensor(offset)
        with tf.GradientTape() as tape:
            tape.watch(offset)
            value, aux = fn(offset)
        return tape.gradient(value, offset), aux
    if backend == "jax":
        import jax

        grad, aux = jax.grad(fn, has_aux=True)(offset)
        return grad, aux
    import torch

    offset = ops.convert_to_tensor(offset).detach().requires_grad_(True)
    with torch.enable_grad():
        value, aux = fn(offset)
        (grad,) = torch.autograd.grad(value, offset)
    return grad, None if aux is None else ops.stop_gradient(aux)


def linearize(fn, primals, create_graph=False, purpose="This"):
    """Evaluate ``fn(primals) -> (y, aux)`` once and return ``(y, aux, pullback)``.

    ``pullback(cotangent)`` is the vector-Jacobian product: the gradients of
    ``sum(y * cotangent)`` with respect to each of ``primals`` (a list of tensors), as a list.
    It can be called several times (one forward, several backward passes). ``y`` and ``aux``
    stay differentiable with respect to anything ``fn`` closes over, so an enclosing gradient
    (a Keras train step's) sees them; with ``create_graph`` the pullback's results are
    differentiable too (second order), else they may be constants.

    On JAX ``fn`` must be pure (return any state it updates in ``aux``); on TensorFlow and
    PyTorch it may update layer state.
    """
    backend = check_backend(purpose)
    primals = list(primals)
    if backend == "tensorflow":
        import tensorflow as tf

        primals = [tf.convert_to_tensor(p) for p in primals]
        with tf.GradientTape(persistent=True) as tape:
            for p in primals:
                tape.watch(p)
            y, aux = fn(primals)

        def pullback(cotangent):
            grads = tape.gradient(y, primals, output_gradients=cotangent)
            return [ops.zeros_like(p) if g is None else g for p, g in zip(primals, grads)]

        return y, aux, pullback
    if backend == "jax":
        import jax

        y, vjp, aux = jax.vjp(fn, primals, has_aux=True)
        return y, aux, lambda cotangent: list(vjp(cotangent)[0])
    import torch

    primals = [ops.convert_to_tensor(p).detach().requires_grad_(True) for p in primals]
    with torch.enable_grad():
        y, aux = fn(primals)

    def pullback(cotangent):
        with torch.enable_grad():
            grads = torch.autograd.grad(
                y, primals, grad_outputs=cotangent, retain_graph=True, create_graph=create_graph,
                allow_unused=True,
            )
        return [torch.zeros_like(p) if g is None else g for p, g in zip(primals, grads)]

    return y, aux, pullback
