"""Saved-and-reloaded models give identical outputs; weight files load strictly."""

import numpy as np
import pytest

import keras

import keras_attn_zoo as zoo
from helpers import run_model_saving_test, sample_images


@pytest.mark.multibackend
@pytest.mark.parametrize("name", ["resnet20", "se_resnet20", "fa_resnet20", "fa_se_resnet20", "paya_resnet20"])
def test_round_trips_are_exact(name, tmp_path):
    model = zoo.load(name)
    run_model_saving_test(model, tmp_path, sample_images(2))


@pytest.mark.multibackend
def test_load_with_a_weights_file(tmp_path):
    x = sample_images(2)
    model = zoo.load("fa_vgg19_bn")
    path = tmp_path / "fa_vgg19_bn.weights.h5"
    model.save_weights(path)
    again = zoo.load("fa_vgg19_bn", weights=str(path))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_wrong_or_damaged_weights_fail_loudly(tmp_path):
    path = tmp_path / "fa_resnet20.weights.h5"
    zoo.load("fa_resnet20").save_weights(path)
    with pytest.warns(UserWarning, match="except 'predictions'"):
        zoo.load("fa_resnet20", weights=str(path), num_classes=5)  # all but the classifier
    with pytest.raises(ValueError, match="Could not load"):
        zoo.load("se_resnet20", weights=str(path))  # different architecture
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="Could not load"):
        zoo.load("fa_resnet20", weights=str(truncated))
    wrong_kind = tmp_path / "model.h5x"
    wrong_kind.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="'.weights.h5'"):
        zoo.load("fa_resnet20", weights=str(wrong_kind))


def test_a_failed_load_leaves_the_model_as_it_was(tmp_path):
    from keras_attn_zoo.loading import load_weights_file

    path = tmp_path / "se.weights.h5"
    zoo.load("se_resnet20").save_weights(path)
    model = zoo.load("fa_resnet20")
    before = model.get_weights()
    with pytest.raises(ValueError, match="Could not load"):
        load_weights_file(model, path)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_manifest_rows_are_verified(tmp_path, monkeypatch):
    from keras_attn_zoo import weights

    model = zoo.load("fa_resnet20")
    model.save_weights(tmp_path / "fa_resnet20_cifar10.weights.h5")
    good = weights.sha256(tmp_path / "fa_resnet20_cifar10.weights.h5")
    manifest = tmp_path / "manifest.json"
    monkeypatch.setattr(weights, "MANIFEST", manifest)
    row = {"model": "fa_resnet20", "tag": "cifar10", "file": "fa_resnet20_cifar10.weights.h5"}
    manifest.write_text('{"weights": [%s]}' % str({**row, "sha256": good}).replace("'", '"'))
    assert zoo.list_models(pretrained=True) == ["fa_resnet20"]
    x = sample_images(2)
    loaded = zoo.load("fa_resnet20", weights="cifar10")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    manifest.write_text('{"weights": [%s]}' % str({**row, "sha256": "0" * 64}).replace("'", '"'))
    with pytest.raises(ValueError, match="damaged"):
        zoo.load("fa_resnet20", weights="cifar10")


def test_layer_names_and_order_are_the_weight_format():
    """Weight files are matched by layer order and class; names are what Grad-CAM and
    converters use. Both must stay stable for a given architecture."""
    a, b = zoo.load("fa_se_resnet32"), zoo.load("fa_se_resnet32")
    assert [l.name for l in a.layers] == [l.name for l in b.layers]
    assert [type(l).__name__ for l in a.layers] == [type(l).__name__ for l in b.layers]
    assert keras.saving.get_registered_name(zoo.FocusAssociation) == "keras_attn_zoo>FocusAssociation"


_LOAD_IN_A_FRESH_PROCESS = """
import sys
import keras_attn_zoo
assert "keras" not in sys.modules  # the package alone imports no Keras...
{register}
import keras
model = keras.saving.load_model(sys.argv[1])  # ...and once used, its layers and models are registered
print(type(model).__name__, model.name)
"""


@pytest.mark.parametrize("register", ["import keras_attn_zoo.modelfile", "keras_attn_zoo.list_models()",
                                      "keras_attn_zoo.FocusAssociation"])
def test_a_saved_keras_file_loads_once_the_zoo_is_used(register, tmp_path):
    """README: a saved .keras model loads with keras.saving.load_model after the first use of the
    package (any public name) or after ``import keras_attn_zoo.modelfile``."""
    import subprocess
    import sys

    path = tmp_path / "abn.keras"
    zoo.load("abn_resnet20").save(path)
    result = subprocess.run([sys.executable, "-c", _LOAD_IN_A_FRESH_PROCESS.format(register=register), str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ABNModel", "abn_resnet20"]


@pytest.mark.parametrize("name,other", [("resnet20", "fa_resnet20"), ("se_resnet20", "fa_se_resnet20")])
def test_a_file_with_more_than_the_model_is_refused(name, other, monkeypatch):
    """Keras ignores a file's unused entries: FA-ResNet-20's file "loaded" into ResNet-20
    (top-1 85.6% -> 59.9%). The real bundled files are refused, naming the FA layers, before
    any weight changes; so is a load of all but the classifier."""
    from keras_attn_zoo.loading import load_weights_file
    from keras_attn_zoo.weights import MANIFEST

    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "1")
    path = MANIFEST.parent / f"{other}_cifar10.weights.h5"
    model = zoo.load(name)
    before = model.get_weights()
    unused = ("8 entries of the file that the model does not use \\(48 variables\\): "
              "layers/focus_association, layers/focus_association_1, .*nothing was loaded")
    with pytest.raises(ValueError, match=f"Could not load .*{other}_cifar10.weights.h5 into {name}: {unused}"):
        load_weights_file(model, path)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="that the model does not use .*layers/focus_association"):
        zoo.load(name, weights=str(path))
    for kwargs in ({"num_classes": 5}, {"include_top": False, "pooling": "avg"}):  # a new head
        with pytest.raises(ValueError, match="that the model does not use .*layers/focus_association"):
            zoo.load(name, weights=str(path), **kwargs)
    with pytest.raises(ValueError, match="of the model that the file lacks .*layers/focus_association"):
        zoo.load(other, weights=str(MANIFEST.parent / f"{name}_cifar10.weights.h5"))


@pytest.mark.parametrize("name", ["resnet20", "fa_resnet20"])
def test_the_right_bundled_file_still_loads_exactly(name, monkeypatch):
    from keras_attn_zoo.weights import MANIFEST

    monkeypatch.setenv("KERAS_ATTN_ZOO_OFFLINE", "1")
    x = sample_images(2)
    loaded = zoo.load(name, weights="cifar10")
    plain = zoo.load(name)
    plain.load_weights(MANIFEST.parent / f"{name}_cifar10.weights.h5")  # Keras' own loading
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), plain.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_file_saved_from_a_trained_model_loads_its_optimizer_state_aside(tmp_path):
    """A compiled, trained model's file also holds ``optimizer/...``: training state, not part
    of the model, so it is not compared (nor loaded into an uncompiled model)."""
    model = zoo.load("resnet20")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.train_on_batch(sample_images(2), np.array([0, 1]))
    path = tmp_path / "trained.weights.h5"
    model.save_weights(path)
    x = sample_images(2)
    again = zoo.load("resnet20", weights=str(path))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
