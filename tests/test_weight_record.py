"""One record per weight file: every published row and every training record reads into a
``WeightRecord`` that carries all the facts its consumers need."""

import json

from keras_attn_zoo import weights
from keras_attn_zoo.data import ChannelStats


def test_every_published_row_reads_into_a_full_record():
    records = weights.published_weights()
    assert [(r.model, r.tag) for r in records] == [(r["model"], r["tag"]) for r in weights.published_rows()]
    for record in records:
        assert (weights.MANIFEST.parent / record.file).is_file() and len(record.sha256) == 64
        assert record.size > 0 and record.num_classes == len(record.class_names) == 10
        assert record.input_shape == (32, 32, 3) and isinstance(record.normalization, ChannelStats)
        assert record.dataset == "cifar10" and 0 < record.accuracy["top1"] < 1
        assert record.training["epochs_completed"] > 0 and record.training_log
        assert weights.published_weight(record.model, record.tag) == record
        assert weights.weight_record(record.model, record.tag) == record


def test_a_training_record_reads_into_the_same_type(tmp_path):
    stats = ChannelStats((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    path = tmp_path / "resnet20.weights.h5"
    assert weights.weight_record("resnet20", str(path)) is None  # no record beside it
    (tmp_path / "resnet20.json").write_text(json.dumps({
        "model": "resnet20", "file": path.name, "num_classes": 3, "input_shape": [16, 16, 3],
        "class_names": ["a", "b", "c"], "preprocessing": {**stats.to_dict(), "eval": {"image_size": [16, 16]}},
    }))
    record = weights.weight_record("resnet20", str(path))
    assert (record.model, record.tag, record.num_classes) == ("resnet20", None, 3)
    assert record.class_names == ("a", "b", "c") and record.input_shape == (16, 16, 3)
    assert record.normalization == stats and dict(record.eval_transform) == {"image_size": (16, 16)}


def _row(**fields):
    return {"model": "resnet20", "tag": "cifar10", "file": "resnet20_cifar10.weights.h5",
            "sha256": "ab" * 32, "size": 10, "num_classes": 10, **fields}


def test_a_manifest_row_without_a_required_field_names_the_file_row_and_field(tmp_path, monkeypatch):
    import pytest

    import keras_attn_zoo as zoo

    manifest = tmp_path / "manifest.json"
    monkeypatch.setattr(weights, "MANIFEST", manifest)
    row = _row()
    del row["sha256"]
    manifest.write_text(json.dumps({"weights": [_row(model="se_resnet20"), row]}))
    before = manifest.read_bytes()
    message = (f"The manifest {manifest} has a row resnet20:cifar10 without 'sha256' "
               "\\(every row needs model, tag, file, sha256\\)")
    with pytest.raises(ValueError, match=message):
        zoo.load("resnet20", weights="cifar10")
    with pytest.raises(ValueError, match=message):
        weights.published_weights()
    with pytest.raises(ValueError, match=f"{manifest} has a row \\?:cifar10 without 'model'"):
        weights.WeightRecord.from_row({k: v for k, v in _row().items() if k != "model"}, manifest=manifest)
    with pytest.raises(ValueError, match="'sha256' is not 64 lowercase hex digits: 'abc'"):
        weights.WeightRecord.from_row(_row(sha256="abc"), manifest=manifest)
    with pytest.raises(ValueError, match="'size' is not a number of bytes: '10'"):
        weights.WeightRecord.from_row(_row(size="10"), manifest=manifest)
    assert weights.WeightRecord.from_row({"model": "resnet20"}).sha256 is None  # a training record
    assert manifest.read_bytes() == before  # nothing rewritten


def test_a_broken_manifest_is_named_with_the_json_error_position(tmp_path, monkeypatch):
    import pytest

    import keras_attn_zoo as zoo

    manifest = tmp_path / "manifest.json"
    monkeypatch.setattr(weights, "MANIFEST", manifest)
    manifest.write_text('{"weights": [\n  {"model": "resnet20",}\n]}')
    with pytest.raises(ValueError, match=f"The manifest {manifest} is not valid JSON: Expecting property name "
                                         "enclosed in double quotes at line 2, column 24. Fix it \\(or restore it: git checkout weights/manifest.json\\)"):
        zoo.load("resnet20", weights="cifar10")
    manifest.write_text('[{"model": "resnet20"}]')
    with pytest.raises(ValueError, match='must be \\{"weights": \\[row, ...\\]\\}'):
        weights.published_weights()


def test_load_builds_the_classes_and_input_shape_the_weights_were_trained_with(tmp_path):
    """``load(name, weights=file)`` without num_classes is the weights' model: the training
    record's classes and input shape, or a record-less file's own classifier; loaded strictly."""
    import warnings

    import numpy as np

    import keras_attn_zoo as zoo

    trained = zoo.load("resnet20", num_classes=5, input_shape=(40, 40, 3))
    path = tmp_path / "resnet20.weights.h5"
    trained.save_weights(path)
    (tmp_path / "resnet20.json").write_text(json.dumps({"model": "resnet20", "num_classes": 5,
                                                        "input_shape": [40, 40, 3]}))
    x = np.random.default_rng(0).uniform(-2, 2, (2, 40, 40, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is skipped
        model = zoo.load("resnet20", weights=str(path))
    assert model.input_shape == (None, 40, 40, 3) and model.output_shape == (None, 5)
    np.testing.assert_array_equal(model.predict(x, verbose=0), trained.predict(x, verbose=0))
    (tmp_path / "resnet20.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = zoo.load("resnet20", weights=str(path), input_shape=(40, 40, 3))
    assert model.output_shape == (None, 5)  # the file's classifier says 5
