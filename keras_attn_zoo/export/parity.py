"""Running an exported file in its own runtime: TensorFlow (SavedModel), ai-edge-litert
(TFLite), onnxruntime (ONNX). Outputs come back by name, as Keras names them, and shapes as
the file declares them (None for a dynamic size)."""

import dataclasses
import importlib

import numpy as np


@dataclasses.dataclass
class FileRun:
    """An exported file's outputs on some inputs, and what the file declares.

    Attributes:
        outputs: output name -> array ``(n, ...)``.
        input_shape: the input shape in the file (None for a dynamic size).
        output_shapes: output name -> shape in the file.
        runtime: the runtime that ran it.
        ops: the operators of a TFLite file (empty for other formats).
    """

    outputs: dict
    input_shape: tuple
    output_shapes: dict
    runtime: str
    ops: tuple = ()


def _require(module, package):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"Checking the exported file needs {package}: pip install 'keras_attn_zoo[export]'."
        ) from e


def _dims(shape):
    return tuple(int(d) if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape)


def run_file(path, format, input_name, x, batch_size=None):
    """Run an exported model on inputs ``x`` in the format's own runtime.

    Args:
        path: the exported file (or SavedModel folder).
        format: "savedmodel", "tflite" or "onnx".
        input_name: the name of the model's input.
        x: float32 inputs ``(n, H, W, C)``; with a fixed ``batch_size``, n is a multiple of it.
        batch_size: the file's fixed batch size, or None for a dynamic batch. Defaults to None.

    Returns:
        A :class:`FileRun`.
    """
    step = batch_size or len(x)
    batches = [x[i:i + step] for i in range(0, len(x), step)]
    if format == "savedmodel":
        tf = _require("tensorflow", "tensorflow")
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        results = [{k: v.numpy() for k, v in signature(**{input_name: tf.constant(b)}).items()} for b in batches]
        input_shape = _dims(signature.structured_input_signature[1][input_name].shape.as_list())
        output_shapes = {k: _dims(v.shape.as_list()) for k, v in signature.structured_outputs.items()}
        run = FileRun({}, input_shape, output_shapes, f"TensorFlow {tf.__version__} (tf.saved_model.load)")
    elif format == "onnx":
        ort = _require("onnxruntime", "onnxruntime")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = [dict(zip(names, session.run(names, {input_name: b}))) for b in batches]
        (inp,) = [i for i in session.get_inputs() if i.name == input_name]
        output_shapes = {o.name: _dims(o.shape) for o in session.get_outputs()}
        run = FileRun({}, _dims(inp.shape), output_shapes, f"onnxruntime {ort.__version__}")
    else:
        litert = _require("ai_edge_litert.interpreter", "ai-edge-litert")
        interpreter = litert.Interpreter(model_path=str(path))
        runner = interpreter.get_signature_runner()
        results = [runner(**{input_name: b}) for b in batches]
        ops = tuple(sorted({op["op_name"] for op in interpreter._get_ops_details()} - {"DELEGATE"}))
        input_shape = _dims(runner.get_input_details()[input_name]["shape_signature"])
        output_shapes = {k: _dims(v["shape_signature"]) for k, v in runner.get_output_details().items()}
        run = FileRun({}, input_shape, output_shapes, "ai-edge-litert (LiteRT interpreter)", ops)
    run.outputs = {name: np.concatenate([r[name] for r in results]) for name in results[0]}
    return run
