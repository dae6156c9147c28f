"""Loading a weight file into a registry model: strictly, or all but the class-sized layers.

Part of the registry layer, beside ``registry.load``: it builds twins of a model from its
``ModelSpec`` to load a file with another head. Finding and verifying the file is
``keras_attn_zoo.weights``' job.
"""

import os
import re
import tempfile
import warnings

import h5py

from keras_attn_zoo.weights import is_path, published_weights


# The parts of a weights file that are the model's own: its layers and its variables. The rest
# (``optimizer/...``, saved from a compiled model) is training state that loading a model into
# another never needs, so it is not compared.
MODEL_ENTRIES = ("layers", "vars")


def variable_tree(path):
    """The model variables of a ``.weights.h5`` file: ``{"layers/conv2d/vars/0": shape, ...}``
    (those under :data:`MODEL_ENTRIES`)."""
    tree = {}

    def add(name, obj):
        if isinstance(obj, h5py.Dataset) and name.split("/")[0] in MODEL_ENTRIES:
            tree[name] = tuple(obj.shape)

    with h5py.File(path, "r") as f:
        f.visititems(add)
    return tree


def model_variable_tree(model):
    """The variables a ``.weights.h5`` file of ``model`` has, as :func:`variable_tree` reads
    them: Keras' own layout, written to a temporary file and read back."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.weights.h5")
        model.save_weights(path)
        return variable_tree(path)


def _entries(paths, what, limit=6):
    """Variable paths grouped by their top-level entry ("layers/focus_association", Keras' name
    in the file), as "N entries WHAT (V variables): a, b, ..."."""
    groups = sorted({"/".join(p.split("/")[:2]) for p in paths})
    shown = ", ".join(groups[:limit]) + (f" and {len(groups) - limit} more" if len(groups) > limit else "")
    return f"{len(groups)} entr{'y' if len(groups) == 1 else 'ies'} {what} ({len(paths)} variables): {shown}"


def tree_differences(file_tree, model_tree):
    """What keeps a file of variables ``file_tree`` from loading exactly into a model whose own
    file would be ``model_tree``: a list of sentences, empty when the two match."""
    unused = sorted(set(file_tree) - set(model_tree))
    missing = sorted(set(model_tree) - set(file_tree))
    shapes = sorted(p for p in set(file_tree) & set(model_tree) if file_tree[p] != model_tree[p])
    problems = []
    if unused:
        problems.append(_entries(unused, "of the file that the model does not use"))
    if missing:
        problems.append(_entries(missing, "of the model that the file lacks"))
    if shapes:
        shown = ", ".join(f"{p} is {file_tree[p]} in the file, {model_tree[p]} in the model" for p in shapes[:3])
        more = f" and {len(shapes) - 3} more" if len(shapes) > 3 else ""
        problems.append(f"{len(shapes)} variable(s) differ in shape: {shown}{more}")
    return problems


def load_weights_file(model, path):
    """Load a ``.weights.h5`` file into ``model`` strictly: all of it or nothing.

    The file's variable tree must be the model's exactly: an entry the model does not use (Keras
    ignores those silently: the FA-ResNet-20 file "loads" into ResNet-20), one the model lacks,
    or a variable of another shape is an error that names them, raised before any weight
    changes. Keras' own warnings ("Skipping ...") are errors too, and on any error the model's
    previous weights are restored, so a model is never half-loaded.
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"Expected a Keras '.weights.h5' file, got {path!r}.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; expected a '.weights.h5' file.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path}")
    try:
        file_tree = variable_tree(path)
    except OSError as e:
        raise ValueError(f"Could not load {path} into {model.name}: it is not a readable HDF5 "
                         f"file ({e}); the file is damaged or truncated.") from e
    problems = tree_differences(file_tree, model_variable_tree(model))
    if problems:
        raise ValueError(
            f"Could not load {path} into {model.name}: {'; '.join(problems)}. The file was saved "
            "from a different architecture (or number of classes); nothing was loaded."
        )
    before = model.get_weights()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(path)
        skipped = [str(w.message) for w in caught if "skipping" in str(w.message).lower()]
        if skipped:
            raise ValueError(f"{len(skipped)} part(s) of the file did not match, e.g. {skipped[0]}")
    except (OSError, ValueError, KeyError) as e:
        model.set_weights(before)
        raise ValueError(
            f"Could not load {path} into {model.name}: {e}. The file is damaged or was saved "
            "from a different architecture or number of classes."
        ) from e


def file_num_classes(path):
    """The classifier size stored in a zoo model's weight file, or None if it cannot be told.

    A registry model has one top-level Dense layer, its classifier; Keras stores it as
    ``layers/dense/vars/0`` (kernel: features x classes).
    """
    try:
        with h5py.File(path, "r") as f:
            dense = [k for k in f.get("layers", {}) if re.fullmatch(r"dense(_\d+)?", k)]
            if len(dense) == 1:
                return int(f["layers"][dense[0]]["vars"]["0"].shape[-1])
    except OSError:
        return None
    return None


def load_pretrained(model, spec, path, file_classes, build_kwargs, new_head=False):
    """Load weights into a registry model; all but the classifier when the heads differ.

    Loading is strict (:func:`load_weights_file`) when the model's classifier matches the
    file's. When the model has another number of classes, or no classifier
    (``include_top=False``), the file is loaded strictly into a twin with the file's head and
    every other layer is copied by name; the skipped layers are reported in a warning.

    Args:
        model: the freshly built model.
        spec: its ``ModelSpec``.
        path: the resolved ``.weights.h5`` path.
        file_classes: the file's number of classes (:func:`weights_num_classes`), or None when it
            cannot be told.
        build_kwargs: the extra builder arguments the model was built with.
        new_head: leave the class-sized layers freshly initialised even when the model has the
            file's number of classes (fine-tuning to other classes). Defaults to False.

    Returns:
        The names of the layers not loaded (empty for a strict load).
    """
    names = {layer.name for layer in model.layers}
    has_top = spec.classifier in names
    model_classes = model.get_layer(spec.classifier).units if has_top else None
    if has_top and not new_head and (file_classes is None or file_classes == model_classes):
        load_weights_file(model, path)
        return []
    if file_classes is None:
        raise ValueError(
            f"Cannot tell the number of classes of {path}, so it cannot be loaded into "
            f"{model.name} without its classifier. Load it with its own num_classes first."
        )
    kwargs = {k: v for k, v in build_kwargs.items() if k not in ("include_top", "pooling", "classes", "input_shape")}
    twin = spec.build(
        classes=file_classes, input_shape=model.input_shape[1:], name=spec.name, **kwargs
    )
    load_weights_file(twin, path)
    class_sized = set()
    if has_top and file_classes == model_classes:  # new_head: which layers depend on the classes?
        probe = spec.build(classes=file_classes + 1, input_shape=model.input_shape[1:], name=spec.name, **kwargs)
        class_sized = {layer.name for layer in probe.layers
                       if [w.shape for w in layer.weights] != [w.shape for w in twin.get_layer(layer.name).weights]}
    skipped = [spec.classifier] if has_top else []
    for layer in twin.layers:
        if layer.name not in names:
            if layer.weights:
                skipped.append(layer.name)
            continue
        if layer.name == spec.classifier:
            continue
        if layer.name in class_sized:
            skipped.append(layer.name)
            continue
        target = model.get_layer(layer.name)
        values = layer.get_weights()
        if [tuple(w.shape) for w in target.weights] != [v.shape for v in values]:
            skipped.append(layer.name)  # class-sized, e.g. ABN's attention-branch convolutions
            continue
        target.set_weights(values)
    if has_top and new_head:
        message = (
            f"Loaded {path} into {model.name} except {', '.join(repr(n) for n in skipped)}: "
            f"new class-sized layers for the model's {model_classes} classes were asked for."
        )
    elif has_top:
        message = (
            f"Loaded {path} into {model.name} except {', '.join(repr(n) for n in skipped)}: the "
            f"file has {file_classes} classes, the model {model_classes}, so those class-sized "
            "layers keep their fresh initialisation."
        )
    else:
        message = (
            f"Loaded {path} into {model.name} except {', '.join(skipped)}, which the model "
            "does not have (include_top=False)."
        )
    warnings.warn(message, stacklevel=3)
    return skipped


def weights_num_classes(name, weights, path):
    """The number of classes of the weights ``weights`` of model ``name``, resolved to ``path``:
    the manifest's for published weights, else read from the file (None if it cannot be told)."""
    if not is_path(weights):
        for record in published_weights(name):
            if record.tag == weights:
                return record.num_classes
    return file_num_classes(path)  # a file, or weights made locally (a converted checkpoint)
