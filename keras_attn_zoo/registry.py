"""The one table of named models: builder + arguments + the paper's reported numbers.

Every fact about a named model (which builder and arguments make it, what the paper reports,
which layer names other code needs) lives in its :class:`ModelSpec` here; ``load``,
``list_models``, ``model_info``, the README table and the parameter-count tests all read it.
"""

import dataclasses
import difflib
import fnmatch
import functools
import inspect
import math
import numbers
import os
import types
import warnings

from keras_attn_zoo.flops import count_macs
from keras_attn_zoo.loading import (
    check_record_model, file_num_classes, inference_facts, load_pretrained, model_file,
)
from keras_attn_zoo.models import (
    densenet_bc, inception_v4, resnet, resnet_cifar, resnet_multitask_abn, resnext_cifar, vgg_bn,
    wide_resnet,
)
from keras_attn_zoo.models.common import ATTENTIONS
from keras_attn_zoo.models.resnet import DEPTHS as RESNET_DEPTHS
from keras_attn_zoo.models.vgg import VGG16_STAGES, VGG19_STAGES
from keras_attn_zoo.weights import is_path, published_tags, resolve, weight_record

PAPERS = {
    "fanet": 'Liu et al., "A Novel Block-wise Attention Method: Focus-and-Association Networks" (FANet)',
    "abn": 'Fukui et al., "Attention Branch Network: Learning of Attention Mechanism for Visual '
    'Explanation" (CVPR 2019)',
    "dat": 'Wang et al., "Reducing Visual Confusion with Discriminative Attention" (arXiv 1811.07484; '
    'ICCV 2019 as "Sharpen Focus") (DAT)',
    "paya": 'Rodriguez et al., "Attend and Rectify: a Gated Attention Mechanism for Fine-Grained '
    'Recovery" (ECCV 2018) and "Pay Attention to the Activations: a Modular Attention Mechanism '
    'for Fine-Grained Image Recognition" (IEEE TMM 2019)',
}

DATASETS = {
    # name: (classes, input shape, description)
    "cifar10": (10, (32, 32, 3), "CIFAR-10"),
    "cifar100": (100, (32, 32, 3), "CIFAR-100"),
    "tiny_imagenet": (200, (64, 64, 3), "Tiny ImageNet (200 classes, 64x64)"),
    "imagenet5": (5, (224, 224, 3), "ImageNet-5 (FANet's 5-class ImageNet subset, 224x224)"),
    "imagenet": (1000, (224, 224, 3), "ImageNet (ILSVRC 2012)"),
    "celeba": (40, (224, 224, 3), "CelebA (40 binary attributes)"),
}

# Class names in label order, for data sets whose names the zoo knows.
CLASS_NAMES = {
    "cifar10": (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ),
}


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """One row of a paper's table: what the paper reports for a model on a data set.

    ``params_m`` is the parameter count as printed (millions, rounded), or None where the paper
    prints none; ``kwargs`` are extra
    builder arguments that the row needs beyond the data set's classes and input shape;
    ``exact`` says whether our count rounds to the printed one (else ``note`` says by how much).
    """

    paper: str
    table: str
    dataset: str
    top1_error: float
    params_m: float | None
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
    # (inner, last): the layers whose gradient attention maps the DAT objective uses
    dat_layers: tuple = ()
    # exact trainable counts of the reference implementation (the authors' code; torchvision for
    # the ImageNet baselines) by number of classes, and
    # how far ours differ on purpose (explained in ``notes``)
    official_params: types.MappingProxyType = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    official_params_delta: int = 0
    # weight tags that users make themselves, with how (e.g. converting the authors' checkpoint)
    weight_sources: types.MappingProxyType = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    class_names: tuple = CLASS_NAMES["cifar10"]

    def build(self, **overrides):
        """Call the builder with this entry's classes, input shape and arguments; an argument
        the builder does not take is refused by name, with close matches."""
        accepted = [key for key in inspect.signature(self.builder).parameters if key not in self.kwargs]
        unknown = [key for key in overrides if key not in accepted and key not in self.kwargs]
        if unknown:
            close = sorted({m for key in unknown for m in difflib.get_close_matches(key, accepted, n=3, cutoff=0.6)})
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(
                f"{self.name} ({self.builder.__name__}) takes no argument {', '.join(map(repr, unknown))}.{hint} "
                f"It takes: {', '.join(accepted)}."
            )
        defaults = {"classes": self.num_classes, "input_shape": self.input_shape}
        return self.builder(**{**defaults, **self.kwargs, **overrides})


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


def _dat_layers(family, kwargs):
    """(inner, last) layers of the DAT objective: the outputs of the network's last two stages
    (DAT Section 3.4: the penultimate block's last conv layer and the last one), post-ReLU."""
    if family in ("resnet_cifar", "resnext_cifar"):
        n = (kwargs["depth"] - 2) // (6 if family == "resnet_cifar" else 9)
        return f"stage2_block{n}_out", f"stage3_block{n}_out"
    if family == "resnet":
        blocks = RESNET_DEPTHS[kwargs["depth"]][1]
        return f"stage3_block{blocks[2]}_out", f"stage4_block{blocks[3]}_out"
    if family == "vgg":  # the last conv (BN-ReLU) of blocks 4 and 5
        convs = [c for _, c in kwargs.get("stages", VGG19_STAGES)]
        return f"stage{len(convs) - 1}_{convs[-2]}_relu", f"stage{len(convs)}_{convs[-1]}_relu"
    if family in ("wrn", "densenet"):  # pre-activation nets: group / dense block 2 after its BN-ReLU
        return ("stage3_block1_1_relu" if family == "wrn" else "transition2_relu"), "head_relu"
    return "stage2_block7_concat", "stage3_block3_concat"  # Inception-v4: last Inception-B and -C


# The DAT paper's numbers (Table 2, CIFAR-100), by the registry name of the architecture.
DAT_ROWS = {
    "resnet110": [PaperResult(
        "dat", "2", "cifar100", 23.89, None, note=(
            "Trained with the DAT objective, A_ch maps (objective='dat'); 23.76% with A_px "
            "(attention='pixel'). The paper prints 1.7M parameters (ours: 1.76M with 100 classes). Its "
            "baseline, 27.22%, is Huang et al.'s number, not a run of the authors' (Table 1: 25.98% "
            "with Grad-CAM maps in the same loss)."
        ),
    )],
}


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
                description=f"{ATTENTIONS[attention].title}{title(kwargs)}",
                paper="fanet",
                results=tuple(FANET_ROWS.get(name, ())) + tuple(DAT_ROWS.get(name, ())),
                param_tolerance=tolerance,
                notes=_FAMILY_NOTES[family],
                gradcam_layer=_gradcam_layer(family, kwargs),
                dat_layers=_dat_layers(family, kwargs),
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


def _abn_row(dataset, error, note):
    return PaperResult("abn", "2", dataset, error, None, types.MappingProxyType({}), note)


_ABN_TEXT = "Table 2 was lost from the paper's text; the number is quoted from its Section 4.2."

_ABN_NOTES = (
    "Attention branch as in the authors' code: a stride-1 copy of the next stage -> BN -> "
    "1x1 conv to K -> BN -> ReLU -> (1x1 conv K -> K -> GAP = logits; 3x3 conv K -> 1 -> BN -> "
    "sigmoid = M); perception on (1 + M) * g (Eq. 2). BN epsilon 1e-5 as in PyTorch. "
)


def _register(name, builder, kwargs, family, description, paper, gradcam_layer, **fields):
    fields.setdefault("dat_layers", _dat_layers(family, kwargs))
    register(ModelSpec(
        name=name, builder=builder, kwargs=types.MappingProxyType(kwargs), family=family,
        description=description, paper=paper, gradcam_layer=gradcam_layer, **fields,
    ))


def _official(counts):
    return types.MappingProxyType(counts)


def _converted(name, tag):
    """How to get the weights the ABN authors published for ``name`` (trained on ``tag``)."""
    return types.MappingProxyType({tag: (
        f"Download the authors' {tag} checkpoint of {name} (model_best.pth.tar, linked from their "
        "repository 'attention_branch_network') and convert it: python "
        f"scripts/convert_abn_pytorch.py model_best.pth.tar --model {name} --tag {tag}"
    )})


# ABN on the CIFAR ResNet: basic blocks below depth 44, bottleneck blocks from 44 on (still
# n = (depth - 2) / 6 blocks per stage: the authors' rule), 1x1-conv projection shortcuts.
_ABN_CIFAR_OFFICIAL = {
    20: {10: 479_150, 100: 501_650},
    56: {10: 1_531_502, 100: 1_588_562},
    110: {10: 2_999_726, 100: 3_056_786},
}
for _depth in (20, 32, 44, 56, 110):
    _block = "basic" if _depth < 44 else "bottleneck"
    _kw = {"depth": _depth, "block": _block, "shortcut": "conv1x1", "bn_epsilon": 1e-5}
    _n = (_depth - 2) // 6
    _register(
        f"abn_resnet{_depth}", resnet_cifar, {**_kw, "attention": "abn"}, "resnet_cifar",
        f"ABN-ResNet-{_depth} (CIFAR, {_block} blocks)", "abn", f"stage3_block{_n}_out",
        official_params=_official(_ABN_CIFAR_OFFICIAL.get(_depth, {})),
        weight_sources=_converted(f"abn_resnet{_depth}", "cifar100") if _depth == 110 else _official({}),
        results=(_abn_row("cifar10", 4.91, _ABN_TEXT),) if _depth == 110 else (),
        notes=_ABN_NOTES + "Branch after stage 2. "
        + ("Bottleneck blocks (64/128/256 outputs) with n = (depth - 2) / 6 blocks per stage, as "
           "in the authors' code, so this 'ResNet-%d' is a bottleneck net; its plain counterpart "
           "is resnet%d_bottleneck." % (_depth, _depth) if _block == "bottleneck" else
           "Its plain counterpart resnet%d has 3x3 projection shortcuts (FANet's); ABN's have 1x1."
           % _depth),
    )
    if _block == "bottleneck":
        _register(
            f"resnet{_depth}_bottleneck", resnet_cifar, {**_kw, "attention": None}, "resnet_cifar",
            f"ResNet-{_depth} (CIFAR, bottleneck blocks as in the ABN code)", "abn",
            f"stage3_block{_n}_out",
            notes="The plain counterpart of abn_resnet%d: bottleneck blocks, n = (depth - 2) / 6 "
            "per stage, 1x1-conv shortcuts, BN epsilon 1e-5." % _depth,
        )

for _width in (10, 4):
    _kw = {"depth": 28, "width": _width, "dropout": 0.3}
    _register(
        f"abn_wrn28_{_width}", wide_resnet, {**_kw, "attention": "abn"}, "wrn",
        f"ABN-WRN-28-{_width} (CIFAR)", "abn", "head_relu",
        official_params=_official({10: 64_349_486, 100: 64_475_666} if _width == 10 else {}),
        weight_sources=_converted("abn_wrn28_10", "cifar100") if _width == 10 else _official({}),
        notes=_ABN_NOTES + "Branch after group 2; dropout 0.3 between a block's convs.",
    )
    _register(
        f"wrn28_{_width}", wide_resnet, {**_kw, "attention": None}, "wrn",
        f"WRN-28-{_width} (CIFAR)", "abn", "head_relu", notes="Dropout 0.3.",
    )

_register(
    "abn_densenet_bc100_12", densenet_bc, {"depth": 100, "growth_rate": 12, "attention": "abn"},
    "densenet", "ABN-DenseNet-BC-100 (k = 12, CIFAR)", "abn", "head_relu",
    results=(_abn_row("cifar10", 4.17, _ABN_TEXT),),
    notes=_ABN_NOTES + "Branch after transition 2 (8x8); the branch's stage copy is dense block 3. "
    "No official parameter count was given; ours is derived from this structure.",
)
_register(
    "densenet_bc100_12", densenet_bc, {"depth": 100, "growth_rate": 12, "attention": None},
    "densenet", "DenseNet-BC-100 (k = 12, CIFAR)", "abn", "head_relu",
    results=(_abn_row("cifar10", 4.51, _ABN_TEXT + " (Huang et al.'s number)"),),
)
for _w in (64, 16):
    _register(
        f"abn_resnext29_8x{_w}d", resnext_cifar,
        {"depth": 29, "cardinality": 8, "base_width": _w, "attention": "abn", "bn_epsilon": 1e-5},
        "resnext_cifar", f"ABN-ResNeXt-29 8x{_w}d (CIFAR)", "abn", "stage3_block3_out",
        official_params=_official({10: 60_686_366, 100: 60_881_666} if _w == 64 else {}),
        official_params_delta=-2048 if _w == 64 else 0,
        weight_sources=_converted("abn_resnext29_8x64d", "cifar100") if _w == 64 else _official({}),
        notes=_ABN_NOTES + "Branch after stage 2. The authors' ResNeXt creates the BN after the "
        "stage copy (1,024 channels, 2,048 parameters) but never calls it: we leave it out, so "
        "our count is the official one minus 2,048 and the function is the same.",
    )

_IMAGENET = {"num_classes": 1000, "input_shape": (224, 224, 3), "class_names": ()}
_IMAGENET_OFFICIAL = {50: 43_584_866, 101: 62_576_994, 152: 78_220_642}
# torchvision's models, whose layout (and checkpoints) the ImageNet baselines follow
_TORCHVISION = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "vgg16_bn": 138_365_992,
}
# torchvision's ImageNet-1K checkpoints of the ResNets, by depth: (the weights' name in
# torchvision.models.ResNet{depth}_Weights, the file at TORCHVISION_URL, the shorter side its
# evaluation resizes to before the 224x224 center crop), newest last. torch.hub names a file
# "<arch>-<first 8 hex digits of its sha256>.pth".
TORCHVISION_URL = "https://download.pytorch.org/models/"
TORCHVISION_RESNETS = {
    18: (("IMAGENET1K_V1", "resnet18-f37072fd.pth", 256),),
    34: (("IMAGENET1K_V1", "resnet34-b627a593.pth", 256),),
    50: (("IMAGENET1K_V1", "resnet50-0676ba61.pth", 256), ("IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 232)),
    101: (("IMAGENET1K_V1", "resnet101-63fe2227.pth", 256), ("IMAGENET1K_V2", "resnet101-cd907fc2.pth", 232)),
    152: (("IMAGENET1K_V1", "resnet152-394f9c45.pth", 256), ("IMAGENET1K_V2", "resnet152-f82ba261.pth", 232)),
}


def _torchvision_source(name, depth, sources=None):
    """``sources`` and how to make the weights "torchvision" of the ImageNet model ``name``:
    its backbone converted from torchvision's ResNet of the same depth."""
    version, file, _ = TORCHVISION_RESNETS[depth][-1]
    how = (
        f"Download torchvision's ImageNet ResNet-{depth} ({TORCHVISION_URL}{file}, that is "
        f"torchvision.models.ResNet{depth}_Weights.{version}.url) and convert it: python "
        f"scripts/convert_torchvision.py {file} --model {name} --tag torchvision (or pass the "
        f"file itself: fine_tune({name!r}, folder, weights='path/to/{file}'))."
    )
    return types.MappingProxyType({**(sources or {}), "torchvision": how})


for _depth in (18, 34, 50, 101, 152):
    _last = f"stage4_block{RESNET_DEPTHS[_depth][1][-1]}_out"
    _register(
        f"abn_resnet{_depth}", resnet, {"depth": _depth, "attention": "abn"}, "resnet",
        f"ABN-ResNet-{_depth} (ImageNet)", "abn", _last, **_IMAGENET,
        official_params=_official({1000: _IMAGENET_OFFICIAL[_depth]} if _depth in _IMAGENET_OFFICIAL else {}),
        weight_sources=_torchvision_source(
            f"abn_resnet{_depth}", _depth,
            _converted(f"abn_resnet{_depth}", "imagenet") if _depth in _IMAGENET_OFFICIAL else {}),
        results=(_abn_row("imagenet", 21.37, _ABN_TEXT),) if _depth == 152 else (),
        notes=_ABN_NOTES + "Branch after stage 3 (14x14 for 224x224 inputs).",
    )
    _register(
        f"resnet{_depth}", resnet, {"depth": _depth, "attention": None}, "resnet",
        f"ResNet-{_depth} (ImageNet)", "abn", _last, **_IMAGENET,
        official_params=_official({1000: _TORCHVISION[f"resnet{_depth}"]}),
        weight_sources=_torchvision_source(f"resnet{_depth}", _depth),
        results=(_abn_row("imagenet", 22.19, _ABN_TEXT + " (re-implementation)"),) if _depth == 152 else (),
    )
_register(
    "se_resnet152", resnet, {"depth": 152, "attention": "se"}, "resnet",
    "SE-ResNet-152 (ImageNet)", "abn", "stage4_block3_out", **_IMAGENET,
    weight_sources=_torchvision_source("se_resnet152", 152),
    results=(_abn_row("imagenet", 21.90, _ABN_TEXT),), notes="SE r = 16 on every residual branch.",
)
_register(
    "abn_se_resnet152", resnet, {"depth": 152, "attention": "abn_se"}, "resnet",
    "ABN-SE-ResNet-152 (ImageNet)", "abn", "stage4_block3_out", **_IMAGENET,
    weight_sources=_torchvision_source("abn_se_resnet152", 152),
    results=(_abn_row("imagenet", 20.77, _ABN_TEXT + " The paper's best ImageNet model."),),
    notes=_ABN_NOTES + "SE (r = 16) in every block, the attention branch's stage copy included.",
)
_VGG16 = {"stages": VGG16_STAGES, "classifier": "imagenet", "conv_bias": True, "bn_epsilon": 1e-5}
_register(
    "vgg16_bn", vgg_bn, {**_VGG16, "attention": None}, "vgg", "VGG-16-BN (ImageNet, 3 FC layers)",
    "abn", "stage5_3_relu", **_IMAGENET, official_params=_official({1000: _TORCHVISION["vgg16_bn"]}),
    notes="torchvision's vgg16_bn layout.",
)
_register(
    "abn_vgg16_bn", vgg_bn, {**_VGG16, "attention": "abn"}, "vgg", "ABN-VGG-16-BN (ImageNet)",
    "abn", "stage5_3_relu", **_IMAGENET,
    notes=_ABN_NOTES + "Branch after block 4: the stage copy is block 5's three convolutions (no "
    "pool); the attention branch has convolutions only (CAM-style), the perception branch is "
    "block 5 and the FC layers. No official parameter count was given; ours is derived.",
)
_register(
    "abn_resnet101_multitask", resnet_multitask_abn, {"depth": 101}, "resnet",
    "Multi-task ABN-ResNet-101 (40 binary attributes, CelebA)", "abn", "stage4_block3_out",
    num_classes=40, input_shape=(224, 224, 3), class_names=(), dat_layers=(),  # not single-label
    notes="Attention branch: stride-1 copy of stage 4 -> BN -> 1x1 conv to T maps (no sigmoid; "
    "GAP = per-task logits). Each task's perception pass runs the shared stage 4 on "
    "(1 + M_t) * g, batched as batch * T rows; one sigmoid unit per task. Binary "
    "cross-entropy on both branches. num_classes is the number of tasks.",
)


# PAYA (Attend-and-Rectify): the authors' code (prlz77/attend-and-rectify) is the reference; the
# papers' full text was not available, so the results are the authors' training logs (best
# epoch's test error, as the logs' folder names state it; the final epoch's in the note).
def _paya_row(dataset, error, note, **kwargs):
    return PaperResult("paya", "log", dataset, error, None, types.MappingProxyType(kwargs), note)


_PAYA_LOG = "The authors' released training log (best epoch's test error; the papers' tables were not available). "

_PAYA_NOTES = (
    "Follows the authors' code where it and the paper differ: the output is the global-gate-"
    "weighted sum of the log-softmax of every module's logits and of the network's own (paper: "
    "of the outputs), trained with NLL on it, not renormalised (so the loss is the gated sum of "
    "the outputs' cross-entropies; predict gives its softmax); the global gates come from the "
    "pooled final features (Dense without bias -> BN -> tanh -> softmax), not the last feature "
    "map; the head gates are softmax over heads of tanh; the regulariser is the mean of the "
    "squared off-diagonal Gram entries of the 2x2-average-pooled masks (zeroed diagonal counted), "
    "weight 1e-3 averaged over modules, in training only. Modules, gate and classifier use "
    "untruncated Kaiming-normal init as the code; the backbone keeps the zoo's he_normal. "
)

_PAYA_WRN_NOTES = _PAYA_NOTES + (
    "Modules on groups 1-3 after the next block's pre-activation (head_relu for group 3); stem "
    "BN-ReLU as in the attention code. The 1x1 projection shortcut reads the pre-activated input "
    "(the zoo's and Zagoruyko's WRN); the released code feeds it the raw input (same count). "
    "Dropout, where set, is channel-wise (Dropout2d) as in the code."
)

_register(
    "paya_wrn28_10", wide_resnet, {"depth": 28, "width": 10, "attention": "paya"}, "wrn",
    "PAYA-WRN-28-10 (WARN, CIFAR; 3 modules x 4 heads)", "paya", "head_relu",
    official_params=_official({10: 36_965_634, 100: 40_652_124}),
    results=(_paya_row("cifar10", 3.45, _PAYA_LOG + "AD 3, AW 4, reg 1e-3; final epoch 3.68%."),),
    notes=_PAYA_WRN_NOTES,
)
_register(
    "paya_wrn40_10", wide_resnet,
    {"depth": 40, "width": 10, "attention": "paya", "dropout": 0.3, "spatial_dropout": True}, "wrn",
    "PAYA-WRN-40-10 (WARN, CIFAR; 3 modules x 4 heads, dropout 0.3)", "paya", "head_relu",
    official_params=_official({10: 56_328_194, 100: 60_014_684}),
    results=(
        _paya_row("cifar10", 3.14, _PAYA_LOG + "AD 3, AW 4, reg 1e-3, dropout 0.3; final epoch 3.33%."),
        _paya_row("cifar10", 3.48, _PAYA_LOG + "Without dropout; final epoch 3.66% (the log's "
                  "folder name says 3.46).", dropout=0.0),
        _paya_row("cifar100", 17.82, _PAYA_LOG + "Without dropout, softmax gates, reg 0 (the "
                  "log's config; its folder says aw=2, its config AW 4); final epoch 18.96%.",
                  dropout=0.0, reg_weight=0.0),
    ),
    notes=_PAYA_WRN_NOTES,
)
_register(
    "paya_wrn16_4", wide_resnet, {"depth": 16, "width": 4, "attention": "paya"}, "wrn",
    "PAYA-WRN-16-4 (CIFAR; 3 modules x 4 heads)", "paya", "head_relu",
    notes=_PAYA_WRN_NOTES + " A small variant of ours; no published result.",
)
_register(
    "wrn40_10", wide_resnet, {"depth": 40, "width": 10, "attention": None}, "wrn",
    "WRN-40-10 (CIFAR)", "paya", "head_relu",
    official_params=_official({10: 55_841_754, 100: 55_899_444}),
    results=(
        _paya_row("cifar10", 3.98, "The PAYA authors' baseline log (best epoch); final epoch 4.04%."),
        _paya_row("cifar100", 18.86, "The PAYA authors' baseline log (best epoch); final epoch 19.09%."),
    ),
    notes="The plain counterpart of paya_wrn40_10 (no stem BN, no dropout), as the PAYA "
    "authors' plain WRN.",
)
_register(
    "wrn16_4", wide_resnet, {"depth": 16, "width": 4, "attention": None}, "wrn",
    "WRN-16-4 (CIFAR)", "paya", "head_relu", notes="The plain counterpart of paya_wrn16_4.",
)
for _depth in (20, 32, 44, 56, 110):
    _register(
        f"paya_resnet{_depth}", resnet_cifar, {"depth": _depth, "attention": "paya"}, "resnet_cifar",
        f"PAYA-ResNet-{_depth} (CIFAR; 3 modules x 4 heads)", "paya",
        f"stage3_block{(_depth - 2) // 6}_out",
        notes=_PAYA_NOTES + "Ours (no published CIFAR-ResNet result): modules on the outputs of "
        "stages 1-3 (stage3's is the tensor the classifier pools); the backbone is resnet%d's "
        "(FANet's 3x3 projection shortcuts), so the two compare directly." % _depth,
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
            published weights (e.g. "cifar10"). Defaults to None. The file must hold exactly
            the model's variables (or, for another head, exactly those of the model it was
            saved from): anything unused, missing or of another shape is an error.
        num_classes: classifier size, any integer (NumPy's too). Defaults to the weights' (their
            manifest row's, the training record's beside a trained file, else the file's own
            classifier's), and to the model's (10 for the CIFAR models) without weights. 1 only
            with ``classifier_activation="sigmoid"`` (one binary output; not for ABN or PAYA
            models): a softmax over 1 class always says 1.0. Asked for with weights of another
            size (or ``include_top=False``), everything but the classifier is loaded and a
            warning names what was skipped.
        input_shape: (H, W, C). Defaults to the weights' recorded one, else the model's (32,
            32, 3 for the CIFAR models).
        **kwargs: further builder arguments (``include_top``, ``pooling``,
            ``classifier_activation``, ``se_ratio``...).

    Returns:
        A ``keras.Model`` whose ``predict`` gives class scores.

    Example:
    >>> model = load("fa_resnet20")
    >>> model.output_shape
    (None, 10)
    """
    return load_with_report(name, weights, num_classes, input_shape, **kwargs)[0]


def load_with_report(name, weights=None, num_classes=None, input_shape=None, new_head=False, **kwargs):
    """:func:`load`, also returning the names of the layers left freshly initialised.

    Args:
        new_head: give the model new class-sized layers (classifier, ABN's class-sized
            convolutions) even when ``num_classes`` equals the weights'. Defaults to False.

    Returns:
        ``(model, new_layers)``: ``new_layers`` is empty when the weights loaded entirely (or
        none were asked for). It also names the layers that the weights' record calls fresh
        (``WeightRecord.fresh_layers``: a converted checkpoint had nothing for them, e.g. the
        attention branch of an ABN model converted from torchvision's ResNet); loading such
        weights warns that those layers are untrained.
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
    if num_classes is not None:
        if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
        num_classes = int(num_classes)  # np.int64(10) too
    how_to = spec.weight_sources.get(weights) if isinstance(weights, str) else None
    path = resolve(spec.name, weights, how_to)
    record = weight_record(spec.name, weights) if path is not None else None
    check_record_model(spec.name, weights, record)
    classes = None
    if path is not None:  # the weights' own classes: their record's, else their classifier's
        classes = record.num_classes if record is not None and record.num_classes else file_num_classes(path)
    if num_classes is not None:
        kwargs["classes"] = num_classes
    elif classes is not None:
        kwargs["classes"] = classes
    if input_shape is not None:
        kwargs["input_shape"] = input_shape
    elif record is not None and record.input_shape:
        kwargs["input_shape"] = tuple(record.input_shape)
    model = spec.build(name=spec.name, **kwargs)
    if path is None:
        return model, []
    new_layers = load_pretrained(model, spec, path, classes, kwargs, new_head=new_head)
    names = {layer.name for layer in model.layers}
    fresh = [n for n in (record.fresh_layers if record else ()) if n in names and n not in new_layers]
    if fresh:
        warnings.warn(
            f"{len(fresh)} layers of {spec.name} hold untrained initial values in the weights "
            f"{weights!r} (the converted checkpoint had nothing for them): {', '.join(fresh)}. "
            "Fine-tune the model (keras_attn_zoo.fine_tune, keras-attn-zoo finetune) before "
            "using its outputs.", stacklevel=3,
        )
    return model, new_layers + fresh


def load_for_inference(name_or_file, weights=None, *, class_names=None, normalization=None, **kwargs):
    """A model for ``predict``, ``explain``, ``export`` and ``evaluate``, with the class names and
    normalisation its weights recorded: the one loading path of those commands.

    A registered name is loaded by :func:`load` (with the weights' own classes and input shape);
    a ``.keras`` file (``keras-attn-zoo finetune``'s) with the record inside it. The record then
    decides (``loading.inference_facts``): weights trained on five classes give a five-class
    model with their five names and their normalisation, and weights without a recorded
    normalisation are refused unless ``normalization`` is given.

    Args:
        name_or_file: a registered name or a ``.keras`` file.
        weights: for a registered name: None (random initialisation), a published tag or a
            ``.weights.h5`` file. Defaults to None.
        class_names: class names in label order, replacing the record's. Defaults to None.
        normalization: a :class:`~keras_attn_zoo.normalization.ChannelStats`, for weights that
            record none. Defaults to None.
        **kwargs: builder arguments for a registered name (``classifier_activation``...).

    Returns:
        A :class:`~keras_attn_zoo.loading.LoadedModel`.

    Example:
    >>> loaded = load_for_inference("fa_resnet20", weights="cifar10")
    >>> loaded.class_names[:2], loaded.normalization.mean
    (('airplane', 'automobile'), (0.49125, 0.48209, 0.446521))
    """
    if str(name_or_file).endswith(".keras"):
        if weights is not None:
            raise ValueError("A .keras file holds its own weights; --weights (weights=) is for registered names.")
        if kwargs:
            raise ValueError(f"Builder arguments ({', '.join(sorted(kwargs))}) are for registered names, "
                             "not for a .keras file.")
        model, record = model_file(name_or_file)
        return inference_facts(model, record, str(name_or_file), class_names, normalization)
    spec = get_spec(name_or_file)
    model = load(spec.name, weights=weights, **kwargs)
    if weights is None:
        return inference_facts(model, None, None, class_names, normalization, spec.class_names)
    source = os.fspath(weights) if is_path(weights) else f"the weights {weights!r} of {spec.name}"
    return inference_facts(model, weight_record(spec.name, weights), source, class_names, normalization)


@functools.lru_cache(maxsize=None)
def _default_counts(name):
    model = get_spec(name).build(name=name)
    return count_trainable(model), count_macs(model)


def _default_param_count(name):
    return _default_counts(name)[0]


def _default_mac_count(name):
    return _default_counts(name)[1]


def model_info(name):
    """What the zoo knows about a model: paper, architecture, our and the paper's numbers.

    ``params`` is our trainable parameter count in the default configuration (computed by
    building the model), ``macs`` the multiply-adds of one forward pass for one image of the
    default input shape (``keras_attn_zoo.flops.count_macs``: convolutions, dense layers and
    the attention layers' own products); ``paper_results`` lists each row of the paper's tables for this
    architecture with its reported top-1 error and parameter count.
    """
    spec = get_spec(name)
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
        "macs": _default_mac_count(spec.name),
        "paper_results": [
            {
                "table": r.table,
                "dataset": r.dataset,
                "top1_error": r.top1_error,
                "params_m": r.params_m,
                "paper": PAPERS[r.paper],
                "num_classes": r.num_classes,
                "input_shape": r.input_shape,
                **({"builder_kwargs": dict(r.kwargs)} if r.kwargs else {}),
                **({"note": r.note} if r.note else {}),
            }
            for r in spec.results
        ],
        "official_params": {
            k: v + spec.official_params_delta for k, v in spec.official_params.items()
        },
        "notes": spec.notes,
        "classifier": spec.classifier,
        "gradcam_layer": spec.gradcam_layer,
        "dat_layers": list(spec.dat_layers),
        "weights": published_tags(spec.name),
    }
