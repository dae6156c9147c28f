"""The Attention Branch Network (Fukui et al., CVPR 2019) as a mechanism any family can place.

A family builder splits its network at the branch point into a feature extractor and a
perception branch and calls :func:`attention_branch` there; :func:`abn_model` then wraps the
graph in :class:`ABNModel`, whose ``predict`` gives the perception branch's class scores and
whose ``fit`` trains both branches with L = L_att + L_per (Eq. 3) without the user writing it.
Layer names (public): ``abn_attention_map`` (M, sigmoid, shape (batch, H, W, 1)),
``abn_logits`` (attention-branch logits), ``abn_weighting`` ((1 + M) * g).
"""

import keras
from keras import ops

from keras_attn_zoo.layers.attention_branch import AttentionMapWeighting
from keras_attn_zoo.models.outputs import ScoresModel, find_layer, replica_share


def attention_branch(features, branch_stage, classes, epsilon=1e-5, mode="residual", branch_bn=True):
    """Build the attention branch on ``features``; returns (weighted features, logits, M).

    Following the authors' code: ``branch_stage`` (a copy of the network's next stage run with
    stride 1) -> BN (no ReLU) -> 1x1 conv to K classes (no bias) -> BN -> ReLU; from there
    a 1x1 conv K -> K (no bias) and global average pooling give the logits, and a 3x3 conv
    K -> 1 (no bias) -> BN -> sigmoid gives the attention map M. The perception branch
    continues on ``(1 + M) * features`` (``mode="residual"``, Eq. 2) or ``M * features`` (Eq. 1).
    ``branch_bn=False`` leaves out the BN after the stage copy (the authors' ResNeXt creates it
    but never calls it).
    """
    a = branch_stage(features)
    if branch_bn:
        a = keras.layers.BatchNormalization(epsilon=epsilon, name="abn_bn")(a)
    a = keras.layers.Conv2D(classes, 1, use_bias=False, name="abn_class_conv")(a)
    a = keras.layers.BatchNormalization(epsilon=epsilon, name="abn_class_bn")(a)
    a = keras.layers.ReLU(name="abn_class_relu")(a)
    logits = keras.layers.Conv2D(classes, 1, use_bias=False, name="abn_logits_conv")(a)
    logits = keras.layers.GlobalAveragePooling2D(name="abn_logits")(logits)
    m = keras.layers.Conv2D(1, 3, padding="same", use_bias=False, name="abn_map_conv")(a)
    m = keras.layers.BatchNormalization(epsilon=epsilon, name="abn_map_bn")(m)
    m = keras.layers.Activation("sigmoid", name="abn_attention_map")(m)
    weighted = AttentionMapWeighting(mode, name="abn_weighting")([features, m])
    return weighted, logits, m


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class ABNModel(ScoresModel):
    """A functional model with an attention branch whose loss is added in training.

    The graph has two outputs, ``{"predictions": perception scores, "abn_logits": attention
    logits}``. Called for inference (``predict``, ``evaluate``, export) it returns the
    perception branch's scores only; in training it returns both, and ``compute_loss`` adds the
    attention branch's loss to the compiled one: cross-entropy from logits (sparse or one-hot
    labels, as given) for classification, binary cross-entropy for multi-label models
    (``multilabel=True`` in the graph's config: the multi-task ABN).
    """

    @property
    def multilabel(self):
        """True for the multi-task ABN, whose outputs are per-attribute sigmoids (also when
        this model wraps an ABN model, as the trainer's does)."""
        return find_layer(self, "predictions").activation is keras.activations.sigmoid

    def attention_loss(self, y, logits, sample_weight=None):
        """The attention branch's loss (L_att of Eq. 3) for labels ``y``."""
        if self.multilabel:
            loss = keras.losses.binary_crossentropy(
                ops.cast(ops.expand_dims(y, -1), logits.dtype), ops.expand_dims(logits, -1), from_logits=True
            )
            loss = ops.mean(loss, axis=-1)
        elif len(y.shape) == len(logits.shape) and y.shape[-1] == logits.shape[-1]:
            loss = keras.losses.categorical_crossentropy(y, logits, from_logits=True)
        else:
            loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        if sample_weight is not None:
            sample_weight = ops.cast(ops.reshape(sample_weight, ops.shape(loss)), loss.dtype)
            return ops.sum(loss * sample_weight) / ops.maximum(ops.sum(sample_weight), 1e-7)
        return ops.mean(loss)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, dict):
            perception = super().compute_loss(x, y, y_pred["predictions"], sample_weight, training)
            return perception + replica_share(self.attention_loss(y, y_pred["abn_logits"], sample_weight))
        return super().compute_loss(x, y, y_pred, sample_weight, training)


def abn_model(inputs, predictions, abn_logits, name):
    """Wrap an ABN graph: ``predict`` -> perception scores, ``fit`` -> both branches' losses."""
    return ABNModel(inputs, {"predictions": predictions, "abn_logits": abn_logits}, name=name)


def abn_training_outputs(model):
    """A ``keras.Model`` sharing ``model``'s layers that returns what it trains on:
    ``{"predictions": perception scores, "abn_logits": attention-branch logits}`` (whatever
    the ``training`` flag), for wrapping an ABN model in a larger graph."""
    return keras.Model(
        model.inputs,
        {key: model.get_layer(key).output for key in ("predictions", "abn_logits")},
        name=model.name,
    )


def abn_outputs_model(model):
    """A ``keras.Model`` sharing ``model``'s layers that returns the attention map M and the
    attention branch's logits: ``{"attention_map": (batch, H, W, 1), "logits": (batch, K)}``."""
    names = {layer.name for layer in model.layers}
    if "abn_attention_map" not in names:
        raise ValueError(f"{model.name} has no attention branch (no layer 'abn_attention_map').")
    return keras.Model(
        model.inputs,
        {
            "attention_map": model.get_layer("abn_attention_map").output,
            "logits": model.get_layer("abn_logits").output,
        },
    )


def abn_outputs(model, images, batch_size=32):
    """The attention map M and the attention-branch logits of ``model`` for a batch."""
    return abn_outputs_model(model).predict(images, batch_size=batch_size, verbose=0)
