"""Attend-and-Rectify / PAYA (Rodriguez et al., ECCV 2018 / TMM 2019) as a mechanism any family
can place: attention modules at the end of stages, global gates, gated log-probability output.

A family builder collects the feature map at the end of each stage (``stage_features``) and
calls :func:`paya_head` on its final features; :func:`paya_model` wraps the graph in
:class:`PAYAModel`, whose ``predict`` gives class scores and whose ``fit`` trains with the
authors' loss (NLL on the gated, not renormalised, log-probabilities plus the head-diversity
regulariser) whatever loss it was compiled with.

Layer names (public): ``stage{s}_paya`` (the module on stage s: outputs
``[logits, masks (batch, h, w, H), head_gates (batch, H)]``), ``head_pool`` / ``predictions``
(the network's own classifier, logits), ``paya_gate`` (global gate weights, deepest module
first, the network's classifier last), ``paya_output`` (gated log-probabilities) and
``paya_scores`` (the model's output: their softmax).
"""

import keras
from keras import ops

from keras_attn_zoo.layers.attend_rectify import (
    GATE_MODES, PayaAggregation, PayaGate, PayaModule, kaiming_normal,
)
from keras_attn_zoo.models.outputs import ScoresModel, find_layer, replica_share

OUTPUT = "paya_output"
SCORES = "paya_scores"


def module_name(stage):
    return f"stage{stage}_paya"


# The builders' PAYA arguments and their defaults (the authors' WARN settings; auxiliary: off).
PAYA_DEFAULTS = {"attention_depth": 3, "attention_heads": 4, "reg_weight": 1e-3, "gate": "softmax",
                 "auxiliary_weight": 0.0}


def check_unused_paya_arguments(attention, options):
    """Refuse PAYA arguments changed from their defaults on a model without PAYA modules (they
    would be ignored without a word)."""
    changed = sorted(key for key, value in options.items() if value != PAYA_DEFAULTS[key])
    if changed:
        raise ValueError(
            f"{', '.join(changed)} only apply to attention='paya' models (PAYA attention modules); "
            f"this model has attention={attention!r}. Use a paya_* name or attention='paya'."
        )


def check_paya_arguments(attention_depth, heads, reg_weight, gate, stages, auxiliary_weight=0.0):
    """Validate the builders' PAYA arguments; errors name the bad value."""
    if not isinstance(attention_depth, int) or isinstance(attention_depth, bool) or not 1 <= attention_depth <= stages:
        raise ValueError(
            f"attention_depth (the number of PAYA modules) must be an integer from 1 to {stages} "
            f"(one per stage), got {attention_depth!r}."
        )
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
        raise ValueError(f"attention_heads must be a positive integer, got {heads!r}.")
    for arg, value in (("reg_weight", reg_weight), ("auxiliary_weight", auxiliary_weight)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{arg} must be a number >= 0, got {value!r}.")
    if gate not in GATE_MODES:
        raise ValueError(f"gate must be one of {GATE_MODES}, got {gate!r}.")


def paya_head(
    features, stage_features, classes, attention_depth=3, heads=4, reg_weight=1e-3,
    gate="softmax", classifier_activation="softmax", auxiliary_weight=0.0,
):
    """The network's classifier, the attention modules and the gated output.

    As the authors' ``WideResNetAttention.forward``: modules on the last ``attention_depth``
    entries of ``stage_features`` (deepest first: the authors' ``attention_layers = [2, 1, 0]``),
    each with ``diversity_weight = reg_weight / attention_depth`` (their regulariser is the
    mean over modules); the network's own classifier ``predictions`` (linear) on the globally
    average-pooled ``features`` (``head_pool``); the global gate ``paya_gate`` on the same
    pooled features; ``paya_output`` the gate-weighted sum of the log-softmax of
    ``[modules deepest first..., predictions]``; ``paya_scores`` its ``classifier_activation``.

    Args:
        features: the final feature map (after the last BN-ReLU), ``(batch, h, w, c)``.
        stage_features: the feature map at the end of each stage, in network order.
        classes: number of classes.
        attention_depth: AD, the number of modules. Defaults to 3.
        heads: attention heads per module. Defaults to 4.
        reg_weight: weight of the head-diversity regulariser. Defaults to 1e-3.
        gate: "softmax" or "sigmoid" global gates. Defaults to "softmax".
        classifier_activation: applied to ``paya_output`` for the model's scores. Defaults to
            "softmax".
        auxiliary_weight: weight of the optional per-module cross-entropy (ours, not the
            papers'). Defaults to 0.

    Returns:
        ``(scores, {name: tensor})``: the model's output and the graph's training outputs.
    """
    check_paya_arguments(attention_depth, heads, reg_weight, gate, len(stage_features), auxiliary_weight)
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    net_logits = keras.layers.Dense(classes, kernel_initializer=kaiming_normal(), name="predictions")(pooled)
    stages = list(range(len(stage_features), 0, -1))[:attention_depth]
    module_logits = {}
    for s in stages:
        logits, _, _ = PayaModule(
            classes, heads, reg_weight / attention_depth, name=module_name(s)
        )(stage_features[s - 1])
        module_logits[module_name(s)] = logits
    weights = PayaGate(attention_depth + 1, gate, name="paya_gate")(pooled)
    out = PayaAggregation(gate, auxiliary_weight, name=OUTPUT)([weights, *module_logits.values(), net_logits])
    scores = keras.layers.Activation(classifier_activation or "linear", name=SCORES)(out)
    return scores, {"predictions": scores, OUTPUT: out, **module_logits}


def nll(y, log_probs, sample_weight=None):
    """``-mean_b log_probs[b, y_b]`` (sparse labels) or ``-mean_b sum_c y_bc log_probs[b, c]``
    (one-hot / soft labels), as PyTorch's ``nll_loss``: no renormalisation of ``log_probs``."""
    if len(y.shape) == len(log_probs.shape) and y.shape[-1] == log_probs.shape[-1] and y.shape[-1] != 1:
        loss = -ops.sum(ops.cast(y, log_probs.dtype) * log_probs, axis=-1)
    else:
        labels = ops.cast(ops.reshape(y, (-1,)), "int32")
        loss = -ops.sum(ops.one_hot(labels, log_probs.shape[-1], dtype=log_probs.dtype) * log_probs, axis=-1)
    if sample_weight is not None:
        sample_weight = ops.cast(ops.reshape(sample_weight, ops.shape(loss)), loss.dtype)
        return ops.sum(loss * sample_weight) / ops.maximum(ops.sum(sample_weight), 1e-7)
    return ops.mean(loss)


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class PAYAModel(ScoresModel):
    """A functional model with PAYA attention modules, trained with the authors' loss.

    The graph's outputs are a dict: ``predictions`` (class scores, the softmax of the gated
    log-probabilities), ``paya_output`` (the gated log-probabilities themselves) and each
    module's logits (``stage3_paya``...). Called for inference (``predict``, ``evaluate``,
    export) it returns the scores only. In training it returns the dict, and ``compute_loss``
    is the authors' (spec Section 5.1), whatever loss was compiled:
    ``NLL(paya_output, y)`` (not renormalised: the gate-weighted sum of the outputs'
    cross-entropies) plus the added losses (the head-diversity regulariser of every module,
    weight regularisers) plus, when ``auxiliary_weight > 0`` (ours, not the papers'), that weight
    times the mean cross-entropy of the modules' own logits.
    """

    @property
    def auxiliary_weight(self):
        """Weight of the per-module cross-entropy in training (``paya_output``'s setting)."""
        layer = find_layer(self, OUTPUT)
        return layer.auxiliary_weight if layer is not None else 0.0

    def paya_loss(self, y, y_pred, sample_weight=None):
        """The authors' NLL on ``paya_output`` (+ the auxiliary term), without added losses."""
        loss = nll(y, y_pred[OUTPUT], sample_weight)
        modules = [key for key in y_pred if key.endswith("_paya")]
        if self.auxiliary_weight and modules:
            aux = [nll(y, ops.log_softmax(y_pred[key], axis=-1), sample_weight) for key in modules]
            loss = loss + self.auxiliary_weight * ops.sum(ops.stack(aux)) / len(aux)
        return loss

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, dict):
            losses = [replica_share(self.paya_loss(y, y_pred, sample_weight))]
            losses += [self._aggregate_additional_loss(loss) for loss in self.losses]
            return ops.sum(ops.stack(losses)) if len(losses) > 1 else losses[0]
        return super().compute_loss(x, y, y_pred, sample_weight, training)


def paya_model(inputs, outputs, name):
    """Wrap a PAYA graph (``outputs`` from :func:`paya_head`) in :class:`PAYAModel`."""
    return PAYAModel(inputs, outputs, name=name)


def paya_layers(model):
    """The model's attention modules in the global gates' order: deepest first, as
    :func:`paya_head` creates them and ``paya_output`` takes their logits."""
    return [layer for layer in model.layers if isinstance(layer, PayaModule)]


def paya_training_outputs(model):
    """A ``keras.Model`` sharing ``model``'s layers that returns the dict it trains on
    (whatever the ``training`` flag), for wrapping a PAYA model in a larger graph."""
    return keras.Model(model.input, dict(model.output), name=model.name)


def paya_outputs_model(model):
    """A ``keras.Model`` sharing ``model``'s layers that returns everything PAYA computes:
    ``{"scores", "gates" (global, deepest module first, the network's classifier last),
    "net_logits", and per module "<name>/logits", "<name>/masks", "<name>/head_gates"}``."""
    layers = paya_layers(model)
    if not layers:
        raise ValueError(f"{model.name} has no PAYA attention modules (no PayaModule layer).")
    outputs = {
        "scores": model.get_layer(SCORES).output,
        "gates": model.get_layer("paya_gate").output,
        "net_logits": model.get_layer("predictions").output,
    }
    for layer in layers:
        logits, masks, head_gates = layer.output
        outputs.update({f"{layer.name}/logits": logits, f"{layer.name}/masks": masks,
                        f"{layer.name}/head_gates": head_gates})
    return keras.Model(model.input, outputs)


def reset_gate(model):
    """Give ``paya_gate`` a fresh initialisation (Kaiming-normal Dense, BN at gamma 1, beta 0,
    moving mean 0, variance 1): for new classes its weighting of the outputs is learnt anew."""
    gate = model.get_layer("paya_gate")
    gate.dense.kernel.assign(kaiming_normal()(tuple(gate.dense.kernel.shape)))
    bn = gate.bn
    for variable, value in ((bn.gamma, 1.0), (bn.beta, 0.0), (bn.moving_mean, 0.0), (bn.moving_variance, 1.0)):
        variable.assign(ops.full(tuple(variable.shape), value))


def reuse_attention(model, pretrained, names):
    """For the modules ``names`` of ``model`` (new for other classes), copy the class-independent
    parts, the masks' and head gates' convolutions, from ``pretrained``; zero the output heads
    (uniform scores at the start, as the zoo's new classifiers)."""
    for name in names:
        layer, source = model.get_layer(name), pretrained.get_layer(name)
        layer.attention_conv.set_weights(source.attention_conv.get_weights())
        layer.gate_conv.set_weights(source.gate_conv.get_weights())
        layer.output_conv.set_weights([0 * w for w in layer.output_conv.get_weights()])
