"""Convert the ABN authors' PyTorch checkpoints into this zoo's Keras weights.

The authors publish ``model_best.pth.tar`` files: a dict whose ``state_dict`` maps names such
as ``module.layer3.0.conv1.weight`` to tensors. :func:`convert_abn_checkpoint` maps every
tensor by name onto this zoo's layers (``stage3_block1_1_conv``...), converts the layouts
(convolutions OIHW -> HWIO, dense (out, in) -> (in, out), BatchNorm's running statistics),
checks that every tensor is used exactly once and every weight of the model is filled, and
writes a ``.weights.h5`` file.

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

from keras_attn_zoo.registry import get_spec

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


def _keras_values(layer, prefix, state, used):
    """The Keras weight values of ``layer`` from the authors' tensors under ``prefix``."""
    import keras

    def take(name):
        key = f"{prefix}.{name}"
        if key not in state:
            raise ValueError(f"The checkpoint has no {key!r} for layer {layer.name!r}.")
        used.add(key)
        return state[key]

    if isinstance(layer, keras.layers.BatchNormalization):
        return [take(p) for p in BN_PARAMS]
    if isinstance(layer, keras.layers.Conv2D):
        values = [np.transpose(take("weight"), (2, 3, 1, 0))]
        return values + ([take("bias")] if layer.use_bias else [])
    if isinstance(layer, keras.layers.Dense):
        return [take("weight").T, take("bias")]
    raise ValueError(f"No conversion for layer {layer.name!r} of type {type(layer).__name__}.")


def convert_abn_checkpoint(checkpoint, model_name, output=None, num_classes=None, input_shape=None,
                           unsafe_pickle=False):
    """Convert an ABN authors' checkpoint into a loaded Keras model (and a weights file).

    Args:
        checkpoint: path of the checkpoint (.pth[.tar], .npz, .safetensors) or a state dict.
        model_name: the registry name it corresponds to, e.g. "abn_resnet152", "abn_resnet110".
        output: where to write the ``.weights.h5`` file. Defaults to no file.
        num_classes: classes of the checkpoint. Defaults to the size of its ``fc`` layer.
        input_shape: the model's input shape. Defaults to the registry's.
        unsafe_pickle: read a PyTorch file with full unpickling (see :func:`load_state_dict`):
            only for a trusted file that ``weights_only=True`` refuses. Defaults to False.

    Returns:
        The Keras model with the converted weights.
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
    if fc not in state:
        raise ValueError(f"The checkpoint has no {fc!r}: is it an ABN classification model of {spec.family}?")
    classes = num_classes or state[fc].shape[0]
    model = spec.build(classes=classes, name=spec.name, **({"input_shape": input_shape} if input_shape else {}))
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = official_key(spec.family, layer.name)
        if prefix is None:
            raise ValueError(f"No checkpoint name is known for layer {layer.name!r} of {spec.name}.")
        values = _keras_values(layer, prefix, state, used)
        for weight, value in zip(layer.weights, values):
            if tuple(weight.shape) != value.shape:
                raise ValueError(
                    f"{layer.name}/{weight.name}: the model expects {tuple(weight.shape)}, the "
                    f"checkpoint's {prefix} has {value.shape}. Wrong model name or depth?"
                )
        layer.set_weights(values)
    skip = UNUSED.get(spec.family, ())
    unused = sorted(
        k for k in state
        if k not in used and not k.endswith("num_batches_tracked") and not k.startswith(skip)
    )
    if unused:
        raise ValueError(
            f"{len(unused)} checkpoint tensors have no place in {spec.name}, e.g. {unused[:5]}. "
            "Wrong model name or depth?"
        )
    if output is not None:
        model.save_weights(os.fspath(output))
    return model
