"""torchvision's ResNet checkpoints into the zoo's ImageNet ResNets, against torchvision's own
models (random weights, BatchNorm statistics randomised so that every tensor matters), at 64x64
to stay quick: same logits for the plain ResNets, the backbone's weights and features for an
attention model whose attention layers are reported as fresh, and refusals that name what does
not match."""

import dataclasses
import json
import shutil
import sys
import types

import numpy as np
import pytest

import torch  # noqa: E402  (in the test extra: these tests must run, not skip)

import keras

import keras_attn_zoo as zoo
from keras_attn_zoo import registry, weights
from keras_attn_zoo.cli import main
from keras_attn_zoo.convert import IMAGENET_STATS, convert_torchvision_checkpoint, load_state_dict
from keras_attn_zoo.modelfile import load_model, metadata_stats
from keras_attn_zoo.normalization import ChannelStats
from keras_attn_zoo.registry import TORCHVISION_RESNETS, TORCHVISION_URL, load_with_report
from keras_attn_zoo.training.finetune import _converted

_LIBRARIES = []


def _import_torchvision():
    """torchvision, with the CPU build of torch too.

    PyPI's torchvision wheels are built against the CUDA build of torch: with the CPU build (the
    test extra's), their C++ operators (nms, roi_align...) cannot load, and torchvision 0.28 then
    fails at import while registering fake kernels for two of them. Declaring those two
    operators' schemas lets it import; its ResNets use none of its operators.
    """
    try:
        import torchvision
        return torchvision
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARIES.append(library)  # the definitions live as long as the library object
    import torchvision
    return torchvision


torchvision = _import_torchvision()
SIZE = (64, 64, 3)


def randomised(model, seed=0):
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def torchvision_model(arch, seed=0):
    return randomised(getattr(torchvision.models, arch)(weights=None), seed)


def save(model, path):
    torch.save(model.state_dict(), path)
    return path


def images(n=2, seed=1):
    """Inputs as normalised images are: about [-2, 2]."""
    return np.random.default_rng(seed).uniform(-2, 2, (n, *SIZE)).astype("float32")


def run_torch(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def assert_close_to_scale(actual, expected, rtol=1e-4):
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= rtol * scale, (np.abs(actual - expected).max(), scale)


@pytest.fixture
def registered():
    """Registry entries the test adds (SE-ResNet-50s: timm's SE layout at a quick size), removed after."""
    added = []

    def add(name, attention):
        spec = registry.get_spec("se_resnet152")
        registry._REGISTRY[name] = dataclasses.replace(
            spec, name=name, kwargs=types.MappingProxyType({"depth": 50, "attention": attention}))
        added.append(name)
        return name

    yield add
    for name in added:
        del registry._REGISTRY[name]


def test_the_table_of_torchvision_files_is_torchvisions_own():
    for depth, files in TORCHVISION_RESNETS.items():
        enum = getattr(torchvision.models, f"ResNet{depth}_Weights")
        assert [w.name for w in enum] == [version for version, _, _ in files]
        for version, file, resize in files:
            published = enum[version]
            assert published.url == TORCHVISION_URL + file
            transform = published.transforms()
            assert (transform.resize_size, transform.crop_size) == ([resize], [224])
            assert (tuple(transform.mean), tuple(transform.std)) == (IMAGENET_STATS.mean, IMAGENET_STATS.std)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_a_converted_plain_resnet_gives_torchvisions_logits(arch, tmp_path):
    reference = torchvision_model(arch)
    out = tmp_path / f"{arch}.weights.h5"
    result = convert_torchvision_checkpoint(save(reference, tmp_path / f"{arch}.pth"), output=out, input_shape=SIZE)
    assert (result.model.name, result.fresh_layers) == (arch, [])
    model = zoo.load(arch, weights=str(out), input_shape=SIZE, classifier_activation=None)  # logits
    x = images()
    assert_close_to_scale(model.predict(x, verbose=0), run_torch(reference, x))
    # the record beside the file: torchvision's normalisation, what predict / explain / export use
    record = weights.trained_record(out)
    assert record.normalization == IMAGENET_STATS
    assert registry.load_for_inference(model.name, str(out), input_shape=SIZE).normalization == IMAGENET_STATS
    assert (record.num_classes, record.input_shape, record.fresh_layers) == (1000, (224, 224, 3), ())
    assert record.sha256 == weights.sha256(out)
    assert dict(record.converted_from) == {"file": f"{arch}.pth", "sha256": weights.sha256(tmp_path / f"{arch}.pth"),
                                           "architecture": f"ResNet-{arch[6:]}", "layout": "torchvision"}


def _abn_layers(model):
    return [layer.name for layer in model.layers if layer.weights and layer.name.startswith("abn_")]


def test_an_attention_model_gets_torchvisions_backbone_and_names_its_fresh_layers(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_ATTN_ZOO_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match=r"resnet18-f37072fd.pth.*convert_torchvision.py resnet18-f37072fd.pth "
                                         r"--model abn_resnet18 --tag torchvision"):
        zoo.load("abn_resnet18", weights="torchvision")
    reference = torchvision_model("resnet18")
    checkpoint = save(reference, tmp_path / "resnet18.pth")
    script = _script()
    assert script.main([str(checkpoint), "--model", "abn_resnet18", "--tag", "torchvision"]) == 0
    printed = capsys.readouterr().out
    with pytest.warns(UserWarning, match="untrained initial values"):
        model, new = load_with_report("abn_resnet18", "torchvision", input_shape=SIZE)
    fresh = _abn_layers(model)
    assert new == fresh and len(fresh) == 16  # the branch's stage copy (2 blocks) and its heads
    assert f"{len(fresh)} layers the checkpoint has nothing for stay freshly initialised" in printed
    assert ", ".join(fresh) in printed
    assert weights.weight_record("abn_resnet18", "torchvision").normalization == IMAGENET_STATS

    # stem to stage 3 (before the branch) computes torchvision's layer3; stage 4 and the
    # classifier hold layer4's and fc's weights
    x = images()
    features = keras.Model(model.input, model.get_layer("stage3_block2_out").output).predict(x, verbose=0)
    trunk = torch.nn.Sequential(reference.conv1, reference.bn1, reference.relu, reference.maxpool,
                                reference.layer1, reference.layer2, reference.layer3)
    assert_close_to_scale(features, run_torch(trunk, x).transpose(0, 2, 3, 1))
    state = reference.state_dict()
    for b in (1, 2):
        for i in (1, 2):
            conv = model.get_layer(f"stage4_block{b}_{i}_conv").get_weights()[0]
            np.testing.assert_array_equal(conv, state[f"layer4.{b - 1}.conv{i}.weight"].numpy().transpose(2, 3, 1, 0))
            bn = model.get_layer(f"stage4_block{b}_{i}_bn").get_weights()
            for value, part in zip(bn, ("weight", "bias", "running_mean", "running_var")):
                np.testing.assert_array_equal(value, state[f"layer4.{b - 1}.bn{i}.{part}"].numpy())
    kernel, bias = model.get_layer("predictions").get_weights()
    np.testing.assert_array_equal(kernel, state["fc.weight"].numpy().T)
    np.testing.assert_array_equal(bias, state["fc.bias"].numpy())


class TimmSE(torch.nn.Module):
    """timm's SEModule as ``seresnet50`` builds it (``timm.layers.squeeze_excite``): 1x1 convs
    ``fc1`` (C -> C / 16, bias) and ``fc2`` on the spatial mean, ReLU between, a sigmoid gate."""

    def __init__(self, channels):
        super().__init__()
        self.fc1 = torch.nn.Conv2d(channels, channels // 16, 1)
        self.fc2 = torch.nn.Conv2d(channels // 16, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


def timm_seresnet50(seed=0):
    """torchvision's ResNet-50 with timm's SE after each residual branch's last BN, named as in
    timm's ``seresnet50`` (``layer1.0.se.fc1.weight``): timm's ResNet-50 has torchvision's names."""
    model = torchvision.models.resnet50(weights=None)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            block.se = TimmSE(block.bn3.num_features)
            block.bn3 = torch.nn.Sequential(block.bn3, block.se)  # forward: conv3 -> bn3 -> se -> + shortcut
    model = randomised(model, seed)
    state = {k: v for k, v in model.state_dict().items() if ".bn3.1." not in k}  # the SE once, as se.*
    return model, {k.replace(".bn3.0.", ".bn3."): v.numpy() for k, v in state.items()}


def test_timms_se_resnet_layout_converts_its_se_weights_too(registered):
    se_model = registered("se_resnet50_test", "se")
    reference, state = timm_seresnet50()
    assert "layer1.0.se.fc1.weight" in state and "layer1.0.bn3.weight" in state
    result = convert_torchvision_checkpoint(state, se_model, input_shape=SIZE)
    assert result.fresh_layers == [] and result.architecture.title == "SE-ResNet-50"
    assert result.record["converted_from"]["layout"] == "timm"
    logits = keras.Model(result.model.input, result.model.get_layer("predictions").output)
    result.model.get_layer("predictions").activation = keras.activations.linear
    x = images()
    assert_close_to_scale(logits.predict(x, verbose=0), run_torch(reference, x))

    # torchvision's plain ResNet-50 into the SE model: the SE layers are the fresh ones
    plain = {k: v.numpy() for k, v in torchvision_model("resnet50").state_dict().items()}
    result = convert_torchvision_checkpoint(plain, se_model, input_shape=SIZE)
    assert result.fresh_layers == [layer.name for layer in result.model.layers if layer.name.endswith("_se")]
    assert len(result.fresh_layers) == 16 and result.fresh_layers[0] == "stage1_block1_se"
    with pytest.raises(ValueError, match="The checkpoint is a SE-ResNet-50, but resnet50 has no SE layers for "
                                         "its SE weights: convert it into se_resnet50_test"):
        convert_torchvision_checkpoint(state, "resnet50", input_shape=SIZE)


def test_an_attention_model_with_se_leaves_both_the_branch_and_se_fresh(registered):
    name = registered("abn_se_resnet50_test", "abn_se")
    plain = {k: v.numpy() for k, v in torchvision_model("resnet50").state_dict().items()}
    result = convert_torchvision_checkpoint(plain, name, input_shape=SIZE)
    se = [layer.name for layer in result.model.layers if layer.name.endswith("_se")]
    assert sorted(result.fresh_layers) == sorted(set(_abn_layers(result.model)) | set(se))
    assert "stage2_block3_se" in se and "abn_block1_se" in se  # SE in the branch's stage copy too
    np.testing.assert_array_equal(result.model.get_layer("stage2_block3_3_conv").get_weights()[0],
                                  plain["layer2.2.conv3.weight"].transpose(2, 3, 1, 0))


def test_a_checkpoint_of_another_architecture_is_refused_naming_the_mismatch(tmp_path):
    resnet18 = {k: v.numpy() for k, v in torchvision_model("resnet18").state_dict().items()}
    with pytest.raises(ValueError, match="The checkpoint is a ResNet-18, but abn_resnet50 is a ResNet-50: "
                                         "convert it into abn_resnet18, resnet18."):
        convert_torchvision_checkpoint(resnet18, "abn_resnet50")
    resnext = {k: v.numpy() for k, v in torchvision.models.resnext50_32x4d(weights=None).state_dict().items()}
    # ResNeXt-50 32x4d: ResNet-50's names and block counts; its conv1, bn1, conv2, bn2 and conv3 are
    # twice as wide inside each of the 16 blocks, conv2 grouped: 80 layers
    with pytest.raises(ValueError, match=r"do not fit resnet50 \(a ResNet-50 by its block counts\): 80 layers "
                                         r"differ in shape, e.g. stage1_block1_1_conv's kernel is \(1, 1, 64, 64\), "
                                         r"layer1.0.conv1's \(1, 1, 64, 128\); stage1_block1_1_bn's gamma is \(64,\), "
                                         r"layer1.0.bn1's \(128,\); stage1_block1_2_conv's kernel is \(3, 3, 64, 64\), "
                                         r"layer1.0.conv2's \(3, 3, 4, 128\)\. .*nothing was converted"):
        convert_torchvision_checkpoint(resnext, "resnet50", input_shape=SIZE)
    with pytest.raises(ValueError, match=r"1 checkpoint tensors have no place in resnet18, e.g. \['extra.weight'\]"):
        convert_torchvision_checkpoint({**resnet18, "extra.weight": np.zeros(3)}, input_shape=SIZE)
    with pytest.raises(ValueError, match="the ABN authors' ABN-ResNet: convert it with scripts/convert_abn_pytorch.py"):
        convert_torchvision_checkpoint({**resnet18, "att_layer4.0.conv1.weight": np.zeros(3)})
    stem = {k: v for k, v in resnet18.items() if not k.startswith(("conv1.", "bn1."))}  # timm's deep stems' names
    with pytest.raises(ValueError, match="a ResNet-D .*shortcuts average-pool"):
        convert_torchvision_checkpoint({**stem, "conv1.0.weight": np.zeros((32, 3, 3, 3), "float32")})
    with pytest.raises(ValueError, match="Caffe's SENet .*stride is in the first 1x1 convolution"):
        convert_torchvision_checkpoint({"layer0.conv1.weight": resnet18["conv1.weight"], **stem})
    vgg = {k: v.numpy() for k, v in torchvision.models.vgg11(weights=None).state_dict().items()}
    with pytest.raises(ValueError, match="not a torchvision ResNet: it has no 'conv1.weight', 'bn1.weight', "
                                         "'layer1.0.conv1.weight', 'fc.weight' .*classifier.0.bias"):
        convert_torchvision_checkpoint(vgg)
    with pytest.raises(ValueError, match="No torchvision converter for fa_resnet20"):
        convert_torchvision_checkpoint(resnet18, "fa_resnet20")
    # a file named as torchvision's but holding something else (a cut download), and a cut file
    fake = tmp_path / "resnet18-f37072fd.pth"
    torch.save({k: torch.from_numpy(v) for k, v in resnet18.items()}, fake)
    fake.write_bytes(fake.read_bytes()[:100_000])
    with pytest.raises(ValueError, match=f"{fake} is not torchvision's resnet18-f37072fd.pth: its sha256 starts with "
                                         f"{weights.sha256(fake)[:8]}, torchvision's with f37072fd. The download is "
                                         "truncated or damaged"):
        convert_torchvision_checkpoint(fake)
    cut = fake.rename(tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match="resnet18.pth could not be read as a PyTorch checkpoint .*: it is "
                                         "truncated, damaged or not a PyTorch file"):
        convert_torchvision_checkpoint(cut)
    assert not list(tmp_path.glob("*.weights.h5"))


class _CreatesAFile:
    """Unpickling this runs ``open(marker, "w")``: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _script():
    import importlib.util

    path = zoo.__file__.replace("keras_attn_zoo/__init__.py", "scripts/convert_torchvision.py")
    spec = importlib.util.spec_from_file_location("convert_torchvision", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys, cifar_jpegs):
    marker = tmp_path / "marker"
    crafted = tmp_path / "resnet18.pth"
    torch.save({**torchvision_model("resnet18").state_dict(), "payload": _CreatesAFile(marker)}, crafted)
    with pytest.raises(ValueError, match=r"resnet18.pth holds more than tensors .*could run code.*--unsafe-pickle"):
        convert_torchvision_checkpoint(crafted)
    out = tmp_path / "out.weights.h5"
    assert _script().main([str(crafted), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "could run code, so it was not read" in err and "Traceback" not in err
    with pytest.raises(ValueError, match=r"could run code.*convert it with python scripts/convert_torchvision.py "
                                         r"CHECKPOINT --model abn_resnet18 -o converted.weights.h5 --unsafe-pickle"):
        zoo.fine_tune("abn_resnet18", cifar_jpegs, weights=str(crafted), output_dir=tmp_path / "run")
    assert not marker.exists() and not out.exists() and not (tmp_path / "run").exists()
    # a state dict with entries that are not tensors is named, not a traceback
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="its entries 'epoch' are not tensors"):
        load_state_dict(tmp_path / "odd.pth")


def test_fine_tuning_an_attention_model_from_torchvision_trains_its_fresh_layers(tmp_path, monkeypatch, cifar_jpegs,
                                                                                 capsys):
    """fine_tune("abn_resnet18", folder, weights="torchvision") after the conversion, and with the
    checkpoint itself: the attention branch trains as new layers, the backbone is torchvision's.
    Two classes of real CIFAR-10 JPEGs at 32x32 keep it quick."""
    monkeypatch.setenv("KERAS_ATTN_ZOO_HOME", str(tmp_path / "home"))
    photos = tmp_path / "photos"
    for cls in ("cat", "ship"):
        shutil.copytree(cifar_jpegs / cls, photos / cls)
    reference = torchvision_model("resnet18")
    checkpoint = save(reference, tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match="The checkpoint is a ResNet-18, but abn_resnet50 is a ResNet-50"):
        zoo.fine_tune("abn_resnet50", photos, weights=str(checkpoint), output_dir=tmp_path / "wrong")
    assert main(["finetune", "abn_resnet50", "--data", str(photos), "--weights", str(checkpoint),
                 "--output", str(tmp_path / "wrong")]) == 2
    assert ("keras-attn-zoo: error: The checkpoint is a ResNet-18, but abn_resnet50 is a ResNet-50: convert it "
            "into abn_resnet18, resnet18.") in capsys.readouterr().err
    assert not (tmp_path / "wrong").exists()
    settings = {"image_size": 32, "freeze_epochs": 1, "epochs": 0, "limit": 8, "batch_size": 4, "verbose": 0}

    result = zoo.fine_tune("abn_resnet18", photos, weights=str(checkpoint), output_dir=tmp_path / "pth", **settings)
    printed = capsys.readouterr().out
    fresh = _abn_layers(result.model)
    assert sorted(result.new_layers) == sorted(fresh + ["predictions"])
    assert f"Converted {checkpoint} (ResNet-18, torchvision layout) into" in printed
    assert result.record["weights"] == str(checkpoint)
    assert not (tmp_path / "pth" / "converted_checkpoint.weights.h5").exists()  # removed with the run's other files
    _, metadata = load_model(result.model_path)
    assert metadata_stats(metadata) == IMAGENET_STATS  # inputs normalised as torchvision's were
    assert result.record["preprocessing_source"] == "torchvision's ImageNet mean and std, recorded by the converter"
    conv = result.model.get_layer("stage2_block1_1_conv").get_weights()[0]  # frozen phase: torchvision's
    np.testing.assert_array_equal(conv, reference.state_dict()["layer2.0.conv1.weight"].numpy().transpose(2, 3, 1, 0))

    # a killed run started again finds the checkpoint it converted (same sha256) and keeps it
    converted_file = tmp_path / "again" / "converted.weights.h5"
    assert _converted(registry.get_spec("abn_resnet18"), checkpoint, converted_file) == converted_file
    written = converted_file.stat().st_mtime_ns
    assert _converted(registry.get_spec("abn_resnet18"), checkpoint, converted_file) == converted_file
    assert converted_file.stat().st_mtime_ns == written
    other = ChannelStats((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))  # other statistics: converted again, recorded
    assert _converted(registry.get_spec("abn_resnet18"), checkpoint, converted_file, stats=other) == converted_file
    assert weights.trained_record(converted_file).normalization == other

    # mean / std with a checkpoint: checked before anything runs, then recorded with the conversion
    with pytest.raises(ValueError, match=r"mean and std need one value per input channel \(3\), got \[0.5, 0.5\]"):
        zoo.fine_tune("abn_resnet18", photos, weights=str(checkpoint), mean=(0.5, 0.5), std=(0.2, 0.2),
                      output_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    given = zoo.fine_tune("abn_resnet18", photos, weights=str(checkpoint), mean=other.mean, std=other.std,
                          output_dir=tmp_path / "given", **settings)
    assert given.record["preprocessing"] == other.to_dict() and given.record["preprocessing_source"] == "given"
    assert metadata_stats(load_model(given.model_path)[1]) == other

    assert _script().main([str(checkpoint), "--model", "abn_resnet18", "--tag", "torchvision"]) == 0
    with pytest.warns(UserWarning, match="untrained initial values"):
        converted = zoo.load("abn_resnet18", weights="torchvision", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"were trained with mean \[0.485, 0.456, 0.406\] and std "
                                         r"\[0.229, 0.224, 0.225\] \(their record\)"):
        zoo.fine_tune("abn_resnet18", photos, weights="torchvision", mean=other.mean, std=other.std,
                      output_dir=tmp_path / "tag")
    tagged = zoo.fine_tune("abn_resnet18", photos, weights="torchvision", output_dir=tmp_path / "tag", **settings)
    assert tagged.new_layers == result.new_layers and tagged.reused_layers == result.reused_layers
    assert json.loads((tmp_path / "tag" / "finetune.json").read_text())["preprocessing"] == IMAGENET_STATS.to_dict()
    for name in ("abn_block1_1_conv", "abn_bn"):  # fresh layers trained in the frozen phase
        assert not np.array_equal(tagged.model.get_layer(name).get_weights()[0], converted.get_layer(name).get_weights()[0])
