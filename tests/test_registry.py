"""The registry, ``load()`` and its errors."""

import numpy as np
import pytest

import keras_attn_zoo as zoo

EXPECTED = sorted(
    [f"{p}resnet{d}" for p in ("", "se_", "fa_", "fa_se_") for d in (20, 32, 44, 56, 110)]
    + [f"{p}vgg19_bn" for p in ("", "se_", "fa_", "fa_se_")]
    + [f"{p}resnext29_8x{w}d" for p in ("", "se_", "fa_", "fa_se_") for w in (16, 64)]
    + [f"{p}inception_v4_small" for p in ("", "se_", "fa_", "fa_se_")]
    # the Attention Branch Network's models and their plain counterparts
    + [f"abn_resnet{d}" for d in (20, 32, 44, 56, 110, 18, 34, 50, 101, 152)]
    + [f"resnet{d}_bottleneck" for d in (44, 56, 110)]
    + [f"resnet{d}" for d in (18, 34, 50, 101, 152)]
    + ["abn_wrn28_10", "abn_wrn28_4", "wrn28_10", "wrn28_4", "abn_densenet_bc100_12",
       "densenet_bc100_12", "abn_resnext29_8x64d", "abn_resnext29_8x16d", "abn_se_resnet152",
       "se_resnet152", "abn_vgg16_bn", "vgg16_bn", "abn_resnet101_multitask"]
    # PAYA (Attend-and-Rectify) and the plain WRNs it compares with
    + [f"paya_resnet{d}" for d in (20, 32, 44, 56, 110)]
    + ["paya_wrn28_10", "paya_wrn40_10", "paya_wrn16_4", "wrn40_10", "wrn16_4"]
)


def test_list_models_has_every_name_and_wildcards():
    assert zoo.list_models() == EXPECTED
    assert zoo.list_models("fa_resnet*") == ["fa_resnet110", "fa_resnet20", "fa_resnet32", "fa_resnet44", "fa_resnet56"]
    assert len(zoo.list_models("abn_*")) == 18
    assert all(n.startswith("se_") for n in zoo.list_models("se_*"))
    assert zoo.list_models("nothing*") == []
    assert zoo.list_models(pretrained=True) == [
        "abn_resnet20", "fa_resnet20", "fa_se_resnet20", "paya_resnet20", "resnet20", "se_resnet20"]  # weights/manifest.json


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean: fa_resnet56"):
        zoo.load("fa_resnet65")
    with pytest.raises(ValueError, match="Unknown model name 'xyz'"):
        zoo.get_spec("xyz")
    assert zoo.get_spec("FA-ResNet20").name == "fa_resnet20"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"num_classes": -3}, "num_classes must be a positive integer"),
        ({"input_shape": (4, 4, 3)}, "at least 8 pixels"),
        ({"input_shape": (32, 32)}, r"input_shape=\(height, width, channels\)"),
        ({"input_shape": (32, 32, 0)}, "channel count"),
        ({"depth": 56}, "fixes"),
        ({"classes": 5}, "num_classes="),
        ({"pooling": "median", "include_top": False}, "pooling must be"),
        ({"weights": "imagenet"}, "No published weights 'imagenet'.*published tags: 'cifar10'"),
        ({"weights": "missing.weights.h5"}, "not found"),
    ],
)
def test_bad_arguments_say_what_is_allowed(kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        zoo.load("fa_resnet20", **kwargs)


def test_vgg_and_inception_input_limits():
    with pytest.raises(ValueError, match="at least 32 pixels"):
        zoo.load("vgg19_bn", input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="fixed input height"):
        zoo.load("inception_v4_small", input_shape=(None, None, 3))


def test_builder_rejects_unknown_attention():
    from keras_attn_zoo.models import resnet_cifar

    with pytest.raises(ValueError, match="attention must be one of"):
        resnet_cifar(20, attention="cbam")
    with pytest.raises(ValueError, match="6n \\+ 2"):
        resnet_cifar(21)


def test_model_info_has_paper_and_counts():
    info = zoo.model_info("fa_resnet56")
    assert info["params"] == 892_134
    assert "Focus-and-Association" in info["paper"]
    tables = {r["table"]: r for r in info["paper_results"]}
    assert tables["I"]["top1_error"] == 5.86 and tables["I"]["params_m"] == 0.892
    assert tables["II"]["num_classes"] == 100 and tables["III"]["input_shape"] == (64, 64, 3)
    assert info["gradcam_layer"] == "stage3_block9_out" and info["weights"] == []


def test_load_settings_for_the_papers_data_sets():
    tiny = zoo.load("fa_resnet56", num_classes=200, input_shape=(64, 64, 3))
    assert tiny.get_layer("stem_conv").strides == (2, 2)  # Tiny ImageNet: stride-2 first conv
    assert tiny.output_shape == (None, 200)
    imagenet5 = zoo.load("fa_se_resnet56", num_classes=5, input_shape=(224, 224, 3))
    assert imagenet5.output_shape == (None, 5)
    features = zoo.load("se_resnet20", include_top=False, pooling="avg")
    assert features.output_shape == (None, 64)
    logits = zoo.load("resnet20", classifier_activation=None)
    out = logits.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)
    assert not np.isclose(out.sum(), 1.0) or out.std() > 0  # raw logits, not a softmax


def test_one_softmax_class_is_refused_and_one_sigmoid_output_is_a_binary_classifier(monkeypatch):
    from helpers import sample_images

    for name in ("resnet20", "vgg19_bn"):
        with pytest.raises(ValueError, match="1 class with classifier_activation='softmax' would output 1.0 "
                                             "for every image: use 2 classes, or .*classifier_activation='sigmoid'"):
            zoo.load(name, num_classes=1)
    with pytest.raises(ValueError, match="ABN and PAYA need a softmax over at least 2"):
        zoo.load("abn_resnet20", num_classes=1, classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="ABN and PAYA need a softmax over at least 2"):
        zoo.load("paya_resnet20", num_classes=1, classifier_activation="sigmoid")
    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "1")
    with pytest.warns(UserWarning, match="except 'predictions': the file has 10 classes, the model 1"):
        binary = zoo.load("fa_resnet20", weights="cifar10", num_classes=1, classifier_activation="sigmoid")
    scores = binary.predict(sample_images(4), verbose=0)
    assert scores.shape == (4, 1) and ((scores > 0) & (scores < 1)).all() and scores.std() > 0
    binary.compile(optimizer="sgd", loss="binary_crossentropy")  # it trains as a binary classifier
    assert np.isfinite(binary.train_on_batch(sample_images(4), np.array([[0], [1], [0], [1]])))


def test_numpy_integers_are_counts(monkeypatch):
    from helpers import sample_images
    from keras_attn_zoo.models import resnet_cifar

    model = zoo.load("resnet20", num_classes=np.int64(10))
    assert model.output_shape == (None, 10) and type(model.get_layer("predictions").units) is int
    assert resnet_cifar(20, classes=np.int32(3)).output_shape == (None, 3)
    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "1")
    strict = zoo.load("resnet20", weights="cifar10", num_classes=np.int64(10))  # the file's: strict
    plain = zoo.load("resnet20", weights="cifar10")
    x = sample_images(2)
    np.testing.assert_array_equal(strict.predict(x, verbose=0), plain.predict(x, verbose=0))
    for bad in (True, 2.0, np.float64(3), "10", 0, np.int64(-1)):
        with pytest.raises(ValueError, match="num_classes must be a positive integer"):
            zoo.load("resnet20", num_classes=bad)


def test_a_directory_as_weights_says_what_is_expected(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"weights='{tmp_path}' is a directory: pass the path of a "
                                                "\\.weights\\.h5 file .*or a published tag\\.$"):
        zoo.load("resnet20", weights=str(tmp_path))
    zoo.load("resnet20").save_weights(tmp_path / "resnet20.weights.h5")
    with pytest.raises(IsADirectoryError, match="is a directory: .* It holds resnet20.weights.h5\\."):
        zoo.load("resnet20", weights=tmp_path)


def test_unknown_builder_argument_is_refused_with_close_matches():
    with pytest.raises(ValueError, match=r"resnet20 \(resnet_cifar\) takes no argument 'attention_head'\. "
                                         r"Did you mean: .*attention_heads\? It takes: .*classifier_activation"):
        zoo.load("resnet20", attention_head=2)
