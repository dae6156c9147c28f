"""Convert torchvision's ImageNet ResNet checkpoints into this zoo's ImageNet ResNets.

torchvision publishes ``resnet18``...``resnet152`` state dicts (``resnet50-11ad3fa6.pth``...:
``registry.TORCHVISION_RESNETS`` lists them with their URLs). The zoo's ImageNet ResNets follow
torchvision's layout (stride in the 3x3 convolution, 1x1-conv + BN projection shortcuts,
symmetric padding), so :func:`convert_torchvision_checkpoint` maps every tensor by name
(``layer3.0.conv1.weight`` -> ``stage3_block1_1_conv``: the names the ABN authors' converter
uses, their code being torchvision's) and the Keras model computes what torchvision's computes:

- a plain model (``resnet50``) gets every weight, its classifier included;
- an attention model (``abn_resnet50``, ``se_resnet152``, ``abn_se_resnet152``) gets its
  backbone; the layers torchvision has no counterpart for (the attention branch, SE layers)
  keep their fresh initialisation, are listed in :attr:`Conversion.fresh_layers` and in the
  record written beside the file (``fresh_layers``), and fine-tuning trains them as new layers.

timm's SE-ResNets (``seresnet50``, ``seresnet152``: ``layer1.0.se.fc1`` / ``se.fc2``, 1x1
convolutions with bias after the last BN of each residual branch, reduction 16) are the zoo's
SE layout too, so their SE weights convert into ``stage{s}_block{b}_se``; timm's plain
``resnet*`` checkpoints have torchvision's names. timm's ResNet-D variants (``seresnet152d``:
a three-convolution stem and average-pooling shortcuts) and its ``legacy_seresnet*`` (Caffe's
SENet: the stride in the first 1x1 convolution) compute other functions and are refused.

The weights are written with a record (``x.weights.h5`` -> ``x.json``, the training record's
format: ``weights.WeightRecord``) holding torchvision's ImageNet normalisation, so predict,
explain, export and fine-tuning normalise inputs as torchvision did. PyTorch files are read
with ``torch.load(weights_only=True)`` (:func:`~keras_attn_zoo.convert.abn_pytorch.load_state_dict`):
a crafted file cannot run code.
"""

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from keras_attn_zoo.convert.abn_pytorch import _keras_values, _resnet_rules, load_state_dict
from keras_attn_zoo.data import IMAGENET_STATS  # torchvision's (ResNet50_Weights.IMAGENET1K_V2.transforms())
from keras_attn_zoo.models.common import ATTENTIONS
from keras_attn_zoo.models.resnet import DEPTHS, resnet
from keras_attn_zoo.registry import TORCHVISION_RESNETS, TORCHVISION_URL, get_spec, list_models
from keras_attn_zoo.weights import install_local, save_with_record, sha256

# the files a checkpoint is read from (``load_state_dict``)
CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt", ".tar", ".npz", ".safetensors")

# our layer name -> torchvision's module name: the ABN authors' ResNet names without their
# attention branch, plus timm's SE modules
RULES = [rule for rule in _resnet_rules(4) if not rule[0].startswith("abn_")] + [
    (r"stage(\d+)_block(\d+)_se", lambda m: f"layer{m[1]}.{int(m[2]) - 1}.se"),
]
# keys of checkpoints in layouts that are not the zoo's: what they are
OTHER_LAYOUTS = (
    ("att_layer4.", "the ABN authors' ABN-ResNet: convert it with scripts/convert_abn_pytorch.py"),
    ("conv1.0.weight", "a ResNet-D (timm's *d models): its stem is three 3x3 convolutions and its "
                       "shortcuts average-pool, a layout the zoo's ResNets do not have"),
    ("layer0.conv1.weight", "Caffe's SENet (timm's legacy_seresnet*, pretrainedmodels): its stride is "
                            "in the first 1x1 convolution, so it computes another function than the zoo's"),
)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What a torchvision-layout ResNet checkpoint is: read from its key names and shapes."""

    depth: int
    se: bool
    classes: int

    @property
    def title(self):
        return f"{'SE-' if self.se else ''}ResNet-{self.depth}"


@dataclasses.dataclass
class Conversion:
    """What :func:`convert_torchvision_checkpoint` made.

    Attributes:
        model: the Keras model with the converted weights.
        architecture: what the checkpoint is.
        fresh_layers: the model's layers with weights that the checkpoint has nothing for,
            left freshly initialised (empty for a plain ResNet).
        record: the record written beside the weights (``weights.WeightRecord`` fields).
        path: the ``.weights.h5`` file written, or None.
    """

    model: object
    architecture: Architecture
    fresh_layers: list
    record: dict
    path: Path | None = None


def is_checkpoint(weights):
    """Whether a ``weights`` argument is a PyTorch (or .npz / .safetensors) checkpoint file."""
    return isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(CHECKPOINT_SUFFIXES)


def torchvision_key(layer_name):
    """torchvision's module name for one of our ImageNet ResNet layers, or None for a layer it
    does not have (the attention branch)."""
    for pattern, make in RULES:
        match = re.fullmatch(pattern, layer_name)
        if match:
            return make(match)
    return None


def checkpoint_architecture(state):
    """The :class:`Architecture` of a torchvision-layout ResNet state dict.

    Raises:
        ValueError: for a checkpoint that is not one of the ResNets the zoo builds, saying what
            it looks like instead.
    """
    for key, what in OTHER_LAYOUTS:
        if any(k.startswith(key) for k in state):
            raise ValueError(f"The checkpoint is {what}.")
    needed = ("conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "fc.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        shown = ", ".join(sorted(state)[:5])
        raise ValueError(
            f"The checkpoint is not a torchvision ResNet: it has no {', '.join(repr(k) for k in missing)} "
            f"(its first keys: {shown or 'none'})."
        )
    counts = tuple(
        len({int(m[1]) for m in (re.match(rf"layer{s}\.(\d+)\.conv1\.weight$", k) for k in state) if m})
        for s in (1, 2, 3, 4)
    )
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    depth = next((d for d, (b, c) in DEPTHS.items() if (b, c) == (block, counts)), None)
    if depth is None:
        known = ", ".join(f"ResNet-{d} {b} {c}" for d, (b, c) in DEPTHS.items())
        raise ValueError(
            f"The checkpoint is a ResNet of {block} blocks with {counts} blocks per stage, which is "
            f"none of the zoo's ImageNet ResNets ({known})."
        )
    return Architecture(depth, any(".se.fc1." in k for k in state), int(state["fc.weight"].shape[0]))


def _candidates(architecture):
    """The registry names a checkpoint of ``architecture`` converts into."""
    names = []
    for name in list_models():
        spec = get_spec(name)
        if spec.builder is resnet and spec.kwargs["depth"] == architecture.depth:
            if ATTENTIONS[spec.kwargs["attention"]].se or not architecture.se:
                names.append(name)
    return names


def target_spec(model_name, architecture):
    """The registry entry a checkpoint of ``architecture`` converts into: ``model_name``'s,
    checked (its depth, its SE layers), or by default the plain ResNet of that depth.

    Raises:
        ValueError: naming the models the checkpoint does convert into.
    """
    candidates = _candidates(architecture)
    if model_name is None:
        plain = [n for n in candidates if not ATTENTIONS[get_spec(n).kwargs["attention"]].abn]
        if not plain:
            raise ValueError(
                f"The checkpoint is a {architecture.title}; the zoo registers no "
                f"{architecture.title} without an attention branch. Pass the model to convert into"
                + (f" ({', '.join(candidates)})." if candidates else ".")
            )
        return get_spec(plain[0])
    spec = get_spec(model_name)
    imagenet = [n for n in list_models() if get_spec(n).builder is resnet]
    if spec.builder is not resnet:
        raise ValueError(
            f"No torchvision converter for {spec.name}: torchvision's ResNets convert into the "
            f"zoo's ImageNet ResNets ({', '.join(imagenet)})."
        )
    if spec.name not in candidates:
        if spec.kwargs["depth"] != architecture.depth:
            why = f"{spec.name} is a ResNet-{spec.kwargs['depth']}"
        else:
            why = f"{spec.name} has no SE layers for its SE weights"
        hint = f"convert it into {', '.join(candidates)}" if candidates else "the zoo registers no model for it"
        raise ValueError(f"The checkpoint is a {architecture.title}, but {why}: {hint}.")
    return spec


def _se_values(layer, prefix, state, used):
    """The Keras weights of a SqueezeExcite layer from timm's ``se.fc1`` / ``se.fc2`` (1x1 convs)."""
    values = []
    for fc in ("fc1", "fc2"):
        for part in ("weight", "bias"):
            key = f"{prefix}.{fc}.{part}"
            if key not in state:
                raise ValueError(f"The checkpoint has no {key!r} for layer {layer.name!r}.")
            used.add(key)
            value = state[key]
            values.append(value.reshape(value.shape[:2]).T if part == "weight" else value)
    return values


def _known_file(path, digest):
    """``(version, url, resize_shorter)`` of one of torchvision's published files (by name), after
    checking the file (its sha256 ``digest``) is the one published: its name carries the start of
    its sha256. None for any other file."""
    name = os.path.basename(path)
    for depth, files in TORCHVISION_RESNETS.items():
        for version, file, resize in files:
            if name == file:
                prefix = re.search(r"-([0-9a-f]{8})\.", file)[1]
                if not digest.startswith(prefix):
                    raise ValueError(
                        f"{path} is not torchvision's {file}: its sha256 starts with {digest[:8]}, "
                        f"torchvision's with {prefix}. The download is truncated or damaged: download "
                        f"{TORCHVISION_URL}{file} again."
                    )
                return f"ResNet{depth}_Weights.{version}", f"{TORCHVISION_URL}{file}", resize
    return None


def convert_torchvision_checkpoint(checkpoint, model_name=None, output=None, *, tag=None, input_shape=None,
                                   stats=IMAGENET_STATS, unsafe_pickle=False, opt_in=None):
    """Convert a torchvision (or timm) ResNet checkpoint into one of the zoo's ImageNet ResNets.

    Args:
        checkpoint: the checkpoint (``.pth``, ``.pth.tar``, ``.npz`` or ``.safetensors``), or a
            state dict of NumPy arrays.
        model_name: the registry name to convert into: ``resnet50``, or an attention model of the
            same depth (``abn_resnet50``; ``se_resnet152``, ``abn_se_resnet152``), whose layers
            the checkpoint does not have stay freshly initialised. Defaults to the plain
            ResNet of the checkpoint's depth.
        output: write the weights to this ``.weights.h5`` file (and the record beside it).
        tag: or install them as the local weights ``tag`` of ``model_name`` (e.g.
            "torchvision"), which ``load(model_name, weights=tag)`` and ``fine_tune`` find.
        input_shape: the Keras model's input shape. Defaults to the registry's (224x224x3);
            the weights do not depend on it.
        stats: the normalisation the checkpoint was trained with, recorded with the weights.
            Defaults to torchvision's ImageNet mean and std.
        unsafe_pickle: read a ``.pth`` that ``torch.load(weights_only=True)`` refuses with full
            unpickling, which can run code: only for a file from a source you trust. Defaults
            to False.
        opt_in: how the caller opts in to ``unsafe_pickle``, said when a file is refused.

    Returns:
        A :class:`Conversion`.

    Raises:
        ValueError: for a checkpoint of another architecture than ``model_name`` (its depth,
            its missing, unused or mis-shaped tensors named), or another layout.
    """
    if output is not None and tag is not None:
        raise ValueError("Pass output= or tag=, not both.")
    if output is not None and not os.fspath(output).endswith(".weights.h5"):
        raise ValueError(f"The output must end in .weights.h5, got {os.fspath(output)!r}.")
    if isinstance(checkpoint, dict):
        state, source = checkpoint, {"file": None}
        known = None
    else:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"Checkpoint not found: {os.fspath(checkpoint)}")
        digest = sha256(checkpoint)
        known = _known_file(checkpoint, digest)  # a cut download of torchvision's is named before reading it
        extra = {} if opt_in is None else {"opt_in": opt_in}
        state = load_state_dict(checkpoint, unsafe_pickle, **extra)
        source = {"file": os.path.basename(checkpoint), "sha256": digest}
        if known:
            source.update(weights=f"torchvision.models.{known[0]}", url=known[1])
    architecture = checkpoint_architecture(state)
    spec = target_spec(model_name, architecture)
    model = spec.build(classes=architecture.classes, name=spec.name,
                       **({"input_shape": input_shape} if input_shape else {}))
    used, fresh, mismatched = set(), [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = torchvision_key(layer.name)
        if prefix is None or (layer.name.endswith("_se") and not architecture.se):
            fresh.append(layer.name)
            continue
        values = (_se_values if layer.name.endswith("_se") else _keras_values)(layer, prefix, state, used)
        bad = [(w, v) for w, v in zip(layer.weights, values) if tuple(w.shape) != np.shape(v)]
        if bad:  # the layer's first mismatch, both in Keras' layout (HWIO kernels)
            w, v = bad[0]
            mismatched.append(f"{layer.name}'s {w.name} is {tuple(w.shape)}, {prefix}'s {tuple(v.shape)}")
            continue
        layer.set_weights(values)
    if mismatched:
        raise ValueError(
            f"The checkpoint's tensors do not fit {spec.name} (a {architecture.title} by its block counts): "
            f"{len(mismatched)} layers differ in shape, e.g. {'; '.join(mismatched[:3])}. It is another "
            "architecture with the same names (a wide ResNet or a ResNeXt?); nothing was converted."
        )
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(
            f"{len(unused)} checkpoint tensors have no place in {spec.name}, e.g. {unused[:5]}: it is not a "
            f"torchvision {architecture.title}; nothing was converted."
        )
    image_size = list(spec.input_shape[:2])
    record = {
        "model": spec.name,
        "num_classes": architecture.classes,
        "input_shape": list(spec.input_shape),
        "class_names": [],
        "dataset": "imagenet" if known else None,
        "preprocessing": {**stats.to_dict(),
                          **({"eval": {"image_size": image_size, "resize_shorter": known[2]}} if known else {})},
        "converted_from": {**source, "architecture": architecture.title,
                           "layout": "timm" if architecture.se else "torchvision"},
        "fresh_layers": fresh,
    }
    path = None
    if output is not None:
        save_with_record(model, output, record)
        path = Path(output)
    elif tag is not None:
        path = install_local(model, tag, record)
    return Conversion(model, architecture, fresh, record, path)
