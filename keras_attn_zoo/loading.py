"""Loading a weight file into a registry model: strictly, or all but the class-sized layers;
and what the weights' record says a loaded model needs for inference.

Part of the registry layer, beside ``registry.load``: it builds twins of a model from its
``ModelSpec`` to load a file with another head. Finding and verifying the file is
``keras_attn_zoo.weights``' job.

:func:`inference_facts` is the one rule by which ``predict``, ``explain``, ``export`` and
``evaluate`` (through ``registry.load_for_inference``) honour the record of the weights (a
manifest row, the training record beside a trained file, the record beside a converted
checkpoint, or the metadata of a fine-tuned ``.keras`` file): its classes, class names and
normalisation, or an error that says what to pass instead. Nothing is guessed.
"""

import dataclasses
import os
import re
import tempfile
import warnings

import h5py

from keras_attn_zoo import modelfile
from keras_attn_zoo.normalization import ChannelStats
from keras_attn_zoo.weights import WeightRecord, is_path, record_path, weight_record


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
    their record's (a manifest row, a training record, a converted checkpoint's record), else
    read from the file (None if it cannot be told)."""
    record = weight_record(name, weights)
    if record is not None and record.num_classes is not None:
        return record.num_classes
    return file_num_classes(path)


def check_record_model(name, weights, record):
    """An error when the record of ``weights`` says they belong to another model than ``name``
    (the file would not load, and the error would not say why)."""
    if record is not None and record.model and record.model != name:
        raise ValueError(
            f"{weights} holds weights of {record.model}, not {name} (its record "
            f"{record_path(weights) if is_path(weights) else 'in the manifest'} says so): pass "
            f"--model {record.model} (load({record.model!r}, ...))."
        )


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference, with what its weights recorded.

    Attributes:
        model: the ``keras.Model``.
        class_names: the class names in label order, or None (classes are then numbered).
        normalization: the :class:`~keras_attn_zoo.normalization.ChannelStats` its inputs are
            normalised with, or None for a randomly initialised model (inputs scaled to [0, 1]).
        record: the :class:`~keras_attn_zoo.weights.WeightRecord` of its weights (None for a
            randomly initialised model or weights without a record).
        source: the weights in words, for messages ("runs/x/fa_resnet20.weights.h5").
        notes: what a user should know (numbered classes, random weights), one sentence each.
    """

    model: object
    class_names: tuple | None
    normalization: ChannelStats | None
    record: WeightRecord | None
    source: str | None
    notes: tuple = ()


def model_file(path):
    """A ``.keras`` file as ``(model, record)``: the record is the zoo's metadata inside it
    (``keras_attn_zoo.modelfile``) read as a :class:`WeightRecord`, or None for a file saved by
    plain Keras."""
    model, metadata = modelfile.load_model(path)
    return model, (WeightRecord.from_row(metadata) if metadata else None)


def _no_normalisation(source, record):
    """The error for weights that record no normalisation: what is missing, and what to pass."""
    if str(source).endswith(".keras"):
        what = "records no normalisation (it was not saved by keras_attn_zoo.modelfile.save_model, as finetune saves)"
        fix = "save it with keras_attn_zoo.modelfile.save_model and its class names and normalisation"
    elif is_path(source) and record is None:
        what = f"has no training record beside it ({os.path.basename(record_path(source))})"
        fix = "put back the record that keras-attn-zoo train wrote beside the file"
    else:
        what = "records no normalisation"
        fix = "record it with the weights"
    return ValueError(
        f"{source} {what}, so nothing says how its inputs were normalised (a normalisation is never "
        f"guessed). Pass the per-channel mean and std it was trained with, on the 0-1 scale (--mean R G B "
        f"--std R G B; in Python normalization=ChannelStats(mean, std)), or {fix}."
    )


def inference_facts(model, record, source, class_names=None, normalization=None, default_names=None):
    """What a loaded model needs for inference, from its weights' record: the one rule of
    ``predict``, ``explain``, ``export`` and ``evaluate``.

    - Classes: a record whose number of classes is not the model's is an error.
    - Class names: ``class_names`` when given, else the record's; either must name every class
      (else an error). Without them a trained model's classes are numbered (said in a note);
      a randomly initialised one (``source`` None) gets ``default_names`` (the registry's).
    - Normalisation: the record's; ``normalization`` given as well must equal it. Weights
      without a recorded one need ``normalization``, else an error that says how to pass it.
      A randomly initialised model without one is fed inputs scaled to [0, 1].

    Args:
        model: the loaded ``keras.Model``.
        record: its weights' :class:`~keras_attn_zoo.weights.WeightRecord`, or None.
        source: the weights in words (a tag, a path), or None for random initialisation.
        class_names: names given by the user, in label order. Defaults to None.
        normalization: a :class:`ChannelStats` given by the user. Defaults to None.
        default_names: the registry's class names, for a randomly initialised model.

    Returns:
        A :class:`LoadedModel`.
    """
    n = model.output_shape[-1]
    notes = []
    if source is None:
        notes.append(f"{model.name} is randomly initialised (no weights given): its outputs mean nothing yet.")
    if record is not None and record.num_classes is not None and record.num_classes != n:
        raise ValueError(f"{source} records {record.num_classes} classes, but the model has {n}: the record "
                         "does not describe this model.")
    recorded_names = tuple(record.class_names) if record is not None else ()
    if class_names is not None:
        names = tuple(class_names)
        if len(names) != n:
            raise ValueError(f"{len(names)} class names were given; {model.name} has {n} classes.")
        if recorded_names and names != recorded_names:
            notes.append(f"the class names given replace those {source} records "
                         f"({', '.join(recorded_names[:5])}{' ...' if n > 5 else ''}).")
    elif recorded_names:
        if len(recorded_names) != n:
            raise ValueError(f"{source} records {len(recorded_names)} class names; {model.name} has {n} classes.")
        names = recorded_names
    elif source is None:
        names = tuple(default_names) if default_names and len(default_names) == n else None
    else:
        names = None
        notes.append(f"{source} records no class names: its {n} classes are numbered (name them with "
                     "--class-names FILE, one name per line in label order).")
    recorded_stats = record.normalization if record is not None else None
    if recorded_stats is not None and normalization is not None and normalization != recorded_stats:
        raise ValueError(
            f"{source} was trained with mean {list(recorded_stats.mean)}, std {list(recorded_stats.std)} (its "
            f"record says so); the normalisation given (mean {list(normalization.mean)}, std "
            f"{list(normalization.std)}) differs. Leave it out."
        )
    stats = recorded_stats or normalization
    if stats is None and source is not None:
        raise _no_normalisation(source, record)
    return LoadedModel(model, names, stats, record, source, tuple(notes))
