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
