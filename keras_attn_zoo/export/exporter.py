"""Writing SavedModel, TFLite and ONNX files from a Keras model on the TensorFlow backend.

What was measured with TF 2.21 / Keras 3.15 and shapes this code:

- ``TFLiteConverter.from_saved_model`` converts exactly; ``from_concrete_functions`` silently
  drops the variables (NaN outputs) and is not used.
- Keras' own LiteRT export allows TensorFlow ("Flex") ops by default; here only TFLite
  built-in ops are allowed, and a model that needs more fails with the ops' names.
- ``model.export(format="onnx")`` needs a model that has been called once, and leaves grouped
  convolutions as nested calls onnxruntime cannot run; ONNX files are therefore converted
  from the SavedModel with tf2onnx, after inlining (see :func:`_write_onnx`).
- A model with one output gets the output name ``output_0`` in a SavedModel signature; the model
  is therefore always exported with dict outputs, named after their layers.
- tf2onnx lists a signature's outputs sorted by name (ABN's ``abn_logits`` before
  ``predictions``); the ONNX graph's outputs are put back in the model's order. The TFLite
  converter names the tensors behind the signature ``StatefulPartitionedCall_1:k``; they are
  renamed to the signature's (the model's) names in the flatbuffer.
- What a deploying user needs besides the graph (class names, normalisation, whether it is built
  in) is written to ``<output>.json`` beside every export, and also into an ONNX file's
  ``metadata_props``. TFLite's own metadata schema needs the tflite-support package (not a
  dependency here), and a custom flatbuffer entry is read by no runtime; a JSON file beside the
  model is read by any language.
"""

# The file beside every export: what the model needs besides its graph.
METADATA_SUFFIX = ".json"
INCLUDED_INPUT_NAME = "pixels"  # the input of a file with the normalisation built in

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import keras
import numpy as np

from keras_attn_zoo.data.preprocessing import normalization_layer
from keras_attn_zoo.explain.outputs import run, with_outputs
from keras_attn_zoo.export import parity
from keras_attn_zoo.images import model_image_size, preprocess, read_images

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = (None, "float16", "dynamic", "int8")


@dataclasses.dataclass
class ExportReport:
    """What an export wrote and how closely the file reproduces Keras.

    Attributes:
        path: the file (or SavedModel folder) written.
        format: "savedmodel", "tflite" or "onnx".
        quantize: None, "float16", "dynamic" or "int8".
        input_name: the input's name in the file.
        input_shape: the input's shape in the file; None is a dynamic size.
        outputs: output name -> shape (batch first, None when dynamic).
        size_bytes: the size of the file (or folder).
        runtime: what ran the file for the check.
        samples: how many inputs the check used, and what they were.
        max_abs_diff: output name -> largest absolute difference from Keras.
        allowed_diff: output name -> the largest difference the check allows (float32 and
            float16 files; empty for dynamic-range and int8).
        top1_agreement: fraction of samples with the same top class as Keras (class scores
            only), else None.
        criterion: the test the file had to pass, in words.
        ok: whether it passed.
        ops: the TFLite operators in the file (TFLite only).
        metadata: what the deploying user needs (class names, normalisation, whether it is
            built in, input and output names), as written to ``metadata_path``.
        metadata_path: the JSON file beside the export.
    """

    path: Path
    format: str
    quantize: object
    input_name: str
    input_shape: tuple
    outputs: dict
    size_bytes: int
    runtime: str
    samples: str
    max_abs_diff: dict
    allowed_diff: dict
    top1_agreement: object
    criterion: str
    ok: bool
    ops: tuple = ()
    metadata: dict = dataclasses.field(default_factory=dict)
    metadata_path: Path = None

    def summary(self):
        """The report as a few lines of text."""
        kind = self.format + (f" ({self.quantize})" if self.quantize else "")
        lines = [
            f"wrote {self.path} ({kind}, {self.size_bytes / 1e6:.2f} MB)",
            f"  input  {self.input_name}: {_shape(self.input_shape)}",
        ]
        for name, shape in self.outputs.items():
            allowed = f" (allowed {self.allowed_diff[name]:.3g})" if name in self.allowed_diff else ""
            lines.append(f"  output {name}: {_shape(shape)}  max |diff| from Keras {self.max_abs_diff[name]:.3g}{allowed}")
        if self.top1_agreement is not None:
            lines.append(f"  top-1 agreement with Keras: {self.top1_agreement:.1%}")
        lines.append(f"  checked in {self.runtime} on {self.samples}")
        lines.append(f"  parity {'OK' if self.ok else 'FAILED'}: {self.criterion}")
        if self.metadata_path is not None:
            where = f"{self.metadata_path}" + (" and the file's metadata_props" if self.format == "onnx" else "")
            lines.append(f"  class names and normalisation in {where}")
            lines.append(f"  input preprocessing: {self.metadata['input_preprocessing']}")
        return "\n".join(lines)

    __str__ = summary


def _shape(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


# quantize -> ((rtol, atol) of every output's max |difference| <= rtol * max |Keras output| + atol,
# least top-1 agreement).
TOLERANCES = {None: ((1e-4, 1e-6), None), "float16": ((1e-2, 1e-4), None), "dynamic": (None, 0.9),
              "int8": (None, 0.9)}
# A float32 file may also differ from Keras by ROUNDING_FACTOR times Keras' own float32 rounding
# effect on the same inputs (:func:`rounding_effect`): how far inputs moved by one float32 unit
# in the last place (a relative 2**-23, random signs) move the outputs. That effect grows with
# depth and with the outputs' scale (a deep ABN or ImageNet ResNet differs from its correct ONNX
# file by more than a fixed 1e-4), and it is the size of what two float32 implementations of one
# network (Keras and onnxruntime, LiteRT) may differ by; a file with a wrong weight differs by far
# more (tests/test_export.py checks both directions on a model scaled up 10,000 times).
ROUNDING_STEP = 2.0**-23
ROUNDING_FACTOR = 10


def rounding_effect(net, x, batch_size=32):
    """How far float32 rounding moves ``net``'s outputs on inputs ``x``: the largest change of
    each output when every input value is moved by a relative :data:`ROUNDING_STEP` (one unit in
    the last place of float32) with a random sign (seeded). Returns ``{output name: change}``."""
    signs = np.random.default_rng(0).choice(np.array([-1.0, 1.0], "float32"), np.shape(x))
    moved = (np.asarray(x, "float32") * (1 + ROUNDING_STEP * signs)).astype("float32")
    expected, shifted = run(net, x, batch_size), run(net, moved, batch_size)
    return {name: float(np.max(np.abs(shifted[name] - value))) for name, value in expected.items()}


def _check_arguments(model, format, quantize, representative_images, batch_size):
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "Export needs the TensorFlow backend (KERAS_BACKEND=tensorflow); the backend is "
            f"{keras.backend.backend()!r}."
        )
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be None, 'float16', 'dynamic' or 'int8'; got {quantize!r}.")
    if quantize and format != "tflite":
        raise ValueError(f"Quantization is a TFLite option; {format} files are exported in float32.")
    if quantize == "int8" and representative_images is None:
        raise ValueError(
            "Full int8 quantization calibrates on a representative data set: pass "
            "representative_images (a folder of your images, or an array of model inputs)."
        )
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (dynamic) or a positive integer, got {batch_size!r}.")
    if len(model.inputs) != 1:
        raise ValueError(f"Export takes models with one image input; {model.name} has {len(model.inputs)}.")
    if keras.backend.standardize_dtype(model.inputs[0].dtype) != "float32" or model.dtype_policy.name != "float32":
        raise ValueError(f"Export needs a float32 model; {model.name} uses {model.dtype_policy.name}.")


def _input_preparation(normalization, include_preprocessing):
    """(pixels 0..255 -> the file's inputs, those inputs in words) for the parity check."""
    if include_preprocessing:
        return (lambda pixels: np.asarray(pixels, "float32")), "fed raw: the file normalises them"
    if normalization is not None:
        return (lambda pixels: preprocess(pixels, normalization)), "normalised with the weights' mean / std"
    return preprocess, "scaled to [0, 1]: no normalisation recorded"


def _sample_inputs(image_shape, representative_images, num_samples, max_calibration, calibrate, prepare, what):
    """(calibration inputs or None, parity inputs, words saying what they are).

    Without representative images the check feeds random images (uniform pixels 0-255) prepared
    as the file's inputs are (``prepare``: normalised with the weights' statistics, or raw when
    the file normalises them), so they lie where real inputs do. With ``calibrate``, up to
    ``max_calibration`` of the images (in a fixed random order) calibrate int8 and the check runs
    on the others, or on the same ones when none are left.
    """
    if representative_images is None:
        pixels = np.random.default_rng(0).integers(0, 256, (num_samples, *image_shape))
        return None, prepare(pixels), f"{num_samples} random images (uniform pixels 0-255, {what})"
    if isinstance(representative_images, np.ndarray):
        x, source = representative_images.astype("float32"), "given inputs,"
        if x.shape[1:] != tuple(image_shape):
            raise ValueError(f"representative_images have shape {x.shape}; the model takes (n, *{image_shape}).")
    else:
        pixels, read, failed = read_images(representative_images, image_shape[:2], image_shape[2])
        if not read:
            reasons = f" ({failed[0][1]})" if failed else ""
            raise ValueError(f"No readable images in {representative_images}{reasons}.")
        where = representative_images if isinstance(representative_images, (str, os.PathLike)) else "the given files"
        skipped = f", {len(failed)} unreadable file(s) skipped" if failed else ""
        x, source = prepare(pixels), f"images from {where}{skipped} ({what}),"
    if len(x) == 0:
        raise ValueError("representative_images is empty.")
    order = np.random.default_rng(0).permutation(len(x))
    if not calibrate:
        return None, x[order[:num_samples]], f"{min(num_samples, len(x))} {source.rstrip(',')}"
    calibration = x[order[:max_calibration]]
    held_out = x[order[max_calibration:]][:num_samples]
    if len(held_out):
        return calibration, held_out, f"{len(held_out)} {source} not used for calibration"
    return calibration, calibration[:num_samples], f"{min(num_samples, len(x))} {source} also used for calibration"


def export_metadata(model, format, quantize, input_name, outputs, class_names, normalization,
                    include_preprocessing):
    """What a deploying user needs besides the graph: the dict written beside every export
    (``<output>.json``) and into an ONNX file's ``metadata_props`` (each value JSON-encoded).

    Keys: ``model``, ``format``, ``quantize``, ``input`` (its name), ``outputs`` (names, in the
    model's order), ``class_names`` (label order, or None), ``preprocessing`` (the normalisation
    as the training records write it, ``{"scale": 255, "mean": [...], "std": [...]}``, or None),
    ``preprocessing_included`` (True: the file takes RGB pixels in [0, 255]) and
    ``input_preprocessing`` (the same in words).
    """
    if include_preprocessing:
        words = ("none: the file takes RGB pixels in [0, 255] (float32); (x / 255 - mean) / std with the "
                 "mean and std under 'preprocessing' is built in")
    elif normalization is not None:
        words = "(x / 255 - mean) / std on RGB pixels x in [0, 255], with the mean and std under 'preprocessing'"
    else:
        words = "x / 255 on RGB pixels x in [0, 255] (no normalisation recorded: a randomly initialised model)"
    return {
        "model": model.name, "format": format, "quantize": quantize, "input": input_name,
        "outputs": list(outputs), "class_names": list(class_names) if class_names else None,
        "preprocessing": normalization.to_dict() if normalization is not None else None,
        "preprocessing_included": bool(include_preprocessing), "input_preprocessing": words,
    }


def metadata_path(path):
    """The JSON file beside an export: ``model.onnx`` -> ``model.onnx.json`` (a SavedModel
    folder ``saved`` -> ``saved.json``)."""
    path = Path(path)
    return path.with_name(path.name + METADATA_SUFFIX)


def export_model(
    model,
    path,
    format,
    *,
    quantize=None,
    representative_images=None,
    batch_size=None,
    outputs=(),
    num_samples=16,
    max_calibration_images=100,
    normalization=None,
    class_names=None,
    include_preprocessing=False,
):
    """Write ``model`` as a SavedModel, TFLite or ONNX file and check it against Keras.

    The file's input is the model's input (name and shape); its outputs are the model's own,
    named after its output layer (``predictions`` for registry models), plus any layer outputs
    that ``outputs`` selects, named after their layers. After writing, the file runs in its
    own runtime on sample inputs (the representative images when given, else random images
    prepared as real inputs are: normalised with ``normalization``, or raw pixels when it is
    built in) and the report gives the largest difference from Keras per output. The class
    names and the normalisation go into ``<output>.json`` beside the file (and an ONNX file's
    ``metadata_props``): see :func:`export_metadata`. Float32 files must be within 1e-4 of
    each output's scale (its largest magnitude) of Keras, or within 10 times Keras' own float32
    rounding effect if that is larger (deep networks); float16 files within 1e-2 of the scale
    (:func:`compare`); dynamic-range and int8 files must agree with Keras on the top class of
    90% of the samples (or, without class scores, stay within 10% of the output's range).

    Args:
        model: a functional (or built Sequential) ``keras.Model`` with one image input.
        path: the file to write (a folder for "savedmodel").
        format: "savedmodel", "tflite" or "onnx".
        quantize: TFLite only: None (float32), "float16" (float16 weights), "dynamic" (int8
            weights, float activations) or "int8" (int8 weights and activations, calibrated on
            ``representative_images``; the input and output stay float32). Defaults to None.
        representative_images: a folder or list of image files (read, resized to the model's
            input and preprocessed by ``keras_attn_zoo.images.preprocess``), or an array of
            model inputs. Needed for "int8"; else used as the check's inputs. Defaults to None.
        batch_size: a fixed batch size (1 for mobile), or None for a dynamic batch. Defaults
            to None.
        outputs: extra outputs, as layer names with optional wildcards and ``:index`` for
            layers with several outputs, e.g. ``["*_fa:1"]`` for every FA gate. Defaults to none.
        num_samples: inputs for the parity check. Defaults to 16.
        max_calibration_images: at most this many images calibrate int8. Defaults to 100.
        normalization: the weights' recorded normalisation
            (``registry.load_for_inference(...).normalization``), for the check's inputs and
            the metadata, or None (a randomly initialised model: inputs scaled to [0, 1]).
            Defaults to None.
        class_names: the class names in label order, for the metadata. Defaults to None.
        include_preprocessing: build ``normalization`` into the file, so that it takes RGB
            pixels in [0, 255] (float32) as its input ``pixels``, as keras.applications'
            ``include_preprocessing`` does; representative images are then fed raw. Defaults
            to False.

    Returns:
        An :class:`ExportReport`; ``report.ok`` says whether the file passed its check.

    Raises:
        ValueError: for bad arguments, a model TFLite cannot express with built-in ops, a
            backend other than TensorFlow, or an output folder that is not writable.
    """
    _check_arguments(model, format, quantize, representative_images, batch_size)
    if include_preprocessing and normalization is None:
        raise ValueError(f"include_preprocessing builds the weights' normalisation into the file, and none is "
                         f"known for {model.name}: pass normalization= (the mean / std it was trained with).")
    classes = model.outputs[0].shape[-1]
    if class_names is not None and len(class_names) != classes:
        raise ValueError(f"{len(class_names)} class names were given; {model.name} has {classes} classes.")
    _check_writable(Path(path), format)
    with _quiet_tensorflow():
        return _export(model, Path(path), format, quantize, representative_images, batch_size,
                       outputs, num_samples, max_calibration_images, normalization, class_names,
                       include_preprocessing)


def _check_writable(path, format):
    """Before any work: the folder the export goes into exists (it is made) and is writable;
    otherwise a ``ValueError`` that names it (TensorFlow's own error is a long traceback)."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"Cannot write the {format} export {path}: the folder {folder} is not writable "
                         f"({e.strerror or e}). Choose another output, or make the folder writable.") from e


@contextlib.contextmanager
def _quiet_tensorflow():
    """TensorFlow's Python warnings (deprecations inside tf2onnx, retracing of Keras' grouped
    convolutions) say nothing a user can act on; errors still show."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _export(model, path, format, quantize, representative_images, batch_size, outputs,
            num_samples, max_calibration_images, normalization, class_names, include_preprocessing):
    image_shape = model_image_size(model)
    net = with_outputs(model, outputs)
    order = list(net.output)  # the model's own outputs first, in its order, then the selected ones
    input_name = model.inputs[0].name
    if include_preprocessing:
        pixels = keras.Input(image_shape, name=INCLUDED_INPUT_NAME)
        net = keras.Model(pixels, net(normalization_layer(normalization)(pixels)), name=model.name)
        input_name = INCLUDED_INPUT_NAME
    prepare, what = _input_preparation(normalization, include_preprocessing)
    calibration, x, samples = _sample_inputs(
        image_shape, representative_images, num_samples, max_calibration_images, quantize == "int8",
        prepare, what,
    )
    if batch_size is not None:
        x = np.resize(x, (max(batch_size, len(x) // batch_size * batch_size), *image_shape))
    spec = keras.InputSpec(shape=(batch_size, *image_shape), dtype="float32", name=input_name)
    metadata = export_metadata(model, format, quantize, input_name, order, class_names, normalization,
                               include_preprocessing)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "savedmodel":
        _write_saved_model(net, path, spec)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            saved_model = Path(tmp) / "savedmodel"
            _write_saved_model(net, saved_model, spec)
            if format == "onnx":
                _write_onnx(saved_model, path, batch_size, order, metadata)
            else:
                path.write_bytes(_named_tflite(_tflite_bytes(saved_model, quantize, calibration), order))
    sidecar = metadata_path(path)
    sidecar.write_text(json.dumps(metadata, indent=2) + "\n")
    rounding = rounding_effect(net, x) if TOLERANCES[quantize][0] is not None else {}
    report = _report(path, format, quantize, input_name, run(net, x),
                     parity.run_file(path, format, input_name, x, batch_size), samples, order, rounding)
    report.metadata, report.metadata_path = metadata, sidecar
    return report


def _write_saved_model(net, path, spec):
    """Export into a temporary folder beside ``path``, then put it in place: a failed export
    leaves an earlier SavedModel at ``path`` as it was."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        net.export(str(tmp), format="tf_saved_model", input_signature=[spec], verbose=False)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_onnx(saved_model, path, batch_size, order, metadata):
    """SavedModel -> ONNX with tf2onnx, after letting TensorFlow inline every function.

    Keras runs grouped convolutions (ResNeXt) on TensorFlow as nested XLA-compiled functions
    marked ``_noinline``, which tf2onnx would leave as ``StatefulPartitionedCall`` nodes that
    onnxruntime cannot run; without those marks Grappler inlines them like any other function.
    """
    from tf2onnx import convert, tf_loader

    graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
        str(saved_model), None, None, tag="serve", signatures=["serving_default"],
        return_tensors_to_rename=True,
    )
    functions = list(graph_def.library.function)
    for proto in [*graph_def.node, *functions, *(n for f in functions for n in f.node_def)]:
        for mark in ("_noinline", "_XlaMustCompile"):
            if mark in proto.attr:
                del proto.attr[mark]
    with _tf2onnx_without_copies():  # from_graph_def runs Grappler, which inlines them now
        model, _ = convert.from_graph_def(
            graph_def, input_names=inputs, output_names=outputs, tensors_to_rename=renames
        )
    if batch_size is None:
        for value in [*model.graph.input, *model.graph.output]:
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    graph_outputs = sorted(model.graph.output, key=lambda value: order.index(value.name))  # tf2onnx sorts by name
    del model.graph.output[:]
    model.graph.output.extend(graph_outputs)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    path.write_bytes(model.SerializeToString())


@contextlib.contextmanager
def _tf2onnx_without_copies():
    """tf2onnx's graph optimizers without their copies of every weight, which made the memory of
    an ONNX export grow with the model many times over (measured in docs/benchmarks.md, "Memory of
    an ONNX export").

    Two copies per optimizer pass (a dozen optimizers, run until none changes the graph): it
    deep-copies the whole graph before each optimizer, to restore it if the optimizer raises
    (``TF2ONNX_CATCH_ERRORS=FALSE`` turns that off: an optimizer's error is then an error, not a
    silently unoptimized file); and after each it rewrites every node's protobuf in place,
    ``del node.attribute[:]`` then ``extend``, which under the upb protobuf runtime keeps the old
    attributes (the weights of every Const node) in the message's arena until the message is
    freed. Here each rewrite starts from a fresh ``NodeProto`` instead, so the old one is freed.
    """
    from onnx import NodeProto
    from tf2onnx import constants
    from tf2onnx.graph import Node

    rewrite = Node.update_proto

    def update_proto(self, external_tensor_storage=None):
        old = self._op
        self._op = NodeProto(name=old.name, op_type=old.op_type, domain=old.domain, doc_string=old.doc_string)
        rewrite(self, external_tensor_storage)

    saved = os.environ.get(constants.ENV_TF2ONNX_CATCH_ERRORS)
    os.environ[constants.ENV_TF2ONNX_CATCH_ERRORS] = "FALSE"
    Node.update_proto = update_proto
    try:
        yield
    finally:
        Node.update_proto = rewrite
        if saved is None:
            os.environ.pop(constants.ENV_TF2ONNX_CATCH_ERRORS, None)
        else:
            os.environ[constants.ENV_TF2ONNX_CATCH_ERRORS] = saved


def _tflite_bytes(saved_model, quantize, calibration):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        return converter.convert()
    except Exception as e:  # the converter raises its own ConverterError with the MLIR log
        needed = sorted(set(re.findall(r"(?:TF Select ops|Custom ops): ([^\n]+)", str(e))))
        if not needed:
            raise
        raise ValueError(
            f"The model needs operations that are not TFLite built-ins ({'; '.join(needed)}). "
            "Only built-in ops are allowed, so that the file runs in any TFLite runtime without "
            "the TensorFlow (Flex) kernels: express those operations with others in the model."
        ) from e


def _named_tflite(content, order):
    """A TFLite flatbuffer whose signature tensors carry the signature's names (the model's: the
    converter leaves ``serving_default_input:0`` and ``StatefulPartitionedCall_1:k``), with the
    graph's outputs in the model's order."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    for signature in model.signatureDefs:
        subgraph = model.subgraphs[signature.subgraphIndex]
        for entry in [*signature.inputs, *signature.outputs]:
            subgraph.tensors[entry.tensorIndex].name = entry.name
        rank = {entry.tensorIndex: order.index(entry.name.decode()) for entry in signature.outputs
                if entry.name.decode() in order}
        subgraph.outputs = sorted(subgraph.outputs, key=lambda i: rank.get(int(i), len(order)))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def compare(expected, got, quantize=None, rounding=None):
    """How closely a file's outputs ``got`` reproduce Keras' ``expected`` (dicts of arrays by
    output name, ``expected`` in the model's order), by the test of :data:`TOLERANCES`.

    Float32 and float16 files: every output's largest difference at most ``rtol`` times that
    output's largest magnitude plus ``atol``, or :data:`ROUNDING_FACTOR` times Keras' own
    rounding effect on it (``rounding``, from :func:`rounding_effect`), whichever is larger.
    Dynamic-range and int8 files: top-1 agreement on the class scores (the first output), or
    without class scores every output within 10% of its range.

    Returns:
        ``(max_abs_diff by name, allowed difference by name (empty for dynamic / int8), top-1
        agreement or None, the criterion in words, ok)``.
    """
    missing = sorted(set(expected) - set(got))
    if missing:
        raise ValueError(f"The exported file lacks the outputs {missing}; it has {sorted(got)}.")
    rounding = rounding or {}
    diffs = {name: float(np.max(np.abs(got[name] - value))) for name, value in expected.items()}
    first = next(iter(expected))
    scores = expected[first]
    top1 = None
    if scores.ndim == 2 and scores.shape[1] > 1:
        top1 = float(np.mean(np.argmax(got[first], -1) == np.argmax(scores, -1)))
    bound, agreement = TOLERANCES[quantize]
    allowed = {}
    if bound is not None:
        rtol, atol = bound
        allowed = {name: max(rtol * float(np.max(np.abs(value))) + atol, ROUNDING_FACTOR * rounding.get(name, 0.0))
                   for name, value in expected.items()}
        ok = all(diffs[name] <= allowed[name] for name in expected)
        criterion = (f"max |diff| <= {rtol:g} x max |Keras output| + {atol:g}, or {ROUNDING_FACTOR} x Keras' own "
                     "float32 rounding effect if larger, on every output")
    elif top1 is not None:
        ok = top1 >= agreement
        criterion = f"top-1 agreement >= {agreement:.0%}"
    else:
        ok = all(diffs[n] <= 0.1 * float(np.ptp(v) or 1.0) for n, v in expected.items())
        criterion = "max |diff| <= 10% of each output's range"
    return diffs, allowed, top1, criterion, ok


def _report(path, format, quantize, input_name, expected, file_run, samples, order, rounding):
    expected = {name: expected[name] for name in order}
    diffs, allowed, top1, criterion, ok = compare(expected, file_run.outputs, quantize, rounding)
    size = (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    )
    return ExportReport(
        path=path,
        format=format,
        quantize=quantize,
        input_name=input_name,
        input_shape=file_run.input_shape,
        outputs={name: file_run.output_shapes[name] for name in expected},
        size_bytes=size,
        runtime=file_run.runtime,
        samples=samples,
        max_abs_diff=diffs,
        allowed_diff=allowed,
        top1_agreement=top1,
        criterion=criterion,
        ok=ok,
        ops=file_run.ops,
    )
