"""Convert the ABN authors' PyTorch checkpoints into this zoo's Keras weights.

The authors publish ``model_best.pth.tar`` files: a dict whose ``state_dict`` maps names such
as ``module.layer3.0.conv1.weight`` to tensors. :func:`convert_abn_checkpoint` maps every
tensor by name onto this zoo's layers (``stage3_block1_1_conv``...), converts the layouts
(convolutions OIHW -> HWIO, dense (out, in) -> (in, out), BatchNorm's running statistics),
checks that every tensor is used exactly once and every weight of the model is filled (or
names every key and shape that does not fit, and which model the checkpoint looks like), and
writes a ``.weights.h5`` file with its record beside it (``NAME.json``: classes, input shape,
and the normalisation the authors' training scripts applied, so ``predict``, ``explain``,
``export`` and ``evaluate`` prepare images as the authors did).

Without PyTorch, dump the state dict once where PyTorch is installed, in two lines::

    sd = torch.load("model_best.pth.tar", map_location="cpu", weights_only=True)["state_dict"]
    numpy.savez("abn_resnet152.npz", **{k: v.numpy() for k, v in sd.items()})

and convert the ``.npz`` (a ``.safetensors`` file works too, with the safetensors package).

PyTorch files are read with ``torch.load(..., weights_only=True)``: a ``.pth`` is a pickle, and
unpickling anything else can run code the file's author chose. The authors' checkpoints load
that way; a file that does not is refused unless the caller opts in with ``unsafe_pickle=True``
(``--unsafe-pickle`` of ``scripts/convert_abn_pytorch.py``), for files from a source they trust.
"""

import os
import pickle
import re
import warnings

import numpy as np

from keras_attn_zoo.data.preprocessing import IMAGENET_STATS
from keras_attn_zoo.models.resnet import DEPTHS as RESNET_DEPTHS
from keras_attn_zoo.normalization import ChannelStats
from keras_attn_zoo.registry import CLASS_NAMES, get_spec, list_models
from keras_attn_zoo.weights import save_with_record, sha256

# The authors' names for the attention-branch heads (the same in every family).
ABN_HEADS = {
    "abn_bn": "bn_att",
    "abn_class_conv": "att_conv",
    "abn_class_bn": "bn_att2",
    "abn_logits_conv": "att_conv2",
    "abn_map_conv": "att_conv3",
    "abn_map_bn": "bn_att3",
}

BN_PARAMS = ("weight", "bias", "running_mean", "running_var")

# The normalisation the authors' training scripts apply (their cifar.py, for CIFAR-10 and
# CIFAR-100 alike, and imagenet.py), and how imagenet.py prepares its validation images.
AUTHORS_STATS = {
    "cifar": ChannelStats((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": IMAGENET_STATS,
}
AUTHORS_EVAL = {"imagenet": {"image_size": [224, 224], "resize_shorter": 256}}


def _resnet_rules(branch_stage):
    """Our layer name -> the authors' module name, for their ResNet code (CIFAR and ImageNet)."""
    return [
        (r"stem_conv", lambda m: "conv1"),
        (r"stem_bn", lambda m: "bn1"),
        (r"stage(\d+)_block(\d+)_(\d)_(conv|bn)", lambda m: f"layer{m[1]}.{int(m[2]) - 1}.{m[4]}{m[3]}"),
        (r"stage(\d+)_block(\d+)_shortcut_conv", lambda m: f"layer{m[1]}.{int(m[2]) - 1}.downsample.0"),
        (r"stage(\d+)_block(\d+)_shortcut_bn", lambda m: f"layer{m[1]}.{int(m[2]) - 1}.downsample.1"),
        (r"abn_block(\d+)_(\d)_(conv|bn)", lambda m: f"att_layer{branch_stage}.{int(m[1]) - 1}.{m[3]}{m[2]}"),
        (r"abn_block(\d+)_shortcut_conv", lambda m: f"att_layer{branch_stage}.{int(m[1]) - 1}.downsample.0"),
        (r"abn_block(\d+)_shortcut_bn", lambda m: f"att_layer{branch_stage}.{int(m[1]) - 1}.downsample.1"),
        (r"predictions", lambda m: "fc"),
    ]


def _wrn_rules():
    """Our layer name -> the authors' module name, for their Wide ResNet code."""
    return [
        (r"stem_conv", lambda m: "conv1"),
        (r"stage(\d+)_block(\d+)_(\d)_(conv|bn)", lambda m: f"block{m[1]}.layer.{int(m[2]) - 1}.{m[4]}{m[3]}"),
        (r"stage(\d+)_block(\d+)_shortcut_conv", lambda m: f"block{m[1]}.layer.{int(m[2]) - 1}.convShortcut"),
        (r"abn_block(\d+)_(\d)_(conv|bn)", lambda m: f"att_block3.layer.{int(m[1]) - 1}.{m[3]}{m[2]}"),
        (r"abn_block(\d+)_shortcut_conv", lambda m: f"att_block3.layer.{int(m[1]) - 1}.convShortcut"),
        (r"head_bn", lambda m: "bn1"),
        (r"predictions", lambda m: "fc"),
    ]


def _resnext_rules():
    """Our layer name -> the authors' module name, for their CIFAR ResNeXt code."""
    parts = {"1_conv": "conv_reduce", "1_bn": "bn_reduce", "2_conv": "conv_conv", "2_bn": "bn",
             "3_conv": "conv_expand", "3_bn": "bn_expand", "shortcut_conv": "shortcut.shortcut_conv",
             "shortcut_bn": "shortcut.shortcut_bn"}
    part = "(" + "|".join(parts) + ")"
    return [
        (r"stem_conv", lambda m: "conv_1_3x3"),
        (r"stem_bn", lambda m: "bn_1"),
        (rf"stage(\d+)_block(\d+)_{part}",
         lambda m: f"stage_{m[1]}.stage_{m[1]}_bottleneck_{int(m[2]) - 1}.{parts[m[3]]}"),
        (rf"abn_block(\d+)_{part}", lambda m: f"stage_att.stage_att_bottleneck_{int(m[1]) - 1}.{parts[m[2]]}"),
        (r"predictions", lambda m: "classifier"),
    ]


# family (registry) -> naming rules; the CIFAR ResNet branches before stage 3, ImageNet's before 4
RULES = {
    "resnet_cifar": _resnet_rules(3), "resnet": _resnet_rules(4), "wrn": _wrn_rules(),
    "resnext_cifar": _resnext_rules(),
}
# tensors a family's checkpoints carry for modules the authors create but never call
UNUSED = {"resnext_cifar": ("bn_att.",)}
CLASSIFIER = {"resnext_cifar": "classifier"}


def official_key(family, layer_name):
    """The authors' module name for one of our layers, or None for a layer without weights."""
    if layer_name in ABN_HEADS:
        return ABN_HEADS[layer_name]
    for pattern, make in RULES[family]:
        match = re.fullmatch(pattern, layer_name)
        if match:
            return make(match)
    return None


def load_state_dict(path, unsafe_pickle=False, opt_in="pass unsafe_pickle=True (--unsafe-pickle)"):
    """A checkpoint as ``{name: numpy array}``, without the ``module.`` prefix of DataParallel.

    Reads ``.pth`` / ``.pth.tar`` (needs PyTorch; a dict with a ``state_dict`` or ``model``
    entry, or a plain state dict), ``.npz`` and ``.safetensors`` (needs the safetensors package).

    Args:
        path: the checkpoint file.
        unsafe_pickle: read a PyTorch file that holds more than tensors and plain containers
            with full unpickling, which runs whatever code the file names: only for files from
            a source you trust. Defaults to False (``torch.load(weights_only=True)``; such a
            file is refused).
        opt_in: how the caller opts in to ``unsafe_pickle``, said when a file is refused.
            Defaults to the converter's "pass unsafe_pickle=True (--unsafe-pickle)".

    Raises:
        ValueError: for a PyTorch file that needs full unpickling, without ``unsafe_pickle``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    if path.endswith(".npz"):
        with np.load(path) as data:
            state = {k: data[k] for k in data.files}
    elif path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise ImportError("Reading .safetensors needs `pip install safetensors`.") from e
        state = load_file(path)
    elif path.endswith((".pth", ".pth.tar", ".pt", ".tar")):
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                "Reading a PyTorch checkpoint needs torch; without it, dump the state dict to "
                ".npz where torch is installed (see keras_attn_zoo.convert.abn_pytorch)."
            ) from e
        if unsafe_pickle:
            warnings.warn(
                f"Reading {path} with full unpickling (unsafe_pickle): it can run any code the "
                "file names. Use this only for a file from a source you trust.",
                UserWarning, stacklevel=2,
            )
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
        except pickle.UnpicklingError as e:
            if unsafe_pickle:
                raise ValueError(f"{path} could not be unpickled ({e}): it is damaged or not a PyTorch file.") from e
            # PyTorch's message is long; its "Unsupported global: GLOBAL x.y ..." line says why
            why = next((line.strip().split(". ")[0] for line in str(e).splitlines() if "GLOBAL" in line), "")
            raise ValueError(
                f"{path} holds more than tensors and plain containers, and unpickling it could "
                f"run code, so it was not read. If it comes from a source you trust, {opt_in}; "
                "otherwise dump its state dict to .npz where it is trusted (see "
                "keras_attn_zoo.convert.abn_pytorch)."
                + (f" PyTorch: {why.removeprefix('WeightsUnpickler error: ')}." if why else "")
            ) from e
        except (RuntimeError, EOFError, KeyError) as e:  # what torch.load raises for a cut or foreign file
            first = str(e).splitlines()[0] if str(e) else ""
            raise ValueError(
                f"{path} could not be read as a PyTorch checkpoint ({type(e).__name__}: {first[:200]}): "
                "it is truncated, damaged or not a PyTorch file."
            ) from e
        for entry in ("state_dict", "model"):  # the ABN authors' / torchvision references' training files
            if isinstance(checkpoint, dict) and isinstance(checkpoint.get(entry), dict):
                checkpoint = checkpoint[entry]
                break
        if not isinstance(checkpoint, dict):
            raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict (a dict of tensors).")
        others = sorted(str(k) for k, v in checkpoint.items() if not isinstance(v, torch.Tensor))
        if others:
            raise ValueError(
                f"{path} holds no state dict: its entries {', '.join(repr(k) for k in others[:5])} are not "
                "tensors (expected a dict of tensors, or one under 'state_dict' or 'model')."
            )
        state = {k: v.detach().cpu().numpy() for k, v in checkpoint.items()}
    else:
        raise ValueError(f"Unknown checkpoint format: {path} (expected .pth[.tar], .npz or .safetensors).")
    return {k[len("module."):] if k.startswith("module.") else k: np.asarray(v) for k, v in state.items()}


def _torch_layout(layer):
    """``[(parameter name, the shape PyTorch stores it in)]`` for one of our layers, in the order
    of its Keras weights, and how to turn each tensor into the Keras value."""
    import keras

    shapes = [tuple(w.shape) for w in layer.weights]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [(p, shapes[i], lambda v: v) for i, p in enumerate(BN_PARAMS)]
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = shapes[0]
        parts = [("weight", (cout, cin, kh, kw), lambda v: np.transpose(v, (2, 3, 1, 0)))]
        return parts + ([("bias", shapes[1], lambda v: v)] if layer.use_bias else [])
    if isinstance(layer, keras.layers.Dense):
        fin, fout = shapes[0]
        return [("weight", (fout, fin), lambda v: v.T), ("bias", shapes[1], lambda v: v)]
    raise ValueError(f"No conversion for layer {layer.name!r} of type {type(layer).__name__}.")


def _keras_values(layer, prefix, state, used):
    """The Keras weight values of ``layer`` from the tensors under ``prefix`` (each marked in
    ``used``), in Keras' layouts (:func:`_torch_layout`); a missing tensor is an error naming it."""
    values = []
    for name, _, convert in _torch_layout(layer):
        key = f"{prefix}.{name}"
        if key not in state:
            raise ValueError(f"The checkpoint has no {key!r} for layer {layer.name!r}.")
        used.add(key)
        values.append(convert(state[key]))
    return values


def _examples(items, limit=4):
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def checkpoint_stages(state):
    """The blocks per stage of a ResNet checkpoint (``layer{s}.{b}.`` keys), e.g. (3, 8, 36, 3)."""
    blocks = {}
    for key in state:
        match = re.match(r"layer(\d+)\.(\d+)\.", key)
        if match:
            stage, block = int(match[1]), int(match[2])
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    return tuple(blocks[s] for s in sorted(blocks))


def _resnet_blocks(spec):
    """The blocks per stage of a registered ABN ResNet, without building it."""
    depth = spec.kwargs["depth"]
    if spec.family == "resnet":
        return tuple(RESNET_DEPTHS[depth][1])
    return ((depth - 2) // 6,) * 3  # the authors' CIFAR rule, basic and bottleneck blocks alike


def _looks_like(state):
    """What a checkpoint's keys say it is, in words: its stages' block counts and the registered
    ABN model with those (or None)."""
    stages = checkpoint_stages(state)
    if not stages:
        families = {"block1.layer.": "a Wide ResNet (keys block1.layer...)",
                    "stage_1.": "a ResNeXt (keys stage_1...)", "dense1.": "a DenseNet (keys dense1...)"}
        found = [words for prefix, words in families.items() if any(k.startswith(prefix) for k in state)]
        return (f"it looks like {found[0]}" if found else "its keys are not those of the authors' ResNets"), None
    names = [n for n in list_models("abn_*")
             if get_spec(n).family in ("resnet", "resnet_cifar") and not n.endswith("multitask")
             and get_spec(n).kwargs.get("attention") == "abn" and _resnet_blocks(get_spec(n)) == stages
             and (len(stages) == 4) == (get_spec(n).family == "resnet")]
    words = f"its {', '.join(f'layer{i}' for i in range(1, len(stages) + 1))} hold {', '.join(map(str, stages))} blocks"
    return words, (names[0] if names else None)


def checkpoint_mismatches(model, family, state, skip=()):
    """What keeps ``state`` (the authors' tensors) from filling ``model`` exactly: sentences naming
    the keys the model needs that the checkpoint lacks, the tensors of another shape, and the
    checkpoint's tensors the model has no place for; empty when they fit."""
    missing, shapes, wanted = [], [], set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = official_key(family, layer.name)
        if prefix is None:
            raise ValueError(f"No checkpoint name is known for layer {layer.name!r} of {model.name}.")
        for name, shape, _ in _torch_layout(layer):
            key = f"{prefix}.{name}"
            wanted.add(key)
            if key not in state:
                missing.append(key)
            elif tuple(state[key].shape) != shape:
                shapes.append(f"{key} is {tuple(state[key].shape)} in the checkpoint, {shape} in {model.name}")
    unused = sorted(k for k in state if k not in wanted and not k.endswith("num_batches_tracked")
                    and not k.startswith(skip))
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) {model.name} needs are not in the checkpoint: {_examples(missing)}")
    if shapes:
        problems.append(f"{len(shapes)} tensor(s) differ in shape: {_examples(shapes, 3)}")
    if unused:
        problems.append(f"{len(unused)} checkpoint tensor(s) have no place in {model.name}: {_examples(unused)}")
    return problems


def convert_abn_checkpoint(checkpoint, model_name, output=None, num_classes=None, input_shape=None,
                           unsafe_pickle=False):
    """Convert an ABN authors' checkpoint into a loaded Keras model (and a weights file).

    Args:
        checkpoint: path of the checkpoint (.pth[.tar], .npz, .safetensors) or a state dict.
        model_name: the registry name it corresponds to, e.g. "abn_resnet152", "abn_resnet110".
        output: where to write the ``.weights.h5`` file; its record (:func:`checkpoint_record`)
            goes beside it, ``NAME.json`` (``weights.save_with_record``). Defaults to no file.
        num_classes: classes of the checkpoint. Defaults to the size of its ``fc`` layer.
        input_shape: the model's input shape. Defaults to the registry's.
        unsafe_pickle: read a PyTorch file with full unpickling (see :func:`load_state_dict`):
            only for a trusted file that ``weights_only=True`` refuses. Defaults to False.

    Returns:
        The Keras model with the converted weights.

    Raises:
        ValueError: when the checkpoint does not fit ``model_name``: the message names the keys
            the model needs that the checkpoint lacks, the tensors of another shape, the tensors
            without a place, and which registered model the checkpoint's stages match.
    """
    spec = get_spec(model_name)
    if spec.family not in RULES or not spec.name.startswith("abn_") or spec.name.endswith("multitask"):
        supported = ", ".join(sorted(RULES))
        raise ValueError(
            f"No converter for {spec.name}: the authors' checkpoints convert for the ABN models "
            f"of the families {supported} (their DenseNet's key names are not mapped yet)."
        )
    state = checkpoint if isinstance(checkpoint, dict) else load_state_dict(checkpoint, unsafe_pickle)
    fc = CLASSIFIER.get(spec.family, "fc") + ".weight"
    words, match = _looks_like(state)
    hint = (f" The checkpoint does not look like {spec.name}: {words}"
            + (f", as in {match}: pass --model {match} (model_name={match!r})." if match and match != spec.name
               else "."))
    if fc not in state or np.ndim(state[fc]) != 2:
        raise ValueError(f"The checkpoint has no classifier {fc!r} of shape (classes, features): it is not an ABN "
                         f"classification model of {spec.family}.{hint}")
    classes = num_classes or state[fc].shape[0]
    model = spec.build(classes=classes, name=spec.name, **({"input_shape": input_shape} if input_shape else {}))
    problems = checkpoint_mismatches(model, spec.family, state, UNUSED.get(spec.family, ()))
    if problems:
        raise ValueError(f"The checkpoint does not fit {spec.name}: {'; '.join(problems)}.{hint} Nothing was "
                         "converted.")
    used = set()
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(_keras_values(layer, official_key(spec.family, layer.name), state, used))
    if output is not None:
        save_with_record(model, output, checkpoint_record(model, spec.name, checkpoint))
    return model


def checkpoint_record(model, model_name, checkpoint=None):
    """The record written beside converted weights, in the training records' fields
    (``weights.WeightRecord.from_row`` reads it): the model, its classes and input shape, the
    class names where the zoo knows them (CIFAR-10's; numbered otherwise), and the authors'
    normalisation (:data:`AUTHORS_STATS`) and evaluation transform.

    Args:
        model: the converted model.
        model_name: its registry name.
        checkpoint: the checkpoint's path (recorded with its sha256), or None for a state dict.

    Returns:
        A JSON-able dict.
    """
    spec = get_spec(model_name)
    kind = "imagenet" if spec.family == "resnet" else "cifar"
    classes = int(model.output_shape[-1])
    dataset = {("cifar", 10): "cifar10", ("cifar", 100): "cifar100", ("imagenet", 1000): "imagenet"}.get((kind, classes))
    shape = list(model.input_shape[1:])
    record = {
        "model": spec.name,
        "num_classes": classes,
        "input_shape": shape,
        "class_names": list(CLASS_NAMES[dataset]) if dataset in CLASS_NAMES else [],
        "dataset": dataset,
        "preprocessing": {**AUTHORS_STATS[kind].to_dict(),
                          "eval": AUTHORS_EVAL.get(kind, {"image_size": shape[:2]})},
        "training": {"source": "the ABN authors' checkpoint (attention_branch_network), converted by "
                               "keras_attn_zoo.convert.abn_pytorch; normalisation from their "
                               f"{'imagenet.py' if kind == 'imagenet' else 'cifar.py'}"},
    }
    if checkpoint is not None and not isinstance(checkpoint, dict):
        record["training"]["checkpoint"] = {"file": os.path.basename(os.fspath(checkpoint)),
                                            "sha256": sha256(checkpoint)}
    return record  # weights.save_with_record / install_local add the file's name, sha256 and size
