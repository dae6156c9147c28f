"""Discriminative attention training (DAT): any zoo classifier trained with Eq. 9 through ``fit``.

Reference: Wang et al., "Reducing Visual Confusion with Discriminative Attention" (arXiv
1811.07484; ICCV 2019 as "Sharpen Focus: Learning with Attention Separability and
Consistency"). The specification is ``shared/specs/dat.md``.

    L = w_cls * L_cls + w_i * sIoU_inner + w_l * sIoU_last + w_ac * L_ac       (Eq. 9, all w = 1)

- The maps (:func:`keras_attn_zoo.losses.attention_map`, A_ch by default) come from the
  gradients G of the pre-softmax logit of the target class (the label) and of the most
  confusing class (the highest-scoring wrong one, chosen per sample without gradient), with
  respect to the "inner" and "last" feature maps (the registry's ``dat_layers``: for the CIFAR
  ResNets the outputs of stages 2 and 3).
- One forward pass per step: zero "probe" offsets are added to both feature maps
  (:class:`keras_attn_zoo.autodiff.Probe`), the forward runs once in training mode, and two
  vector-Jacobian products of the logits (one-hot cotangents for the target and the confusing
  class) give G for both layers. BatchNormalization therefore updates its statistics once.
  Per backend (:func:`keras_attn_zoo.autodiff.linearize`): TensorFlow, a persistent
  ``GradientTape`` nested in the train step's; JAX, ``jax.vjp`` over the network's
  ``stateless_call`` (its state updates are carried out as auxiliary outputs and assigned once);
  PyTorch, ``torch.autograd.grad`` with ``retain_graph``.
- First order by default: G (and so alpha) is held constant, and the attention terms reach the
  weights through F only, as in every public port. ``second_order=True`` differentiates
  through G as well. On TensorFlow, Keras' batch moments (``tf.nn.moments``) put a
  ``stop_gradient`` on the mean, which makes second-order gradients through a training-mode
  BatchNormalization wrong: that combination is refused (use the JAX or PyTorch backend).
- The train step feeds the labels to the model (``call((images, labels), training=True)``);
  everything else (optimizer, loss scaling, metrics, callbacks) is Keras' own ``fit``. The logs
  hold each term's epoch mean: ``l_cls``, ``siou_inner``, ``siou_last``, ``l_ac`` (and ``loss``,
  the weighted total).

>>> import keras, keras_attn_zoo as zoo
>>> model = zoo.load("resnet20", classifier_activation=None)
>>> wrapper = dat_model(model)
>>> wrapper.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> history = wrapper.fit(images, labels, epochs=1)   # doctest: +SKIP
>>> sorted(history.history)                            # doctest: +SKIP
['l_ac', 'l_cls', 'loss', 'siou_inner', 'siou_last']
"""

import contextlib
import dataclasses

import keras
from keras import ops

from keras_attn_zoo import losses
from keras_attn_zoo.autodiff import Probe, check_backend, linearize
from keras_attn_zoo.models.outputs import replica_share, replica_total
from keras_attn_zoo.registry import get_spec

TERMS = ("l_cls", "siou_inner", "siou_last", "l_ac")
INNER_PROBE = "dat_inner_probe"
LAST_PROBE = "dat_last_probe"


@dataclasses.dataclass(frozen=True)
class DATConfig:
    """The settings of the objective (the defaults are the paper's, or spec ``dat.md``'s choice
    where the paper is silent).

    Attributes:
        attention: "channel" (A_ch, Eq. 3-4, the ICCV paper's) or "pixel" (A_px, Eq. 5).
        inner_layer: name of the inner layer. Defaults to the registry's ``dat_layers[0]``.
        last_layer: name of the last layer. Defaults to the registry's ``dat_layers[1]``.
        second_order: differentiate through the gradients G too. Defaults to False.
        mask: "literal" (Eq. 7 as printed) or "normalized" (scale-free). Defaults to "literal".
        mask_ratio: sigma / max A. Defaults to 0.55.
        omega: the mask's sharpness. Defaults to 100.
        inner_mask: the mask of sIoU_inner: "last" (the last layer's, resampled, as Eq. 7
            implies) or "inner" (the inner target map's own, as the public ports do).
            Defaults to "last".
        resize: how the last layer's mask is resampled to the inner layer: "bilinear"
            (half-pixel centres) or "nearest". Defaults to "bilinear".
        theta: the constant of L_ac (Eq. 8). Defaults to 0.8.
        cls_weight, siou_inner_weight, siou_last_weight, consistency_weight: the weights of
            the four terms of Eq. 9. Default to 1.
        epsilon: added to the sIoU and L_ac denominators. Defaults to 1e-7.
    """

    attention: str = "channel"
    inner_layer: str | None = None
    last_layer: str | None = None
    second_order: bool = False
    mask: str = "literal"
    mask_ratio: float = 0.55
    omega: float = 100.0
    inner_mask: str = "last"
    resize: str = "bilinear"
    theta: float = 0.8
    cls_weight: float = 1.0
    siou_inner_weight: float = 1.0
    siou_last_weight: float = 1.0
    consistency_weight: float = 1.0
    epsilon: float = losses.EPSILON

    def __post_init__(self):
        choices = {"attention": losses.MAP_KINDS, "mask": losses.MASK_KINDS,
                   "inner_mask": ("last", "inner"), "resize": losses.RESIZE_KINDS,
                   "second_order": (False, True)}
        for field, allowed in choices.items():
            value = getattr(self, field)
            if value not in allowed or (field == "second_order" and not isinstance(value, bool)):
                raise ValueError(f"DAT {field} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")
        for field in ("inner_layer", "last_layer"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"DAT {field} must be a layer name or None; got {value!r}.")
        numbers = ("mask_ratio", "omega", "theta", "cls_weight", "siou_inner_weight",
                   "siou_last_weight", "consistency_weight", "epsilon")
        for field in numbers:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"DAT {field} must be a number; got {value!r}.")
            if field != "theta" and value < 0:
                raise ValueError(f"DAT {field} must be non-negative; got {value!r}.")
        if not self.epsilon > 0:
            raise ValueError(f"DAT epsilon must be positive; got {self.epsilon!r}.")

    @property
    def weights(self):
        """``{term: weight}`` for the four terms of Eq. 9."""
        return {"l_cls": self.cls_weight, "siou_inner": self.siou_inner_weight,
                "siou_last": self.siou_last_weight, "l_ac": self.consistency_weight}

    def to_dict(self):
        """The settings as a JSON-ready dict, ``{"name": "dat", ...}`` (training records)."""
        return {"name": "dat", **dataclasses.asdict(self)}


def objective_config(objective):
    """A :class:`DATConfig` for ``objective``, or None for plain cross-entropy.

    Args:
        objective: None or "cross_entropy" (plain training); "dat" (the defaults); a dict of
            :class:`DATConfig` fields (optionally with ``"name": "dat"``); or a ``DATConfig``.
    """
    if objective is None or objective == "cross_entropy":
        return None
    if isinstance(objective, DATConfig):
        return objective
    if objective == "dat":
        return DATConfig()
    if isinstance(objective, dict):
        settings = {k: v for k, v in objective.items() if k != "name"}
        if objective.get("name", "dat") != "dat":
            raise ValueError(f"Unknown objective name {objective['name']!r}; expected 'dat'.")
        fields = {f.name for f in dataclasses.fields(DATConfig)}
        unknown = sorted(set(settings) - fields)
        if unknown:
            raise ValueError(f"Unknown DAT settings {unknown}; expected some of {sorted(fields)}.")
        return DATConfig(**settings)
    raise ValueError(
        f"objective must be None, 'cross_entropy', 'dat', a dict of DAT settings or a DATConfig; "
        f"got {objective!r}."
    )


def objective_record(objective):
    """What a training record says about the objective: ``{"name": "cross_entropy"}`` or the
    DAT settings (:meth:`DATConfig.to_dict`)."""
    config = objective_config(objective)
    return {"name": "cross_entropy"} if config is None else config.to_dict()


def resolve_dat_layers(model, inner=None, last=None):
    """The inner and last layer names: the given ones, else the registry's ``dat_layers``;
    errors if they are missing, equal, or not single 4D outputs."""

    if inner is None or last is None:
        try:
            registered = get_spec(model.name).dat_layers
        except ValueError:
            registered = ()
        if len(registered) == 2:
            inner, last = inner or registered[0], last or registered[1]
    if inner is None or last is None:
        raise ValueError(
            f"{model.name} is not a registered model: pass inner_layer= and last_layer=, the names "
            "of two layers with 4D outputs (batch, h, w, channels), e.g. the last two stages' outputs."
        )
    if inner == last:
        raise ValueError(f"The inner and last layers must differ; both are {inner!r}.")
    names = {layer.name for layer in model.layers}
    for role, name in (("inner", inner), ("last", last)):
        if name not in names:
            raise ValueError(f"{model.name} has no layer {name!r} (the DAT {role} layer).")
        outputs = keras.tree.flatten(model.get_layer(name).output)
        if len(outputs) != 1 or len(outputs[0].shape) != 4:
            raise ValueError(
                f"The DAT {role} layer needs one 4D output (batch, h, w, channels); {name} outputs "
                f"{[tuple(t.shape) for t in outputs]}."
            )
        if any(d is None for d in outputs[0].shape[1:]):
            raise ValueError(
                f"DAT needs a fixed input size: {name} outputs {tuple(outputs[0].shape)}; build the "
                "model with input_shape=(height, width, channels)."
            )
    return inner, last


def _classifier(model):

    try:
        name = get_spec(model.name).classifier
    except ValueError:
        name = model.layers[-1].name
    names = {layer.name for layer in model.layers}
    layer = model.get_layer(name if name in names else model.layers[-1].name)
    if type(layer) is not keras.layers.Dense:
        raise ValueError(
            f"DAT needs a single-label classifier whose last layer is a Dense layer (its "
            f"pre-activation gives the logits); {model.name} ends in {layer.name} "
            f"({type(layer).__name__})."
        )
    return layer.name


def _logits(classifier, features, scores):
    """The classifier's pre-activation: its output when linear, else features @ kernel + bias."""
    if classifier.activation in (None, keras.activations.linear):
        return ops.cast(scores, "float32")
    logits = ops.matmul(ops.cast(features, "float32"), ops.cast(classifier.kernel, "float32"))
    return logits + ops.cast(classifier.bias, "float32") if classifier.use_bias else logits


@contextlib.contextmanager
def _offsets(probes, offsets):
    for probe, offset in zip(probes, offsets):
        probe.offset = offset
    try:
        yield
    finally:
        for probe in probes:
            probe.offset = None


def attention_terms(inner, last, grads_target, grads_confusing, config):
    """The four maps and the three attention terms of a batch (per sample).

    Args:
        inner, last: the feature maps, ``(batch, h, w, k)``.
        grads_target, grads_confusing: ``(G_inner, G_last)`` of the target and the confusing
            class's logit.
        config: a :class:`DATConfig`.

    Returns:
        ``(maps, terms)``: ``maps`` with ``target_inner``, ``confusing_inner``,
        ``target_last``, ``confusing_last`` ``(batch, h, w)`` and ``mask_last``,
        ``mask_inner``; ``terms`` with ``siou_inner``, ``siou_last``, ``l_ac`` ``(batch,)``.
    """
    kind, eps = config.attention, config.epsilon
    maps = {
        "target_inner": losses.attention_map(inner, grads_target[0], kind),
        "confusing_inner": losses.attention_map(inner, grads_confusing[0], kind),
        "target_last": losses.attention_map(last, grads_target[1], kind),
        "confusing_last": losses.attention_map(last, grads_confusing[1], kind),
    }
    mask = dict(ratio=config.mask_ratio, omega=config.omega, kind=config.mask, epsilon=eps)
    maps["mask_last"] = losses.target_mask(maps["target_last"], **mask)
    resized = losses.resize_mask(maps["mask_last"], maps["target_inner"].shape[1:3], config.resize)
    maps["mask_inner"] = resized if config.inner_mask == "last" else losses.target_mask(maps["target_inner"], **mask)
    terms = {
        "siou_inner": losses.soft_iou(maps["target_inner"], maps["confusing_inner"], maps["mask_inner"], eps),
        "siou_last": losses.soft_iou(maps["target_last"], maps["confusing_last"], maps["mask_last"], eps),
        "l_ac": losses.attention_consistency(maps["target_inner"], resized, config.theta, eps),
    }
    return maps, terms


class DATModel(keras.Model):
    """A classifier trained with the discriminative-attention objective (Eq. 9) by ``fit``.

    Build it with :func:`dat_model`. ``predict`` / ``evaluate`` / ``model(images)`` give the
    class scores (no attention terms). In ``fit`` the train step passes ``(images, labels)`` to
    ``call``, which runs the one forward pass and the two backward passes to the probes and
    returns the scores and the per-sample terms; ``compute_loss`` adds the weighted batch means
    to the compiled loss; the terms' epoch means are logged. The weights it trains are the
    wrapped model's (it shares its layers), so save and load that model as usual (the wrapper
    itself is not meant to be saved as a ``.keras`` file; its weights checkpoint as any model's,
    which ``BackupAndRestore`` uses).
    """

    def __init__(self, net, config=None, classifier="predictions", abn=False, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.dat_config = config or DATConfig()
        self.classifier_name = classifier
        self.abn = abn
        self.term_trackers = [keras.metrics.Mean(name=term) for term in TERMS]
        self.built = True  # the network is (BackupAndRestore needs a built model)
        check_backend("The DAT objective")
        self._check_second_order()

    def _check_second_order(self):
        if not self.dat_config.second_order or keras.backend.backend() != "tensorflow":
            return
        batchnorm = [layer.name for layer in self.net._flatten_layers(include_self=False)
                     if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        if batchnorm:
            raise ValueError(
                "Second-order DAT through BatchNormalization in training mode is wrong on the "
                "TensorFlow backend: Keras' batch moments (tf.nn.moments) stop the gradient of "
                f"the mean in the variance ({len(batchnorm)} such layers, e.g. {batchnorm[0]}). "
                "Use the JAX backend (KERAS_BACKEND=jax) or PyTorch, or second_order=False."
            )

    def call(self, inputs, training=False):
        if isinstance(inputs, (tuple, list)):
            images, labels = inputs
            if training:
                return self.dat_outputs(images, labels, training=True)
            inputs = images
        return ops.cast(self.net(inputs, training=training)["scores"], "float32")

    def dat_outputs(self, images, labels=None, training=False):
        """One forward pass and the attention terms of a batch.

        Args:
            images: the wrapper's inputs.
            labels: int class labels ``(batch,)`` or one-hot ``(batch, classes)``; None takes
                each image's top-scoring class as the target.
            training: run the network in training mode (BatchNormalization batch statistics,
                augmentation, state updates). Defaults to False.

        Returns:
            A dict: ``scores`` (float32, what ``predict`` gives), ``logits`` (pre-softmax),
            ``target``, ``confusing`` (int32 ``(batch,)``), ``terms`` (``siou_inner``,
            ``siou_last``, ``l_ac``, per sample), ``maps`` (see :func:`attention_terms`), and
            ``abn_logits`` for ABN models.
        """
        self._check_second_order()
        probes = [self.net.get_layer(INNER_PROBE), self.net.get_layer(LAST_PROBE)]
        classifier = self.net.get_layer(self.classifier_name)
        batch = ops.shape(images)[0]
        zeros = [ops.zeros((batch, *p.output.shape[1:]), dtype=p.compute_dtype) for p in probes]
        if keras.backend.backend() == "jax":
            trainable = [v.value for v in self.net.trainable_variables]
            non_trainable = [v.value for v in self.net.non_trainable_variables]

            def forward(offsets):
                with _offsets(probes, offsets):
                    out, state = self.net.stateless_call(trainable, non_trainable, images, training=training)
                return _logits(classifier, out["features"], out["scores"]), (out, state)

            logits, (out, state), pullback = linearize(forward, zeros, self.dat_config.second_order, "DAT")
            if training:
                for variable, value in zip(self.net.non_trainable_variables, state):
                    variable.assign(value)
        else:
            def forward(offsets):
                with _offsets(probes, offsets):
                    out = self.net(images, training=training)
                return _logits(classifier, out["features"], out["scores"]), out

            logits, out, pullback = linearize(forward, zeros, self.dat_config.second_order, "DAT")
        classes = ops.shape(logits)[-1]
        if labels is None:
            labels = ops.argmax(ops.stop_gradient(logits), axis=-1)
        if len(labels.shape) == 2 and labels.shape[-1] == classes and classes != 1:
            target_hot = ops.cast(labels, logits.dtype)
        else:
            target_hot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), classes, dtype=logits.dtype)
        confusing = losses.confusing_class(logits, target_hot)
        grads = []
        for cotangent in (target_hot, ops.one_hot(confusing, classes, dtype=logits.dtype)):
            g = pullback(cotangent)
            grads.append(g if self.dat_config.second_order else [ops.stop_gradient(t) for t in g])
        maps, terms = attention_terms(out["dat_inner"], out["dat_last"], grads[0], grads[1], self.dat_config)
        result = {"scores": ops.cast(out["scores"], "float32"), "logits": logits,
                  "target": ops.cast(ops.argmax(target_hot, axis=-1), "int32"), "confusing": confusing,
                  "terms": terms, "maps": maps}
        if self.abn:
            result["abn_logits"] = ops.cast(out["abn_logits"], "float32")
        return result

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        # Keras' compiled (and added) losses come as this replica's share under tf.distribute;
        # the terms are computed as values, logged as values and returned as a share.
        cls = replica_total(ops.cast(super().compute_loss(x, y, y_pred["scores"], sample_weight, training), "float32"))
        if self.abn:  # L_att of the attention branch (ABN Eq. 3) belongs to the classification loss
            cls = cls + _mean(keras.losses.sparse_categorical_crossentropy(
                ops.reshape(y, (-1,)), y_pred["abn_logits"], from_logits=True), sample_weight)
        values = {"l_cls": cls, **{k: _mean(v, sample_weight) for k, v in y_pred["terms"].items()}}
        total = 0.0
        for tracker in self.term_trackers:
            tracker.update_state(values[tracker.name])
            total = total + self.dat_config.weights[tracker.name] * values[tracker.name]
        return replica_share(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        training = isinstance(y_pred, dict)
        logs = super().compute_metrics(x, y, y_pred["scores"] if training else y_pred, sample_weight)
        if not training:  # the terms are measured in training steps only
            logs = {k: v for k, v in logs.items() if k not in TERMS}
        return logs

    def train_step(self, *args):
        # The labels go to ``call`` too (JAX's train_step is (state, data), the others' (data)).
        *state, data = args
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        return super().train_step(*state, ((x, y), y, sample_weight))


def _mean(values, sample_weight=None):
    values = ops.cast(values, "float32")
    if sample_weight is None:
        return ops.mean(values)
    weight = ops.cast(ops.reshape(sample_weight, ops.shape(values)), "float32")
    return ops.sum(values * weight) / ops.maximum(ops.sum(weight), 1e-7)


def dat_model(model, inputs=None, features=None, objective="dat", name=None):
    """Wrap a classifier so that ``fit`` trains it with the DAT objective.

    Args:
        model: a functional classifier ending in a Dense layer (any registry model but the
            multi-task ABN); its classifier may end in a softmax (the logits are read before it).
        inputs: the wrapper's input tensor, when ``model`` follows preprocessing layers (the
            trainer's augmentation and normalisation). Defaults to a new input of the model's
            shape.
        features: the tensor ``model`` is applied to (built from ``inputs``). Defaults to
            ``inputs``.
        objective: "dat", a dict of :class:`DATConfig` fields, or a ``DATConfig``. Defaults
            to "dat".
        name: Defaults to "<model>_dat".

    Returns:
        A :class:`DATModel` sharing ``model``'s layers; compile it with the classification
        loss (the one that fits ``model``'s output: logits or softmax scores).
    """
    config = objective_config(objective)
    if config is None:
        raise ValueError("dat_model needs a DAT objective ('dat' or settings), got plain cross-entropy.")
    inner, last = resolve_dat_layers(model, config.inner_layer, config.last_layer)
    classifier = _classifier(model)
    if inputs is None:
        inputs = keras.Input(tuple(model.input_shape[1:]), name="images")
    features = inputs if features is None else features
    probes = {inner: Probe(name=INNER_PROBE), last: Probe(name=LAST_PROBE)}
    captured = {}

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in probes:
            out = probes[layer.name](out)
            captured["dat_inner" if layer.name == inner else "dat_last"] = out
        if layer.name == classifier:
            captured["features"], captured["scores"] = args[0], out
        if layer.name == "abn_logits":
            captured["abn_logits"] = out
        return out

    keras.models.clone_model(model, input_tensors=features, clone_function=lambda layer: layer,
                             call_function=call)
    net = keras.Model(inputs, captured, name=f"{model.name}_dat_network")
    config = dataclasses.replace(config, inner_layer=inner, last_layer=last)
    return DATModel(net, config, classifier, abn="abn_logits" in captured, name=name or f"{model.name}_dat")
