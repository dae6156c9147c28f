"""FA-ResNet-20 exports to ONNX and TFLite and matches Keras in each file's own runtime.

Each conversion runs in its own process (the TF converter leaks memory across conversions).
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras_attn_zoo as zoo
from helpers import sample_images

CONVERT = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import keras_attn_zoo  # registers the layers for deserialization
    model = keras.saving.load_model(sys.argv[1])
    model(keras.ops.zeros((1, *model.input_shape[1:])))  # ONNX export needs a called model
    model.export(sys.argv[2], format=sys.argv[3], verbose=False)
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    model = zoo.load("fa_se_resnet20")
    x = sample_images(3)
    path = tmp / "fa_se_resnet20.keras"
    model.save(path)
    return tmp, path, x, model.predict(x, verbose=0)


def convert(path, out, fmt):
    proc = subprocess.run(
        [sys.executable, "-c", CONVERT, str(path), str(out), fmt], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_onnx_matches_keras(saved):
    import onnxruntime

    tmp, path, x, expected = saved
    out = tmp / "model.onnx"
    convert(path, out, "onnx")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [32, 32, 3]
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_tflite_matches_keras_with_builtin_ops_only(saved):
    from ai_edge_litert.interpreter import Interpreter

    tmp, path, x, expected = saved
    out = tmp / "model.tflite"
    convert(path, out, "litert")
    interpreter = Interpreter(model_path=str(out))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not [op for op in ops if op.lower().startswith("flex")], ops
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, atol=1e-5)
