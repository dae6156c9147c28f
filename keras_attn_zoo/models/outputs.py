"""Functional models that train on a dict of outputs and infer with one of them.

ABN (:class:`~keras_attn_zoo.models.abn.ABNModel`) and PAYA
(:class:`~keras_attn_zoo.models.paya.PAYAModel`) graphs return a dict: the class scores under
``"predictions"`` plus what their losses read (the attention branch's logits; the gated
log-probabilities and the modules' logits). Called for inference (``predict``, ``evaluate``,
export) such a model returns the scores only, and its metrics read the scores; in training it
returns the dict, and the subclass's ``compute_loss`` reads it.
"""

import keras
from keras import ops

SCORES_KEY = "predictions"


class ScoresModel(keras.Model):
    """A functional model with a dict of outputs whose inference output is ``"predictions"``."""

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        return outputs if training else outputs[SCORES_KEY]

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(inputs, training=training, mask=mask)[SCORES_KEY]

    @property
    def output_shape(self):
        return tuple(self.output[SCORES_KEY].shape)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            y_pred = y_pred[SCORES_KEY]
        return super().compute_metrics(x, y, y_pred, sample_weight)


def find_layer(model, name):
    """A layer of ``model`` or of a model it wraps (the trainer's wrapper nests the model), or
    None."""
    return next((layer for layer in model._flatten_layers() if layer.name == name), None)


def _replicas_in_sync():
    """Replicas a ``tf.distribute`` strategy computes the step on (1 elsewhere: JAX and PyTorch
    distribute a global batch, not per-replica losses)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_share(loss):
    """A loss a model computes itself (not through a ``keras.losses.Loss``), as one replica's
    share: divided by the replicas in sync under ``tf.distribute``, as Keras divides compiled
    and added losses, because the replicas' gradients are summed. Unchanged with one replica.
    Without it, a term computed by hand weighs ``replicas`` times its compiled neighbours."""
    replicas = _replicas_in_sync()
    return loss if replicas == 1 else loss * ops.cast(1.0 / replicas, loss.dtype)


def replica_total(loss):
    """The inverse of :func:`replica_share`: a per-replica share of a loss as its value, for logs."""
    replicas = _replicas_in_sync()
    return loss if replicas == 1 else loss * ops.cast(replicas, loss.dtype)
