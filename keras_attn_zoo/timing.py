"""Timing calls, the CPU's own float32 peak, and exported files in their runtimes, without Keras.

Everything here imports NumPy only (onnxruntime, ai-edge-litert and PyTorch when a function
needs them), so that a fresh process timing an ONNX or TFLite file starts in a fraction of a
second and its timings carry no Keras or TensorFlow in memory.

>>> seconds = time_calls(lambda: sum(range(1000)), repeats=5, warmup=1)
>>> len(seconds)
5
"""

import importlib
import os
import time

import numpy as np


def check_count(name, value):
    """``value`` if it is a positive integer (not a bool), else a ValueError naming ``name``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def time_calls(call, repeats=10, warmup=2, max_seconds=None):
    """Wall seconds of ``repeats`` calls of ``call`` after ``warmup`` untimed ones.

    Args:
        call: a function of no arguments; it must return only when its work is done (e.g. its
            result copied to the host).
        repeats: timed calls. Defaults to 10.
        warmup: untimed calls first (tracing, compilation, first-call allocation). Defaults to 2.
        max_seconds: stop timing once the timed calls took this long (at least one call is
            timed). Defaults to no limit.

    Returns:
        A list of seconds, one per timed call.
    """
    check_count("repeats", repeats)
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}.")
    for _ in range(warmup):
        call()
    times = []
    while len(times) < repeats:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        if max_seconds is not None and sum(times) >= max_seconds:
            break
    return times


def random_inputs(batch, image_shape, seed=0):
    """Seeded standard-normal float32 images ``(batch, *image_shape)`` (what a normalised image
    looks like to a network; speed does not depend on the values)."""
    return np.random.default_rng(seed).standard_normal((check_count("batch", batch), *image_shape)).astype("float32")


def _require(module, package):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"Timing this system needs {package}: pip install 'keras_attn_zoo[test]'.") from e


def _matmul_calls(a, b, threads=None):
    """``{library: a function computing a @ b}`` for every installed library with its own
    float32 GEMM: NumPy's BLAS, onnxruntime's MLAS, TensorFlow's (oneDNN / Eigen), PyTorch's;
    with ``threads`` threads where the library takes a number (NumPy's BLAS reads it from
    ``OPENBLAS_NUM_THREADS`` at start)."""
    calls = {f"numpy {np.__version__}": lambda: a @ b}
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        ort = None
    if ort is not None:
        n, k, m = a.shape[0], a.shape[1], b.shape[1]
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul",
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, k]),
             helper.make_tensor_value_info("B", TensorProto.FLOAT, [k, m])],
            [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, m])])
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                       options, providers=["CPUExecutionProvider"])
        calls[f"onnxruntime {ort.__version__}"] = lambda: session.run(None, {"A": a, "B": b})
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
    except ImportError:
        tf = None
    if tf is not None:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        ta, tb = tf.constant(a), tf.constant(b)
        calls[f"tensorflow {tf.__version__}"] = lambda: tf.matmul(ta, tb).numpy()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        if threads:
            torch.set_num_threads(threads)
        pa, pb = torch.from_numpy(a), torch.from_numpy(b)
        calls[f"torch {torch.__version__.split('+')[0]}"] = lambda: torch.mm(pa, pb)
    return calls


def matmul_peak(size=2048, repeats=5, threads=None):
    """The CPU's float32 peak as this machine reaches it: GFLOP/s of the fastest of ``repeats``
    ``size x size`` matrix products (``2 * size**3`` flops each) in each installed library
    (NumPy, onnxruntime, TensorFlow, PyTorch: their GEMMs differ, e.g. in whether they use
    AVX-512 on this CPU), on ``threads`` threads (default: as many as each library uses by
    default, every core).

    Returns:
        ``{"gflops": the best of them, "size": size, "libraries": {library: GFLOP/s}}``.
    """
    check_count("size", size)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype("float32") for _ in range(2))
    flops = 2 * size ** 3
    rates = {name: round(flops / min(time_calls(call, repeats, 1)) / 1e9, 1)
             for name, call in _matmul_calls(a, b, threads).items()}
    return {"gflops": max(rates.values()), "size": size, "libraries": rates}


def time_onnx(path, batches, image_shape, repeats=10, warmup=2, max_seconds=None, threads=None):
    """``{batch: [seconds per call]}`` of an ONNX file in onnxruntime (CPU, ``threads`` intra-op
    threads, default its own choice), fed seeded inputs; plus the runtime in words."""
    ort = _require("onnxruntime", "onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    times = {}
    for batch in batches:
        feed = {name: random_inputs(batch, image_shape)}
        times[batch] = time_calls(lambda: session.run(None, feed), repeats, warmup, max_seconds)
    return times, f"onnxruntime {ort.__version__} (CPUExecutionProvider, {threads or 'default'} threads)"


def time_tflite(path, batches, image_shape, repeats=10, warmup=2, max_seconds=None, threads=None):
    """``{batch: [seconds per call]}`` of a TFLite file in ai-edge-litert's interpreter with
    ``threads`` threads (default: every core of this process), the input resized to each batch;
    plus the runtime in words."""
    litert = _require("ai_edge_litert.interpreter", "ai-edge-litert")
    threads = threads or len(os.sched_getaffinity(0))
    interpreter = litert.Interpreter(model_path=str(path), num_threads=threads)
    (detail,) = interpreter.get_input_details()
    times = {}
    for batch in batches:
        x = random_inputs(batch, image_shape)
        interpreter.resize_tensor_input(detail["index"], x.shape)
        interpreter.allocate_tensors()
        outputs = [o["index"] for o in interpreter.get_output_details()]

        def call():
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
            return [interpreter.get_tensor(i) for i in outputs]

        times[batch] = time_calls(call, repeats, warmup, max_seconds)
    return times, f"ai-edge-litert interpreter ({threads} threads)"
