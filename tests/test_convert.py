"""The ABN checkpoint converter against PyTorch modules that use the authors' key names.

The modules (``keras_attn_zoo/torch_reference.py``, also the benchmark's PyTorch reference)
re-create the structure of the authors' ResNet, Wide ResNet and ResNeXt code (attribute names,
layer order, forward pass); random weights and BatchNorm statistics make every tensor matter.
The converted Keras model must compute the same outputs.
"""

import json

import numpy as np
import pytest

import torch  # noqa: E402  (in the test extra: this test must run, not skip)

nn = torch.nn

import keras_attn_zoo as zoo  # noqa: E402
from keras_attn_zoo.convert import convert_abn_checkpoint, load_state_dict  # noqa: E402
from keras_attn_zoo.models.abn import abn_outputs  # noqa: E402
from keras_attn_zoo.torch_reference import (  # noqa: E402
    ABNResNet, ABNResNeXt, ABNWideResNet, BasicBlock, Bottleneck,
)
from keras_attn_zoo.weights import sha256  # noqa: E402


def randomised(module, seed=0):
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return module.eval()


CASES = {
    "abn_resnet20": (lambda: ABNResNet(BasicBlock, (3, 3, 3), 100, False), (32, 32, 3)),
    "abn_resnet44": (lambda: ABNResNet(Bottleneck, (7, 7, 7), 10, False), (32, 32, 3)),
    "abn_resnet50": (lambda: ABNResNet(Bottleneck, (3, 4, 6, 3), 1000, True), (64, 64, 3)),
    "abn_wrn28_4": (lambda: ABNWideResNet(16, 2, 10), None),
}


def compare(model, torch_model, input_shape):
    x = np.random.default_rng(1).uniform(0, 1, (2, *input_shape)).astype("float32")
    with torch.no_grad():
        logits, scores, att = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(model.predict(x, verbose=0), torch.softmax(scores, 1).numpy(), atol=2e-5)
    out = abn_outputs(model, x)
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(out["attention_map"], att.numpy().transpose(0, 2, 3, 1), atol=1e-4)


@pytest.mark.parametrize("name", ["abn_resnet20", "abn_resnet44", "abn_resnet50"])
def test_converted_resnets_compute_what_pytorch_computes(name, tmp_path):
    make, input_shape = CASES[name]
    torch_model = randomised(make())
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in torch_model.state_dict().items()}}, path)
    out = tmp_path / f"{name}.weights.h5"
    model = convert_abn_checkpoint(path, name, out, input_shape=input_shape)
    compare(model, torch_model, input_shape)
    reloaded = zoo.load(name, weights=str(out), num_classes=model.output_shape[-1], input_shape=input_shape)
    np.testing.assert_array_equal(reloaded.get_weights()[0], model.get_weights()[0])


def test_converted_wide_resnet_from_an_npz_dump(tmp_path):
    """The torch-free path: the two-line .npz dump. WRN-16-2 keeps it small; the key names are
    those of abn_wrn28_*."""
    torch_model = randomised(ABNWideResNet(16, 2, 10))
    np.savez(tmp_path / "wrn.npz", **{k: v.numpy() for k, v in torch_model.state_dict().items()})
    state = load_state_dict(tmp_path / "wrn.npz")
    from keras_attn_zoo.convert.abn_pytorch import RULES  # the WRN rules, on a WRN-16-2 model
    import keras_attn_zoo.registry as registry

    spec = registry.get_spec("abn_wrn28_4")
    small = registry.dataclasses.replace(spec, kwargs=registry.types.MappingProxyType({**spec.kwargs, "depth": 16, "width": 2}))
    registry._REGISTRY["abn_wrn16_2_test"] = registry.dataclasses.replace(small, name="abn_wrn16_2_test")
    try:
        assert "wrn" in RULES
        model = convert_abn_checkpoint(state, "abn_wrn16_2_test")
        compare(model, torch_model, (32, 32, 3))
    finally:
        del registry._REGISTRY["abn_wrn16_2_test"]


def test_converted_resnext_skips_the_unused_bn():
    """ABN-ResNeXt-29 8x16d (the 8x64d's key names, a quarter of its width)."""
    torch_model = randomised(ABNResNeXt(8, 16, 10))
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    assert "bn_att.weight" in state  # in the checkpoint, but not in the function
    model = convert_abn_checkpoint(state, "abn_resnext29_8x16d")
    compare(model, torch_model, (32, 32, 3))


def test_mismatches_fail_loudly(tmp_path):
    torch_model = ABNResNet(BasicBlock, (3, 3, 3), 10, False)
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    wrong = {**state, "fc.weight": np.zeros((10, 32), "float32")}
    with pytest.raises(ValueError, match=r"1 tensor\(s\) differ in shape: fc.weight is \(10, 32\) in the checkpoint, "
                                         r"\(10, 64\) in abn_resnet20"):
        convert_abn_checkpoint(wrong, "abn_resnet20")
    extra = {**state, "extra.weight": np.zeros(3)}
    with pytest.raises(ValueError, match=r"1 checkpoint tensor\(s\) have no place in abn_resnet20: extra.weight"):
        convert_abn_checkpoint(extra, "abn_resnet20")
    with pytest.raises(ValueError, match="No converter"):
        convert_abn_checkpoint(state, "abn_densenet_bc100_12")
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "missing.pth.tar")


def test_a_wrong_model_for_a_checkpoint_names_what_does_not_fit_and_what_would(tmp_path, capsys):
    """ABN-ResNet-20's checkpoint given as ABN-ResNet-32, as ABN-ResNet-56 (bottleneck blocks) and
    as the ImageNet ABN-ResNet-50: every missing key, differing shape and unused tensor is
    counted, and the model whose stages match the checkpoint's is named; no traceback."""
    import subprocess
    import sys

    state = {k: v.numpy() for k, v in ABNResNet(BasicBlock, (3, 3, 3), 10, False).state_dict().items()}
    match = "its layer1, layer2, layer3 hold 3, 3, 3 blocks, as in abn_resnet20: pass --model abn_resnet20"
    with pytest.raises(ValueError) as deeper:
        convert_abn_checkpoint(state, "abn_resnet32")
    message = str(deeper.value)
    # 2 more blocks in each of the 3 stages and in the branch's copy of stage 3, 10 tensors each
    assert message.startswith("The checkpoint does not fit abn_resnet32: 80 tensor(s) abn_resnet32 needs are not in "
                              "the checkpoint: layer1.3.conv1.weight, layer1.3.bn1.weight, layer1.3.bn1.bias, "
                              "layer1.3.bn1.running_mean and 76 more.")
    assert match in message and message.endswith("Nothing was converted.")
    with pytest.raises(ValueError) as bottleneck:
        convert_abn_checkpoint(state, "abn_resnet56")
    assert "tensor(s) differ in shape: layer1.0.conv1.weight is (16, 16, 3, 3) in the checkpoint, (16, 16, 1, 1) " \
           "in abn_resnet56" in str(bottleneck.value) and match in str(bottleneck.value)
    np.savez(tmp_path / "abn20.npz", **state)
    script = zoo.__file__.replace("keras_attn_zoo/__init__.py", "scripts/convert_abn_pytorch.py")
    proc = subprocess.run([sys.executable, script, str(tmp_path / "abn20.npz"), "--model", "abn_resnet50",
                           "-o", str(tmp_path / "x.weights.h5")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "convert_abn_pytorch: error: The checkpoint does not fit abn_resnet50:" in proc.stderr
    assert "differ in shape: conv1.weight is (16, 3, 3, 3) in the checkpoint, (64, 3, 7, 7) in abn_resnet50" in proc.stderr
    assert match in proc.stderr and not (tmp_path / "x.weights.h5").exists()


def test_converted_weights_record_the_authors_normalisation(tmp_path):
    """predict / explain / export / evaluate then prepare images as the authors' cifar.py did."""
    from keras_attn_zoo.convert.abn_pytorch import AUTHORS_STATS
    from keras_attn_zoo.registry import load_for_inference

    torch_model = randomised(ABNResNet(BasicBlock, (3, 3, 3), 10, False))
    np.savez(tmp_path / "abn20.npz", **{k: v.numpy() for k, v in torch_model.state_dict().items()})
    out = tmp_path / "abn_resnet20.weights.h5"
    convert_abn_checkpoint(tmp_path / "abn20.npz", "abn_resnet20", out)
    record = json.loads((tmp_path / "abn_resnet20.json").read_text())
    assert record["preprocessing"]["mean"] == [0.4914, 0.4822, 0.4465]
    assert record["preprocessing"]["std"] == [0.2023, 0.1994, 0.201]
    assert record["sha256"] == sha256(out) and record["training"]["checkpoint"]["file"] == "abn20.npz"
    loaded = load_for_inference("abn_resnet20", str(out))
    assert loaded.normalization == AUTHORS_STATS["cifar"] and loaded.notes == ()
    assert loaded.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                  "truck")


def test_weights_imagenet_resolves_to_the_converted_file(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("KERAS_ATTN_ZOO_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="convert_abn_pytorch.py model_best.pth.tar --model abn_resnet50 --tag imagenet"):
        zoo.load("abn_resnet50", weights="imagenet")
    torch_model = randomised(ABNResNet(Bottleneck, (3, 4, 6, 3), 1000, True))
    np.savez(tmp_path / "ckpt.npz", **{k: v.numpy() for k, v in torch_model.state_dict().items()})
    script = zoo.__file__.replace("keras_attn_zoo/__init__.py", "scripts/convert_abn_pytorch.py")
    proc = subprocess.run(
        [sys.executable, script, str(tmp_path / "ckpt.npz"), "--model", "abn_resnet50", "--tag", "imagenet"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = zoo.load("abn_resnet50", weights="imagenet", input_shape=(64, 64, 3))
    compare(model, torch_model, (64, 64, 3))
    from keras_attn_zoo.data import IMAGENET_STATS
    from keras_attn_zoo.weights import weight_record

    record = weight_record("abn_resnet50", "imagenet")  # the record the converter wrote beside it
    assert record.normalization == IMAGENET_STATS and record.num_classes == 1000 and record.class_names == ()
    assert dict(record.eval_transform) == {"image_size": (224, 224), "resize_shorter": 256}
    installed = tmp_path / "home" / "weights" / "abn_resnet50_imagenet.weights.h5"
    installed.write_bytes(installed.read_bytes()[:-10] + b"0" * 10)  # tamper
    with pytest.raises(ValueError, match="damaged"):
        zoo.load("abn_resnet50", weights="imagenet")


class _CreatesAFile:
    """Unpickling this runs ``open(marker, "w")``: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pth_that_would_run_code_is_refused_unless_the_user_opts_in(tmp_path, capsys):
    import importlib.util

    torch_model = ABNResNet(BasicBlock, (3, 3, 3), 10, False)
    marker = tmp_path / "marker"
    crafted = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": torch_model.state_dict(), "payload": _CreatesAFile(marker)}, crafted)
    out = tmp_path / "out.weights.h5"
    with pytest.raises(ValueError, match=r"model_best.pth.tar holds more than tensors .*\(--unsafe-pickle\).* GLOBAL io.open was not an allowed global"):
        load_state_dict(crafted)
    assert not marker.exists()

    script = zoo.__file__.replace("keras_attn_zoo/__init__.py", "scripts/convert_abn_pytorch.py")
    spec = importlib.util.spec_from_file_location("convert_abn_pytorch", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(crafted), "--model", "abn_resnet20", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "could run code, so it was not read" in err and "Traceback" not in err
    assert not marker.exists() and not out.exists()

    # A plain checkpoint still converts by default; the opt-in reads the crafted one, loudly.
    plain = tmp_path / "plain.pth.tar"
    torch.save({"epoch": 3, "best_prec1": 91.2, "state_dict": torch_model.state_dict()}, plain)
    assert set(load_state_dict(plain)) == set(torch_model.state_dict())
    with pytest.warns(UserWarning, match="full unpickling"):
        assert module.main([str(crafted), "--model", "abn_resnet20", "-o", str(out), "--unsafe-pickle"]) == 0
    assert marker.exists() and out.is_file()
