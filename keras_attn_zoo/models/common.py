"""What every family builder shares: the attention argument, the input, the FA chain, the head."""

import dataclasses
import numbers

import keras

from keras_attn_zoo.layers import FocusAssociation, SqueezeExcite
from keras_attn_zoo.models.abn import abn_model
from keras_attn_zoo.models.paya import check_unused_paya_arguments, paya_head, paya_model

@dataclasses.dataclass(frozen=True)
class Mechanism:
    """One attention mechanism as the family builders see it: the parts it places.

    Every part is off by default, so an entry names only what it uses, and a new kind of part
    is one new field (off for every existing entry) read by the builders that can place it.
    A mechanism that changes no architecture (a training objective) is an entry with no part.

    Args:
        name: the value of the builders' ``attention`` argument (None: no attention).
        title: what registry descriptions put before the architecture, e.g. "FA-SE-".
        se: squeeze-and-excitation inside every block.
        fa: focus-and-association between blocks (and between stages).
        abn: an attention branch (ABN) at the family's branch point. It is a classifier (the
            model needs ``include_top``) and adds an output (``abn_logits``) and a training loss
            of its own (``ABNModel``).
        paya: PAYA attention modules at the end of stages, global gates and the gated
            log-probability output (Attend-and-Rectify). A classifier too (``PAYAModel``).
    """

    name: str | None
    title: str = ""
    se: bool = False
    fa: bool = False
    abn: bool = False
    paya: bool = False


ATTENTIONS = {}


def register_mechanism(mechanism):
    """Add a mechanism to :data:`ATTENTIONS`; a duplicate name is an error."""
    if mechanism.name in ATTENTIONS:
        raise ValueError(f"Attention mechanism {mechanism.name!r} is already registered.")
    ATTENTIONS[mechanism.name] = mechanism
    return mechanism


for _mechanism in (
    Mechanism(None),
    Mechanism("se", "SE-", se=True),
    Mechanism("fa", "FA-", fa=True),
    Mechanism("fa_se", "FA-SE-", se=True, fa=True),
    Mechanism("abn", "ABN-", abn=True),
    Mechanism("abn_se", "ABN-SE-", se=True, abn=True),
    Mechanism("paya", "PAYA-", paya=True),
):
    register_mechanism(_mechanism)


@dataclasses.dataclass(frozen=True)
class Attention:
    """Where a family places attention: the parsed ``attention`` argument of a builder, with
    the ratios its layers use. SE combines with FA or an attention branch."""

    mechanism: Mechanism
    se_ratio: int
    fa_ratios: tuple

    @property
    def se(self):
        return self.mechanism.se

    @property
    def fa(self):
        return self.mechanism.fa

    @property
    def abn(self):
        return self.mechanism.abn

    @property
    def paya(self):
        return self.mechanism.paya

    def squeeze_excite(self, x, name):
        """SE on ``x`` when enabled, else ``x`` unchanged."""
        return SqueezeExcite(self.se_ratio, name=name)(x) if self.se else x

    def chain(self):
        """A new FA chain: the blocks of a stage, or the stages of a network."""
        return FAChain(self.fa, *self.fa_ratios)


def parse_attention(attention, se_ratio, fa_ratios=(4, 4), *, allowed, include_top=True):
    """Validate the ``attention`` argument of a family builder against the names it supports
    (``allowed``: every family lists its own, so a new mechanism is never accepted silently by
    a family that cannot place it)."""
    if attention not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"attention must be one of {names} for this family; got {attention!r}.")
    mechanism = ATTENTIONS[attention]
    if mechanism.abn and not include_top:
        raise ValueError(
            "An attention branch is a classifier: ABN models need include_top=True "
            "(use the plain model for features)."
        )
    if mechanism.paya and not include_top:
        raise ValueError(
            "PAYA attention modules are classifiers: PAYA models need include_top=True "
            "(use the plain model for features)."
        )
    fa_ratios = tuple(fa_ratios)
    if len(fa_ratios) != 2:
        raise ValueError(f"fa_ratios must be (r1, r2), got {fa_ratios!r}.")
    return Attention(mechanism=mechanism, se_ratio=se_ratio, fa_ratios=fa_ratios)


class FAChain:
    """The FA modules along one chain of blocks (FANet Fig. 1 and Fig. 4).

    The first block of a chain is the benchmark block and is not recalibrated; block 1 gets
    focus only; block i >= 2 also gets association over the i - 1 earlier gates.
    """

    def __init__(self, enabled, focus_ratio=4, association_ratio=4):
        self.enabled = enabled
        self.focus_ratio = focus_ratio
        self.association_ratio = association_ratio
        self.position = 0
        self.gates = []

    def __call__(self, x, u, name):
        """Recalibrate block output ``u`` given its input ``x``; returns the next block's input."""
        position = self.position
        self.position += 1
        if not self.enabled or position == 0:
            return u
        out, k = FocusAssociation(self.focus_ratio, self.association_ratio, name=name)(
            [x, u, *self.gates]
        )
        self.gates.append(k)
        return out


def model_input(input_shape, input_tensor, default_shape, min_size, family):
    """The model's input, after checking ``input_shape`` against what the family accepts."""
    if input_tensor is not None:
        if input_shape is not None:
            raise ValueError("Pass either input_shape or input_tensor, not both.")
        return input_tensor
    shape = tuple(default_shape if input_shape is None else input_shape)
    if len(shape) != 3:
        raise ValueError(
            f"{family} takes input_shape=(height, width, channels) (channels last); got {shape!r}."
        )
    height, width, channels = shape
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{family}: the channel count must be a positive integer, got {channels!r}.")
    for side in (height, width):
        if side is None:
            continue
        if not isinstance(side, int) or side < min_size:
            raise ValueError(
                f"{family} needs height and width of {'' if isinstance(side, int) else 'whole numbers (int), '}at least {min_size} pixels "
                f"(or None for a variable size); got input_shape={shape!r}."
            )
    return keras.Input(shape=shape, name="input")


def is_count(value):
    """Whether ``value`` is a whole number (a Python or NumPy integer, not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_classes(classes, include_top, classifier_activation="softmax", att=None):
    """The number of classes as an ``int``, checked (when there is a classifier).

    Any integer (``np.int64(10)`` too) is accepted. ``classes=1`` is refused with a softmax: its
    single output is always 1.0. One sigmoid output (``classifier_activation="sigmoid"``) is a
    binary classifier and is allowed, except with ABN or PAYA, whose branch and gates are
    built on softmax over the classes.
    """
    if not include_top:
        return int(classes) if is_count(classes) else classes
    if not is_count(classes) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}.")
    classes = int(classes)
    if classes == 1:
        special = att is not None and (att.abn or att.paya)
        if classifier_activation != "sigmoid" or special:
            how = ("use 2 classes (ABN and PAYA need a softmax over at least 2)" if special else
                   "use 2 classes, or for one binary output 1 class with "
                   "classifier_activation='sigmoid'")
            raise ValueError(
                f"A classifier of 1 class with classifier_activation={classifier_activation!r} "
                f"would output 1.0 for every image: {how}."
            )
    return classes


def check_pooling(pooling):
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}.")


def head(x, include_top, pooling, classes, classifier_activation, top_pool="avg"):
    """``keras.applications``-style end of a network: classifier or pooled / raw features.

    With ``include_top`` the features are pooled (``head_pool``, global average unless the
    family's paper says max) and classified by the Dense layer ``predictions``.
    """
    check_pooling(pooling)
    if include_top:
        pool = keras.layers.GlobalMaxPooling2D if top_pool == "max" else keras.layers.GlobalAveragePooling2D
        x = pool(name="head_pool")(x)
        return keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="head_pool")(x)
    return x


def conv2d(x, filters, kernel_size, name, strides=1, padding="same", groups=1, use_bias=False):
    """A Conv2D named ``name``. A strided "same" convolution pads symmetrically
    (``{name}_pad``), as PyTorch does, rather than Keras' bottom/right-heavy "same": the output
    size is the same and checkpoints converted from PyTorch compute the same function."""
    kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if padding == "same" and strides != 1 and max(kernel) > 1:
        x = keras.layers.ZeroPadding2D((kernel[0] // 2, kernel[1] // 2), name=f"{name}_pad")(x)
        padding = "valid"
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, groups=groups,
        use_bias=use_bias, kernel_initializer="he_normal", name=name,
    )(x)


def conv_bn(x, filters, kernel_size, name, strides=1, padding="same", groups=1, relu=True, epsilon=1e-3):
    """Conv (no bias) -> BN -> optional ReLU, named ``{name}_conv``, ``{name}_bn``, ``{name}_relu``."""
    x = conv2d(x, filters, kernel_size, f"{name}_conv", strides, padding, groups)
    x = keras.layers.BatchNormalization(epsilon=epsilon, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def classifier_top(inputs, features, stage_features, att, paya_options, *, include_top, pooling, classes,
                   classifier_activation, name, abn_logits=None):
    """The end of a builder whose stages may carry PAYA modules: with ``att.paya`` the modules on
    ``stage_features`` and the gated output (:func:`~keras_attn_zoo.models.paya.paya_head`), else
    the plain :func:`head` (PAYA options changed from their defaults are refused); then
    :func:`finish`.

    Args:
        paya_options: the builder's PAYA arguments (``attention_depth``, ``attention_heads``,
            ``reg_weight``, ``gate``, ``auxiliary_weight``).
    """
    if att.paya:
        x, outputs = paya_head(
            features, stage_features, classes, paya_options["attention_depth"], paya_options["attention_heads"],
            paya_options["reg_weight"], paya_options["gate"], classifier_activation, paya_options["auxiliary_weight"],
        )
        return finish(inputs, x, name, paya_outputs=outputs)
    check_unused_paya_arguments(att.mechanism.name, paya_options)
    x = head(features, include_top, pooling, classes, classifier_activation)
    return finish(inputs, x, name, abn_logits)


def finish(inputs, outputs, name, abn_logits=None, paya_outputs=None):
    """The functional model (an ``ABNModel`` when there is an attention branch, a ``PAYAModel``
    given ``paya_outputs``). Builders load no weights: ``keras_attn_zoo.load(name, weights=...)``
    does."""
    if paya_outputs is not None:
        return paya_model(inputs, paya_outputs, name)
    if abn_logits is not None:
        return abn_model(inputs, outputs, abn_logits, name)
    return keras.Model(inputs, outputs, name=name)
