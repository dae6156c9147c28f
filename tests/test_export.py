"""Export to every format and quantization, one small model of each family; every file is run
in its own runtime here and compared with Keras predictions made here.

Each conversion runs in its own process (the TF converter leaks memory across conversions),
through ``export_model`` or the CLI, and returns the exporter's own report. The families:
FA-SE-ResNet-20 (every format and quantization), FA-VGG-19-BN, a one-block-per-stage
FA-SE-ResNeXt (grouped convolutions); Inception-v4 (40M parameters, over a minute per
conversion) is in the slow tier.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import keras
import keras_attn_zoo as zoo
from helpers import sample_images
from keras_attn_zoo.explain import fa_gates, fa_layers
from keras_attn_zoo.export import export_model
from keras_attn_zoo.images import preprocess, read_images
from keras_attn_zoo.models import resnext_cifar

EXPORT = textwrap.dedent(
    """
    import dataclasses, json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import keras_attn_zoo  # registers the layers for deserialization
    from keras_attn_zoo.export import export_model
    model = keras.saving.load_model(sys.argv[1])
    report = export_model(model, sys.argv[2], **json.loads(sys.argv[3]))
    print(json.dumps(dataclasses.asdict(report), default=str))
    """
)

def export_in_subprocess(model_file, out, **kwargs):
    """``export_model`` in a fresh process; returns its report as a dict."""
    proc = subprocess.run(
        [sys.executable, "-c", EXPORT, str(model_file), str(out), json.dumps(kwargs)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().split("\n")[-1])


def calibrate_batchnorm(model, images):
    """Set every BatchNorm's moving statistics to those of ``images``, so that an untrained
    network's class scores depend on the image (with the initial statistics one class wins
    everywhere, and agreeing on the top class would mean nothing)."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = 0.0
    model(images, training=True)
    for layer in layers:
        layer.momentum = 0.99


@pytest.fixture(scope="module")
def fa_se(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(0)
    model = zoo.load("fa_se_resnet20")
    model.save(tmp / "fa_se_resnet20.keras")
    return tmp, model


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, cifar_jpegs):
    """FA-SE-ResNet-20 with BatchNorm statistics of real images, and 150 real test JPEGs."""
    tmp = tmp_path_factory.mktemp("quantized")
    keras.utils.set_random_seed(0)
    model = zoo.load("fa_se_resnet20")
    pixels, read, _ = read_images(cifar_jpegs, (32, 32))
    assert len(read) == 150
    calibrate_batchnorm(model, preprocess(pixels[::3]))
    model.save(tmp / "calibrated.keras")
    return tmp, model


def onnx_run(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return session, dict(zip(names, session.run(names, {"input": x})))


def tflite_run(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return interpreter, interpreter.get_signature_runner()(input=x)


def test_cli_onnx_with_a_fixed_batch_of_one_and_named_fa_gates(fa_se):
    tmp, model = fa_se
    gates = [f"{layer.name}_1" for layer in fa_layers(model)]  # the gate k of each FA layer
    assert len(gates) == 8
    out = tmp / "mobile.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "keras_attn_zoo.cli", "export", str(tmp / "fa_se_resnet20.keras"),
         "--format", "onnx", "--batch-size", "1", "--outputs", "*_fa:1", "-o", str(out),
         "--mean", "0", "0", "0", "--std", "1", "1", "1"],  # a plain .keras file records no normalisation
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "randomly initialised" not in proc.stderr  # a .keras file carries its weights
    assert "input  input: (1, 32, 32, 3)" in proc.stdout and "parity OK" in proc.stdout
    printed = [line.split() for line in proc.stdout.split("\n") if line.startswith("  output")]
    assert [words[1].rstrip(":") for words in printed] == ["predictions", *gates]
    assert all(float(words[words.index("Keras") + 1]) < 1e-5 for words in printed)  # "... from Keras 5.96e-08 ..."

    x = sample_images(1, seed=7)
    session, got = onnx_run(out, x)
    assert session.get_inputs()[0].shape == [1, 32, 32, 3]
    assert sorted(got) == sorted(["predictions", *gates])
    np.testing.assert_allclose(got["predictions"], model.predict(x, verbose=0), atol=1e-5)
    for name, k in fa_gates(model, x).items():
        np.testing.assert_allclose(got[f"{name}_1"][:, 0], k, atol=1e-5)


def test_tflite_float32_uses_builtin_ops_only(fa_se):
    tmp, model = fa_se
    out = tmp / "model.tflite"
    report = export_in_subprocess(tmp / "fa_se_resnet20.keras", out, format="tflite", outputs=["stage3_fa:1"])
    assert report["ok"] and max(report["max_abs_diff"].values()) < 1e-5
    assert not [op for op in report["ops"] if op.lower().startswith("flex")]
    assert {"CONV_2D", "MEAN", "LOGISTIC", "SOFTMAX"} <= set(report["ops"])

    x = sample_images(4, seed=1)
    interpreter, got = tflite_run(out, x)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not [op for op in ops if op.lower().startswith("flex")], ops
    assert sorted(got) == ["predictions", "stage3_fa_1"]
    np.testing.assert_allclose(got["predictions"], model.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(got["stage3_fa_1"][:, 0], fa_gates(model, x)["stage3_fa"], atol=1e-5)


def test_savedmodel_serves_named_outputs(fa_se):
    import tensorflow as tf

    tmp, model = fa_se
    out = tmp / "saved"
    report = export_in_subprocess(tmp / "fa_se_resnet20.keras", out, format="savedmodel")
    assert report["ok"] and report["max_abs_diff"]["predictions"] < 1e-5
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    x = sample_images(2, seed=3)
    got = serve(input=tf.constant(x))
    assert list(got) == ["predictions"]
    np.testing.assert_allclose(got["predictions"].numpy(), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("quantize", ["float16", "dynamic", "int8"])
def test_quantized_tflite_agrees_with_keras_on_real_images(calibrated, cifar_jpegs, quantize):
    """Calibrated on and checked against real CIFAR-10 JPEGs: 100 of the 150 calibrate int8, the
    other 50 are the check's inputs."""
    tmp, model = calibrated
    out = tmp / f"{quantize}.tflite"
    report = export_in_subprocess(
        tmp / "calibrated.keras", out, format="tflite", quantize=quantize,
        representative_images=str(cifar_jpegs), num_samples=50,
    )
    assert report["ok"], report
    assert report["samples"].startswith(f"50 images from {cifar_jpegs}")
    assert ("not used for calibration" in report["samples"]) == (quantize == "int8")

    pixels, _, _ = read_images(cifar_jpegs, (32, 32))
    x = preprocess(pixels)
    expected = model.predict(x, verbose=0)
    assert len(np.unique(expected.argmax(1))) >= 3  # agreement on a single class would mean little
    interpreter, got = tflite_run(out, x)
    agreement = np.mean(got["predictions"].argmax(1) == expected.argmax(1))
    assert agreement >= 0.9, agreement
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    kernels = [tensors[op["inputs"][1]]["dtype"] for op in convs]
    activation_types = {tensors[op["inputs"][0]]["dtype"] for op in convs}
    float32_bytes = 4 * model.count_params()
    if quantize == "float16":  # float16 weights, dequantized to float32 for the computation
        assert any(t["dtype"] == np.float16 for t in tensors.values()) and "DEQUANTIZE" in report["ops"]
        assert report["size_bytes"] < 0.6 * float32_bytes
        assert np.abs(got["predictions"] - expected).max() < 1e-2
    if quantize == "dynamic":  # int8 weights (but the smallest, under 1024 values), float32 activations
        assert kernels.count(np.int8) >= 0.8 * len(kernels) and activation_types == {np.float32}
        assert report["size_bytes"] < 0.4 * float32_bytes
    if quantize == "int8":  # int8 weights and activations, float32 in and out
        assert set(kernels) == {np.int8} and activation_types == {np.int8}
        assert {"QUANTIZE", "DEQUANTIZE"} <= set(report["ops"])
        assert report["size_bytes"] < 0.4 * float32_bytes


def test_int8_needs_images_and_quantization_is_tflite_only(fa_se):
    _, model = fa_se
    with pytest.raises(ValueError, match="representative data set"):
        export_model(model, "x.tflite", "tflite", quantize="int8")
    with pytest.raises(ValueError, match="Quantization is a TFLite option"):
        export_model(model, "x.onnx", "onnx", quantize="dynamic")
    with pytest.raises(ValueError, match="format must be one of savedmodel, tflite, onnx"):
        export_model(model, "x.pt", "torchscript")
    with pytest.raises(ValueError, match="batch_size must be None"):
        export_model(model, "x.onnx", "onnx", batch_size=0)
    with pytest.raises(ValueError, match="select one as stage3_fa:0"):
        export_model(model, "x.onnx", "onnx", outputs=["stage3_fa"])


def test_a_model_that_needs_flex_ops_fails_loudly(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import keras
        from keras_attn_zoo.export import export_model
        inputs = keras.Input((8, 8, 3), name="input")
        x = keras.layers.Lambda(lambda t: keras.ops.cumprod(t, axis=-1))(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(2, name="predictions")(x))
        try:
            export_model(model, sys.argv[1], "tflite")
        except ValueError as e:
            print(e)
        """
    )
    out = tmp_path / "flex.tflite"
    proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=600)
    assert "not TFLite built-ins (Cumprod)" in proc.stdout, proc.stderr[-3000:]
    assert not out.exists()


FAMILIES = [  # one small member of each family that fits the time budget; Inception-v4 is slow
    pytest.param(lambda: zoo.load("fa_vgg19_bn"), "tflite", id="fa_vgg19_bn-tflite"),
    # grouped convolutions: Keras' own ONNX export leaves them as calls onnxruntime rejects
    pytest.param(lambda: resnext_cifar(11, 4, 4, attention="fa_se"), "onnx", id="fa_se_resnext11_4x4d-onnx"),
    pytest.param(lambda: resnext_cifar(11, 4, 4, attention="fa_se"), "tflite", id="fa_se_resnext11_4x4d-tflite"),
    pytest.param(lambda: zoo.load("fa_inception_v4_small"), "tflite", id="fa_inception_v4_small-tflite",
                 marks=pytest.mark.slow),
    pytest.param(lambda: zoo.load("fa_inception_v4_small"), "onnx", id="fa_inception_v4_small-onnx",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("build,fmt", FAMILIES)
def test_every_family_exports_and_matches_keras(tmp_path, build, fmt):
    model = build()
    model.save(tmp_path / "model.keras")
    out = tmp_path / f"model.{fmt}"
    report = export_in_subprocess(tmp_path / "model.keras", out, format=fmt, num_samples=4)
    assert report["ok"] and report["max_abs_diff"]["predictions"] < 1e-5
    assert report["input_shape"] == [None, *model.input_shape[1:]]  # a dynamic batch by default
    for n in (1, 3):
        x = sample_images(n, model.input_shape[1:], seed=n)
        got = (onnx_run if fmt == "onnx" else tflite_run)(out, x)[1]["predictions"]
        np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


def test_export_into_a_read_only_folder_names_the_folder_and_leaves_it_as_it_was(tmp_path):
    """Root ignores file permissions; in a user namespace (``unshare --user``) it does not."""
    import os
    import shutil

    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("unshare") or subprocess.run(["unshare", "--user", "true"]).returncode:
            pytest.skip("running as root without user namespaces: a read-only folder cannot be made")
        prefix = ["unshare", "--user"]
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    folder.chmod(0o555)
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "keras_attn_zoo.cli", "export", "resnet20", "--format", "savedmodel",
             "-o", str(folder / "model")],
            capture_output=True, text=True, timeout=300,
        )
    finally:
        folder.chmod(0o755)
    assert result.returncode == 2, result.stderr[-2000:]
    assert (f"Cannot write the savedmodel export {folder / 'model'}: the folder {folder} is not writable "
            "(Permission denied)") in result.stderr
    assert "Traceback" not in result.stderr and sorted(os.listdir(folder)) == ["notes.txt"]


DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"  # three real CIFAR-10 test images


def _cli_export(*argv):
    proc = subprocess.run([sys.executable, "-m", "keras_attn_zoo.cli", "export", *map(str, argv)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_onnx_keeps_the_models_output_order_and_carries_class_names_and_normalisation(tmp_path):
    """ABN's outputs stay (predictions, abn_logits), not tf2onnx's sorted order; the class names
    and the normalisation of the published weights are in metadata_props and beside the file."""
    import onnxruntime

    from keras_attn_zoo.registry import load_for_inference

    out = tmp_path / "abn.onnx"
    printed = _cli_export("abn_resnet20", "--weights", "cifar10", "--format", "onnx", "-o", out)
    loaded = load_for_inference("abn_resnet20", "cifar10")
    assert f"class names and normalisation in {out}.json and the file's metadata_props" in printed
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["predictions", "abn_logits"]
    props = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert props == json.loads((tmp_path / "abn.onnx.json").read_text())
    assert props["class_names"] == list(loaded.class_names) and props["outputs"] == ["predictions", "abn_logits"]
    assert props["preprocessing"] == loaded.normalization.to_dict() and props["preprocessing_included"] is False
    pixels, _, _ = read_images(DOCS_IMAGES, (32, 32))
    got = session.run(["predictions"], {"input": preprocess(pixels, loaded.normalization)})[0]
    np.testing.assert_allclose(got, loaded.model.predict(preprocess(pixels, loaded.normalization), verbose=0),
                               atol=1e-5)


def test_tflite_with_the_normalisation_built_in_takes_raw_pixels_under_the_models_names(tmp_path):
    from keras_attn_zoo.registry import load_for_inference

    out = tmp_path / "abn.tflite"
    printed = _cli_export("abn_resnet20", "--weights", "cifar10", "--format", "tflite", "--include-preprocessing",
                          "-o", out)
    assert "input  pixels: (None, 32, 32, 3)" in printed and "parity OK" in printed
    assert "(uniform pixels 0-255, fed raw: the file normalises them)" in printed
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    assert [d["name"] for d in interpreter.get_input_details()] == ["pixels"]
    assert [d["name"] for d in interpreter.get_output_details()] == ["predictions", "abn_logits"]
    metadata = json.loads((tmp_path / "abn.tflite.json").read_text())
    assert metadata["preprocessing_included"] is True and metadata["input"] == "pixels"
    loaded = load_for_inference("abn_resnet20", "cifar10")
    pixels, _, _ = read_images(DOCS_IMAGES, (32, 32))
    got = interpreter.get_signature_runner()(pixels=pixels.astype("float32"))
    np.testing.assert_allclose(got["predictions"], loaded.model.predict(preprocess(pixels, loaded.normalization),
                                                                        verbose=0), atol=1e-5)


def test_the_check_feeds_images_prepared_as_real_inputs_are():
    """Without representative images: random images (uniform pixels 0-255) normalised with the
    weights' statistics, so each channel spans (0 - mean) / std ... (1 - mean) / std, not [0, 1]."""
    from keras_attn_zoo.export.exporter import _input_preparation, _sample_inputs
    from keras_attn_zoo.normalization import ChannelStats

    stats = ChannelStats((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    _, x, words = _sample_inputs((32, 32, 3), None, 16, 100, False, *_input_preparation(stats, False))
    assert x.shape == (16, 32, 32, 3) and words == "16 random images (uniform pixels 0-255, normalised with the weights' mean / std)"
    np.testing.assert_allclose(x.min((0, 1, 2)), (0 - np.array(stats.mean)) / stats.std, rtol=1e-5)
    np.testing.assert_allclose(x.max((0, 1, 2)), (1 - np.array(stats.mean)) / stats.std, rtol=1e-5)
    _, raw, _ = _sample_inputs((32, 32, 3), None, 16, 100, False, *_input_preparation(stats, True))
    assert raw.min() == 0 and raw.max() == 255
    np.testing.assert_allclose(preprocess(raw, stats), x, rtol=1e-6)
    with pytest.raises(ValueError, match="include_preprocessing builds the weights' normalisation into the file"):
        export_model(zoo.load("resnet20"), "x.onnx", "onnx", include_preprocessing=True)


def test_the_tolerance_follows_the_outputs_scale_and_still_catches_a_wrong_weight(tmp_path):
    """A correct file of a model whose logits are scaled up 10,000 times differs from Keras by
    more than a fixed 1e-4 and passes; the same file checked against the model with one weight
    changed (its layer's largest weight with its sign flipped: in the stem, in the last block, or
    in the classifier) fails."""
    from keras_attn_zoo.explain.outputs import run, with_outputs
    from keras_attn_zoo.export.exporter import compare, rounding_effect
    from keras_attn_zoo.export.parity import run_file

    model = zoo.load("fa_resnet20", classifier_activation=None)
    kernel, bias = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([kernel * 1e4, bias * 1e4])
    model.save(tmp_path / "scaled.keras")
    out = tmp_path / "scaled.onnx"
    report = export_in_subprocess(tmp_path / "scaled.keras", out, format="onnx")
    assert report["ok"] and report["max_abs_diff"]["predictions"] > 1e-4, report
    assert report["max_abs_diff"]["predictions"] <= report["allowed_diff"]["predictions"]

    x = preprocess(np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)))
    got = run_file(out, "onnx", "input", x).outputs
    net = with_outputs(model)
    assert compare(run(net, x), got, None, rounding_effect(net, x))[-1]
    for layer in ("stem_conv", "stage3_block3_1_conv", "predictions"):
        values = model.get_layer(layer).get_weights()
        changed = [v.copy() for v in values]
        largest = np.abs(values[0]).argmax()
        changed[0].flat[largest] = -values[0].flat[largest]
        model.get_layer(layer).set_weights(changed)
        diffs, allowed, _, _, ok = compare(run(net, x), got, None, rounding_effect(net, x))
        assert not ok and diffs["predictions"] > allowed["predictions"], layer
        model.get_layer(layer).set_weights(values)


MEMORY = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras_attn_zoo as zoo
    from keras_attn_zoo.export import exporter

    def rss():
        return {k: int(v.split()[0]) * 1024 for k, v in
                (line.split(":") for line in open("/proc/self/status")) if k in ("VmRSS", "VmHWM")}

    write = exporter._write_onnx
    def measured(*args):
        open("/proc/self/clear_refs", "w").write("5")  # the peak starts again here
        before = rss()["VmRSS"]
        write(*args)
        print("growth", rss()["VmHWM"] - before)
    exporter._write_onnx = measured
    model = zoo.load("resnet18", input_shape=(32, 32, 3))
    print("weights", 4 * model.count_params())
    exporter.export_model(model, sys.argv[1], "onnx", num_samples=2)
    """
)


def test_onnx_conversion_memory_does_not_grow_with_copies_of_the_weights(tmp_path):
    """tf2onnx copied every weight twice per optimizer pass (about two dozen passes); the peak
    memory of the conversion stays within a small multiple of the weights (ResNet-18, 47 MB)."""
    proc = subprocess.run([sys.executable, "-c", MEMORY, str(tmp_path / "r18.onnx")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    numbers = dict(line.split() for line in proc.stdout.splitlines() if line.startswith(("growth", "weights")))
    assert int(numbers["growth"]) < 40 * int(numbers["weights"]), numbers  # about 57 times with the copies


@pytest.mark.slow
def test_a_deep_abn_with_real_batchnorm_statistics_passes_its_onnx_check(tmp_path, cifar_jpegs):
    """ABN-ResNet-110 whose BatchNormalization statistics come from real CIFAR-10 images: its
    correct ONNX file differs from Keras by more than a fixed 1e-4 of the scores, within the
    check's allowance."""
    model = zoo.load("abn_resnet110")
    pixels, _, _ = read_images(cifar_jpegs, (32, 32))
    calibrate_batchnorm(model, preprocess(pixels[::2]))
    model.save(tmp_path / "abn110.keras")
    report = export_in_subprocess(tmp_path / "abn110.keras", tmp_path / "abn110.onnx", format="onnx",
                                  representative_images=str(cifar_jpegs))
    assert report["ok"], report
