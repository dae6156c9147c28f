"""The one table of named models: builder + arguments + the paper's reported numbers.

Every fact about a named model (which builder and arguments make it, what the paper reports,
which layer names other code needs) lives in its :class:`ModelSpec` here; ``load``,
``list_models``, ``model_info``, the README table and the parameter-count tests all read it.
"""

import dataclasses
import difflib
import fnmatch
import functools
import math
import types

from keras_attn_zoo.models import inception_v4, resnet_cifar, resnext_cifar, vgg_bn

PAPERS = {
    "fanet": 'Liu et al., "A Novel Block-wise Attention Method: Focus-and-Association Networks" (FANet)',
}

DATASETS = {
    # name: (classes, input shape, description)
    "cifar10": (10, (32, 32, 3), "CIFAR-10"),
    "cifar100": (100, (32, 32, 3), "CIFAR-100"),
    "tiny_imagenet": (200, (64, 64, 3), "Tiny ImageNet (200 classes, 64x64)"),
    "imagenet5": (5, (224, 224, 3), "ImageNet-5 (FANet's 5-class ImageNet subset, 224x224)"),
}


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """One row of a paper's table: what the paper reports for a model on a data set.

    ``params_m`` is the parameter count as printed (millions, rounded); ``kwargs`` are extra
    builder arguments that the row needs beyond the data set's classes and input shape;
    ``exact`` says whether our count rounds to the printed one (else ``note`` says by how much).
    """

    paper: str
    table: str
    dataset: str
    top1_error: float
    params_m: float
    kwargs: types.MappingProxyType = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    note: str = ""
    exact: bool = True

    @property
    def num_classes(self):
        return DATASETS[self.dataset][0]

    @property
    def input_shape(self):
        return DATASETS[self.dataset][1]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what is known about it."""

    name: str
    builder: object
    kwargs: types.MappingProxyType
    family: str
    description: str
    paper: str
    num_classes: int = 10
    input_shape: tuple = (32, 32, 3)
    results: tuple = ()
    param_tolerance: float = 0.01
    notes: str = ""
    classifier: str = "predictions"
    gradcam_layer: str = ""

    def build(self, **overrides):
        return self.builder(**{**self.kwargs, **overrides})


_REGISTRY = {}


def register(spec):
    """Add a spec to the registry; a duplicate name is an error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"Model name {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def _row(table, dataset, error, params_m, note="", exact=True, **kwargs):
    return PaperResult(
        "fanet", table, dataset, error, params_m, types.MappingProxyType(kwargs), note, exact
    )


# FANet Tables I-VI: (table, data set, top-1 error %, #params in M) per registry name.
FANET_ROWS = {
    "resnet20": [_row("I", "cifar10", 7.70, 0.293)],
    "se_resnet20": [_row("I", "cifar10", 7.25, 0.301)],
    "fa_resnet20": [_row("I", "cifar10", 7.32, 0.297)],
    "resnet32": [_row("I", "cifar10", 7.05, 0.487)],
    "se_resnet32": [_row("I", "cifar10", 6.50, 0.495)],
    "fa_resnet32": [_row("I", "cifar10", 6.51, 0.495)],
    "resnet44": [_row("I", "cifar10", 6.43, 0.682)],
    "se_resnet44": [_row("I", "cifar10", 6.33, 0.692)],
    "fa_resnet44": [_row("I", "cifar10", 6.14, 0.693)],
    "resnet56": [
        _row("I", "cifar10", 6.31, 0.876), _row("II", "cifar100", 29.16, 0.882),
        _row("III", "tiny_imagenet", 45.44, 0.889), _row("VI", "imagenet5", 10.62, 0.876),
    ],
    "se_resnet56": [
        _row("I", "cifar10", 6.10, 0.889), _row("II", "cifar100", 27.93, 0.895),
        _row("III", "tiny_imagenet", 44.49, 0.902), _row("VI", "imagenet5", 9.23, 0.889),
    ],
    "fa_resnet56": [
        _row("I", "cifar10", 5.86, 0.892), _row("II", "cifar100", 28.01, 0.898),
        _row("III", "tiny_imagenet", 44.64, 0.904), _row("VI", "imagenet5", 10.31, 0.892),
    ],
    "fa_se_resnet56": [
        _row("IV", "tiny_imagenet", 44.75, 0.930,
             "Table IV's count is reproduced with SE r = 4 (r = 8 gives 0.918M).", se_ratio=4),
        _row("VI", "imagenet5", 9.08, 0.905),
    ],
    "resnet110": [_row("I", "cifar10", 5.97, 1.751)],
    "se_resnet110": [
        _row("I", "cifar10", 5.61, 1.778), _row("IV", "tiny_imagenet", 43.96, 1.790),
        _row("V", "cifar100", 26.50, 1.784),
    ],
    "fa_resnet110": [_row("I", "cifar10", 5.57, 1.802)],
    "fa_se_resnet110": [_row("IV", "tiny_imagenet", 43.90, 1.840), _row("V", "cifar100", 25.92, 1.834)],
    "vgg19_bn": [
        _row("I", "cifar10", 7.34, 20.03, "Ours: 20,035,018 (+0.03%).", exact=False),
        _row("II", "cifar100", 28.58, 20.08),
        _row("III", "tiny_imagenet", 55.30, 20.13),
    ],
    "se_vgg19_bn": [
        _row("I", "cifar10", 6.57, 20.34), _row("II", "cifar100", 27.34, 20.39),
        _row("III", "tiny_imagenet", 39.99, 20.28,
             "Built with SE r = 8, as Table III's count implies (r = 4 gives 20.44M); "
             "ours: 20,286,720 (+0.03%).", exact=False, se_ratio=8),
    ],
    "fa_vgg19_bn": [
        _row("I", "cifar10", 6.45, 20.56), _row("II", "cifar100", 26.61, 20.60),
        _row("III", "tiny_imagenet", 41.81, 20.65),
    ],
    "fa_se_vgg19_bn": [_row("V", "cifar100", 26.39, 20.91)],
    "inception_v4_small": [
        _row("I", "cifar10", 17.9, 36.84, "Ours: 36,834,858 (-0.01%).", exact=False),
        _row("II", "cifar100", 61.56, 36.97),
        _row("III", "tiny_imagenet", 93.72, 37.13),
    ],
    "se_inception_v4_small": [
        _row("I", "cifar10", 12.7, 40.60), _row("II", "cifar100", 44.38, 40.74),
        _row("III", "tiny_imagenet", 54.73, 40.90, "Ours: 40,893,800 (-0.02%).", exact=False),
    ],
    "fa_inception_v4_small": [
        _row("I", "cifar10", 12.3, 40.56), _row("II", "cifar100", 38.20, 40.70),
        _row("III", "tiny_imagenet", 51.69, 40.85),
    ],
    "fa_se_inception_v4_small": [_row("IV", "tiny_imagenet", 48.29, 44.62)],
    "resnext29_8x16d": [
        _row("I", "cifar10", 5.93, 5.647), _row("II", "cifar100", 22.92, 5.739),
        _row("III", "tiny_imagenet", 36.54, 5.841),
    ],
    "se_resnext29_8x16d": [
        _row("I", "cifar10", 5.70, 6.685), _row("II", "cifar100", 20.80, 6.777),
        _row("III", "tiny_imagenet", 35.04, 6.880),
    ],
    "fa_resnext29_8x16d": [
        _row("I", "cifar10", 5.37, 6.665), _row("II", "cifar100", 22.47, 6.757),
        _row("III", "tiny_imagenet", 35.60, 6.860),
    ],
}

_ATTENTION_WORDS = {None: "", "se": "SE-", "fa": "FA-", "fa_se": "FA-SE-"}

_FAMILY_NOTES = {
    "resnet_cifar": (
        "Shortcuts that change shape are 3x3 stride-2 conv + BN (reproduces the paper's "
        "baselines exactly). Stage-level FA reads the stage input projected by its first "
        "block's shortcut, which adds no parameters. SE r = 4 for ResNet-20, 8 deeper."
    ),
    "vgg": (
        "No conv biases (BN follows each conv). FA per block (convs + pool) with FA's own "
        "1x1 stride-2 projection; SE r = 4. Two printed counts differ from ours in the last "
        "digit (see the rows' notes); all others are exact."
    ),
    "resnext_cifar": (
        "Stage-level FA reads the stage input projected by its first block's shortcut; SE r = 8."
    ),
    "inception_v4": (
        "Small-image Inception-v4: zero-pad to 96x96, same padding in the reductions, 1x5/5x1 "
        "in Inception-B and (to match the paper's counts) Reduction-B; SE r = 8. Two printed "
        "counts differ from ours in the last digit (see the rows' notes); all others are exact."
    ),
}


def _gradcam_layer(family, kwargs):
    if family == "resnet_cifar":
        return f"stage3_block{(kwargs['depth'] - 2) // 6}_out"
    if family == "resnext_cifar":
        return f"stage3_block{(kwargs['depth'] - 2) // 9}_out"
    if family == "vgg":
        return "stage5_4_relu"
    return "stage3_block3_concat"


def _register_fanet_family(family, builder, base_name, title, variants, tolerance):
    for attention in (None, "se", "fa", "fa_se"):
        for suffix, kwargs in variants:
            name = f"{attention + '_' if attention else ''}{base_name}{suffix}"
            kwargs = {**kwargs, "attention": attention}
            register(ModelSpec(
                name=name,
                builder=builder,
                kwargs=types.MappingProxyType(kwargs),
                family=family,
                description=f"{_ATTENTION_WORDS[attention]}{title(kwargs)}",
                paper="fanet",
                results=tuple(FANET_ROWS.get(name, ())),
                param_tolerance=tolerance,
                notes=_FAMILY_NOTES[family],
                gradcam_layer=_gradcam_layer(family, kwargs),
            ))


_register_fanet_family(
    "resnet_cifar", resnet_cifar, "resnet", lambda k: f"ResNet-{k['depth']} (CIFAR)",
    [(str(d), {"depth": d}) for d in (20, 32, 44, 56, 110)], 0.01,
)
_register_fanet_family(
    "vgg", vgg_bn, "vgg19_bn", lambda k: "VGG-19-BN, one FC classifier", [("", {})], 0.02,
)
_register_fanet_family(
    "resnext_cifar", resnext_cifar, "resnext29_",
    lambda k: f"ResNeXt-29 {k['cardinality']}x{k['base_width']}d (CIFAR)",
    [(f"8x{w}d", {"depth": 29, "cardinality": 8, "base_width": w}) for w in (16, 64)], 0.02,
)
_register_fanet_family(
    "inception_v4", inception_v4, "inception_v4_small",
    lambda k: "Inception-v4, small-image version", [("", {"small_images": True})], 0.02,
)


def get_spec(name):
    """The :class:`ModelSpec` of a registered name; an unknown name suggests close matches."""
    if not isinstance(name, str):
        raise TypeError(f"A model name is a string, got {type(name).__name__}.")
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} `keras_attn_zoo.list_models()` lists all "
            f"{len(_REGISTRY)} names."
        )
    return _REGISTRY[key]


def list_models(pattern=None, pretrained=False):
    """Sorted registered names, optionally filtered by a shell-style ``pattern`` ("fa_*").

    With ``pretrained=True`` only names that have published weights are listed.
    """
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern.lower())]
    if pretrained:
        from keras_attn_zoo.weights import published_tags

        names = [n for n in names if published_tags(n)]
    return names


def count_trainable(model):
    """Number of trainable parameters, the count the papers' tables use."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def load(name, weights=None, num_classes=None, input_shape=None, **kwargs):
    """Build a registered model, optionally with weights.

    Args:
        name: a registered name (``list_models()``), e.g. "fa_resnet56".
        weights: None (random initialisation), the path of a ``.weights.h5`` file, or the tag of
            published weights (e.g. "cifar10"). Defaults to None.
        num_classes: classifier size. Defaults to the model's (10 for the CIFAR models). With
            weights of another size (or ``include_top=False``), everything but the classifier
            is loaded and a warning names what was skipped.
        input_shape: (H, W, C). Defaults to the model's (32, 32, 3 for the CIFAR models).
        **kwargs: further builder arguments (``include_top``, ``pooling``,
            ``classifier_activation``, ``se_ratio``...).

    Returns:
        A ``keras.Model`` whose ``predict`` gives class scores.

    Example:
    >>> model = load("fa_resnet20")
    >>> model.output_shape
    (None, 10)
    """
    spec = get_spec(name)
    fixed = set(spec.kwargs) & set(kwargs)
    if fixed:
        raise ValueError(
            f"{spec.name} fixes {sorted(fixed)}: load the registered name of the variant you "
            "want instead (see list_models()), or call the family builder "
            f"{spec.builder.__name__}() directly."
        )
    if "classes" in kwargs:
        raise ValueError("Use num_classes=, not classes=, with load().")
    if num_classes is not None and (
        not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    from keras_attn_zoo.weights import resolve

    path = resolve(spec.name, weights)
    model = spec.build(
        classes=num_classes or spec.num_classes,
        input_shape=spec.input_shape if input_shape is None else input_shape,
        name=spec.name,
        **kwargs,
    )
    if path is not None:
        from keras_attn_zoo.weights import load_pretrained

        load_pretrained(model, spec, path, weights, kwargs)
    return model


@functools.lru_cache(maxsize=None)
def _default_param_count(name):
    return count_trainable(get_spec(name).build(name=name))


def model_info(name):
    """What the zoo knows about a model: paper, architecture, our and the paper's numbers.

    ``params`` is our trainable parameter count in the default configuration (computed by
    building the model); ``paper_results`` lists each row of the paper's tables for this
    architecture with its reported top-1 error and parameter count.
    """
    spec = get_spec(name)
    from keras_attn_zoo.weights import published_tags

    return {
        "name": spec.name,
        "description": spec.description,
        "family": spec.family,
        "paper": PAPERS[spec.paper],
        "builder": f"{spec.builder.__module__}.{spec.builder.__name__}",
        "builder_kwargs": dict(spec.kwargs),
        "num_classes": spec.num_classes,
        "input_shape": spec.input_shape,
        "params": _default_param_count(spec.name),
        "paper_results": [
            {
                "table": r.table,
                "dataset": r.dataset,
                "top1_error": r.top1_error,
                "params_m": r.params_m,
                "num_classes": r.num_classes,
                "input_shape": r.input_shape,
                **({"builder_kwargs": dict(r.kwargs)} if r.kwargs else {}),
                **({"note": r.note} if r.note else {}),
            }
            for r in spec.results
        ],
        "notes": spec.notes,
        "classifier": spec.classifier,
        "gradcam_layer": spec.gradcam_layer,
        "weights": published_tags(spec.name),
    }
