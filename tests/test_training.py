"""Recipes, schedules, PyTorch's SGD, and the whole train -> publish -> evaluate -> results flow
on the real CIFAR-10 copy (a small subset, one epoch)."""

import csv
import json

import numpy as np
import pytest

import keras

import keras_attn_zoo as zoo
from helpers import CIFAR10_ARCHIVE
from keras_attn_zoo import weights
from keras_attn_zoo.cli import main
from keras_attn_zoo.training import (
    CoupledSGD,
    OneCycle,
    get_recipe,
    learning_rate_schedule,
    train,
)
from keras_attn_zoo.training.trainer import CHECKOUT, command_line, git_commit


def test_recipes_are_the_papers_and_overridable():
    fanet = get_recipe("fanet_cifar")
    assert (fanet.epochs, fanet.batch_size, fanet.learning_rate, fanet.momentum, fanet.weight_decay) == (240, 128, 0.1, 0.9, 5e-4)
    assert fanet.milestones == (60, 120, 180) and fanet.gamma == 0.1 and fanet.augmentation == "cifar"
    abn = get_recipe("abn_cifar")
    assert (abn.epochs, abn.batch_size, abn.milestones, abn.weight_decay) == (300, 128, (150, 225), 1e-4)
    imagenet = get_recipe("imagenet")
    assert (imagenet.epochs, imagenet.batch_size, imagenet.milestones, imagenet.weight_decay) == (90, 256, (30, 60), 1e-4)
    assert imagenet.augmentation == "imagenet"
    short = get_recipe("fanet_cifar", epochs=1, batch_size=None)  # None keeps the recipe's value
    assert short.epochs == 1 and short.batch_size == 128 and get_recipe("fanet_cifar").epochs == 240
    with pytest.raises(ValueError, match=r"Unknown recipe field\(s\) \['epoch'\]"):
        get_recipe("fanet_cifar", epoch=3)
    with pytest.raises(ValueError, match="Unknown recipe 'sgdr'"):
        get_recipe("sgdr")
    with pytest.raises(ValueError, match="milestones must be increasing"):
        get_recipe("fanet_cifar", milestones=(120, 60))
    with pytest.raises(ValueError, match="schedule must be one of"):
        get_recipe("cosine", schedule="linear")


@pytest.mark.multibackend
def test_schedules():
    def lr(schedule, step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    step = learning_rate_schedule(get_recipe("fanet_cifar"), steps_per_epoch=10)
    # PyTorch's MultiStepLR: epochs 0-59 at 0.1, epoch 60 (steps 600...) at 0.01, 120 at 0.001.
    assert [lr(step, s) for s in (0, 599, 600, 1199, 1200, 1800)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 1e-4])
    assert learning_rate_schedule(get_recipe("fanet_cifar", epochs=1), 10) == 0.1  # no milestone reached
    cosine = learning_rate_schedule(get_recipe("cosine", epochs=2), steps_per_epoch=10)
    assert [lr(cosine, s) for s in (0, 10, 20)] == pytest.approx([0.1, 0.05, 0.0], abs=1e-7)
    cycle = learning_rate_schedule(get_recipe("onecycle", epochs=10), steps_per_epoch=10)
    assert isinstance(cycle, OneCycle)
    values = [lr(cycle, s) for s in range(100)]
    assert values[0] == pytest.approx(0.1 / 25) and max(values) == pytest.approx(0.1, rel=1e-3)
    assert int(np.argmax(values)) == 29 and values[-1] == pytest.approx(0.1 / 25 / 1e4, rel=1e-3)
    assert OneCycle.from_config(cycle.get_config()).get_config() == cycle.get_config()


def torch_sgd(w, grads, lrs, momentum, weight_decay, nesterov):
    """torch.optim.SGD's update (dampening 0), written out in NumPy."""
    w, buf = w.copy(), None
    for g, lr in zip(grads, lrs):
        d = g + weight_decay * w
        buf = d.copy() if buf is None else momentum * buf + d
        w = w - lr * (d + momentum * buf if nesterov else buf)
    return w


@pytest.mark.multibackend
@pytest.mark.parametrize("nesterov", [False, True])
def test_coupled_sgd_is_pytorchs_update(nesterov):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype("float32")
    grads = [rng.normal(size=(3, 4)).astype("float32") for _ in range(6)]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.1, 0.01])  # lr drops at step 3
    variable = keras.Variable(w0)
    optimizer = CoupledSGD(schedule, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    expected = torch_sgd(w0, grads, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01], 0.9, 5e-4, nesterov)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5, atol=1e-6)
    keras_sgd = keras.Variable(w0)  # Keras' own SGD decays weights decoupled: another result
    other = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
    for g in grads:
        other.apply_gradients([(keras.ops.convert_to_tensor(g), keras_sgd)])
    assert np.abs(keras.ops.convert_to_numpy(keras_sgd) - expected).max() > 1e-3
    config = optimizer.get_config()
    assert config["weight_decay"] == 5e-4 and CoupledSGD.from_config(config).coupled_weight_decay == 5e-4


def test_train_publish_evaluate_results(tmp_path, monkeypatch, capsys):
    """`keras-attn-zoo train resnet20 --data <CIFAR-10 copy>` -> weights, record, manifest row,
    results row; on a 256-image subset for one epoch."""
    manifest = tmp_path / "repo" / "weights" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"weights": []}')
    monkeypatch.setattr(weights, "MANIFEST", manifest)
    results = tmp_path / "repo" / "docs" / "results.md"
    run = tmp_path / "run"
    argv = ["train", "resnet20", "--data", str(CIFAR10_ARCHIVE), "--epochs", "1", "--batch-size", "64",
            "--limit", "256", "--eval-limit", "200", "--output", str(run), "--verbose", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "fanet_cifar: epochs 1, batch 64, SGD m 0.9" in out and "one device" in out

    record = json.loads((run / "resnet20.json").read_text())
    assert record["model"] == "resnet20" and record["dataset"] == "cifar10" and record["num_classes"] == 10
    assert record["accuracy"]["data"] == "CIFAR-10 (JPEG copy, quality 75), test split, 200 images"
    assert record["training"]["data"] == "CIFAR-10 (JPEG copy, quality 75), train split, 256 images"
    assert record["training"]["command"] == command_line("keras-attn-zoo", argv)  # paths as typed in the checkout
    assert record["training"]["recipe"]["epochs"] == 1 and record["training"]["recipe"]["weight_decay"] == 5e-4
    assert record["training"]["epochs_completed"] == 1 and record["training"]["time_s"] > 0
    assert record["training"]["commit"] == git_commit() and "resumed_with_commit" not in record["training"]
    assert record["sha256"] == weights.sha256(run / "resnet20.weights.h5")
    assert record["preprocessing"]["scale"] == 255 and len(record["preprocessing"]["mean"]) == 3
    assert 0 <= record["accuracy"]["top1"] <= record["accuracy"]["top5"] <= 1
    with open(run / "training_log.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["learning_rate"]) == pytest.approx(0.1) and float(row["epoch_seconds"]) > 0
    assert (run / "resnet20.best.weights.h5").is_file() and (run / "tensorboard").is_dir()
    assert not (run / "backup").exists()  # removed once training finished

    # The file is the bare registry model's: it loads strictly with the default softmax head.
    model = zoo.load("resnet20", weights=str(run / "resnet20.weights.h5"))
    assert model.output_shape == (None, 10)
    assert main(argv) == 2 and "holds a finished run" in capsys.readouterr().err

    assert main(["publish", str(run / "resnet20.weights.h5"), "--tag", "cifar10",
                 "--manifest", str(manifest), "--results", str(results)]) == 0
    (published,) = json.loads(manifest.read_text())["weights"]
    copied = manifest.parent / "resnet20_cifar10.weights.h5"
    assert published["file"] == copied.name and published["sha256"] == weights.sha256(copied)
    assert published["size"] == copied.stat().st_size and published["input_shape"] == [32, 32, 3]
    assert published["accuracy"] == record["accuracy"] and published["training"] == record["training"]
    assert published["preprocessing"] == record["preprocessing"]
    log = manifest.parent / published["training_log"]
    assert log.name == "resnet20_cifar10.training_log.csv"
    assert log.read_text() == (run / "training_log.csv").read_text()
    assert zoo.list_models(pretrained=True) == ["resnet20"]
    assert main(["publish", str(run / "resnet20.weights.h5"), "--tag", "cifar10", "--manifest", str(manifest)]) == 2
    assert "already has resnet20:cifar10" in capsys.readouterr().err
    # a log an earlier version numbered from 0 (Keras' CSVLogger) is published counting from 1
    header, first = (run / "training_log.csv").read_text().splitlines()
    (run / "training_log.csv").write_text(f"{header}\n0{first[1:]}\n")
    assert main(["publish", str(run / "resnet20.weights.h5"), "--tag", "cifar10", "--overwrite",
                 "--manifest", str(manifest), "--results", str(results)]) == 0
    assert log.read_text().splitlines() == [header, first] and first.startswith("1,")

    # Users' images get the recorded normalisation; the published tag measures the same.
    images = np.full((1, 32, 32, 3), 128, "uint8")
    mean, std = np.array(record["preprocessing"]["mean"]), np.array(record["preprocessing"]["std"])
    normalised = zoo.preprocess_input("resnet20", images, weights="cifar10")
    np.testing.assert_allclose(normalised[0, 0, 0], (128 / 255 - mean) / std, rtol=1e-5)
    assert main(["evaluate", "resnet20", "--weights", "cifar10", "--data", str(CIFAR10_ARCHIVE),
                 "--limit", "200", "--record", "--manifest", str(manifest), "--results", str(results)]) == 0
    (measured,) = json.loads(manifest.read_text())["weights"]
    assert measured["accuracy"]["top1"] == record["accuracy"]["top1"]
    assert measured["accuracy"]["command"].startswith("keras-attn-zoo evaluate resnet20 --weights cifar10")
    # --all re-measures every row against the manifest, and says when a number does not reproduce.
    verify = ["evaluate", "--all", "--data", str(CIFAR10_ARCHIVE), "--limit", "200", "--manifest", str(manifest)]
    assert main(verify) == 0
    assert "resnet20:cifar10" in (line := capsys.readouterr().out) and "on 200 images: OK" in line
    tampered = json.loads(manifest.read_text())
    tampered["weights"][0]["accuracy"]["top1"] += 0.01
    manifest.write_text(json.dumps(tampered))
    assert main(verify) == 2
    assert "MISMATCH" in capsys.readouterr().out
    table = results.read_text()
    error = f"{record['accuracy']['top1_error']:.2f}%"
    assert f"| `resnet20` | cifar10 | {error} | 7.70% (FANet Table I) | CIFAR-10 (JPEG copy, quality 75), test split, 200 images | fanet_cifar: epochs 1, batch 64, step lr 0.1, wd 0.0005 |" in table


def test_the_recipe_text_says_what_a_run_set_beyond_the_recipe():
    from keras_attn_zoo.training.evaluate import recipe_text

    recipe = {"name": "onecycle", "epochs": 40, "batch_size": 128, "schedule": "onecycle", "learning_rate": 0.1,
              "weight_decay": 0.0005}
    plain = "onecycle: epochs 40, batch 128, onecycle lr 0.1, wd 0.0005"
    assert recipe_text({"recipe": recipe, "objective": {"name": "cross_entropy"}, "seed": 0, "model_options": {}}) == plain
    assert recipe_text({"recipe": recipe}) == plain  # rows written before these fields
    assert recipe_text({"recipe": recipe, "epochs_completed": 12}).startswith("onecycle: epochs 12,")
    assert recipe_text({"recipe": recipe, "objective": {"name": "dat", "attention": "channel"}, "seed": 1,
                        "model_options": {"auxiliary_weight": 0.3}}) == (
        plain + "; objective dat; auxiliary_weight=0.3; seed 1")


def test_the_results_page_states_the_seeds_spread_and_each_other_tag_against_it():
    from keras_attn_zoo.training.evaluate import noise_lines, results_markdown

    recipe = {"name": "onecycle", "epochs": 40, "batch_size": 128, "schedule": "onecycle", "learning_rate": 0.1,
              "weight_decay": 0.0005}
    data = "CIFAR-10 (JPEG copy, quality 75), test split, 10,000 images"

    def row(model, tag, error, **training):
        return weights.WeightRecord(model=model, tag=tag, accuracy={"top1_error": error, "data": data, "images": 10000},
                                    training={"recipe": recipe, **training})

    records = [row("resnet20", "cifar10", 12.14), row("resnet20", "cifar10_seed1", 12.40, seed=1),
               row("resnet20", "cifar10_dat", 11.50, objective={"name": "dat"}, seed=0),
               row("se_resnet20", "cifar10", 12.0)]  # one seed: no spread to state
    plain = "onecycle: epochs 40, batch 128, onecycle lr 0.1, wd 0.0005"
    assert noise_lines(records) == [
        f"- `resnet20`, {plain}, {data}: cifar10 (seed 0) 12.14%, cifar10_seed1 (seed 1) 12.40%; "
        "spread **0.26 points**, mean 12.27%; the test set's sampling error of one run: 0.33 points "
        "(binomial standard error, 10,000 images).",  # sqrt(0.1227 * 0.8773 / 10000) = 0.00328
        f"  - cifar10_dat ({plain}; objective dat): 11.50%, -0.77 points from the seeds' mean."]
    assert noise_lines(records[2:]) == []
    assert "No model is published with two seeds of one recipe yet" in results_markdown([])


def test_results_page_is_generated_from_the_manifest():
    from keras_attn_zoo.training.evaluate import RESULTS, results_markdown

    assert RESULTS.read_text() == results_markdown(weights.published_rows()), (
        "docs/results.md is stale: keras_attn_zoo.training.write_results() rewrites it"
    )


def test_mixed_precision_trains_and_saves_float32(tmp_path):
    record = train("resnet20", CIFAR10_ARCHIVE, "cosine", output_dir=tmp_path, epochs=1, batch_size=32,
                   limit=32, eval_limit=32, mixed_precision="bfloat16", verbose=0)
    assert record["training"]["mixed_precision"] == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    model = zoo.load("resnet20", weights=str(tmp_path / "resnet20.weights.h5"))
    assert {w.dtype for w in model.weights} == {"float32"}
    assert np.isfinite(model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)).all()


def test_strategy_choice(monkeypatch):
    from keras_attn_zoo.training import distribute

    cluster = {"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222", "h2:2222"]}, "task": {"type": "chief", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert distribute._tf_config_workers() == 3  # "auto" would pick multi_worker
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.get_distribution("auto")
    monkeypatch.delenv("TF_CONFIG")
    single = distribute.get_distribution("auto")  # one CPU, no GPU, no TPU
    assert single.name == "none" and single.num_replicas == 1 and single.strategy is None
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.get_distribution("horovod")


def test_imagenet_wrapper_crops_any_larger_image():
    from keras_attn_zoo.data import ChannelStats
    from keras_attn_zoo.training.trainer import data_transforms, training_model

    assert data_transforms("imagenet", (224, 224)) == (
        {"image_size": (256, 256)}, {"image_size": (224, 224), "resize_shorter": 256}
    )
    model = zoo.load("resnet20", input_shape=(24, 24, 3), classifier_activation=None)
    wrapper = training_model(model, ChannelStats((0.5,) * 3, (0.25,) * 3), "imagenet", seed=0)
    assert wrapper.input_shape == (None, None, None, 3)
    wrapper.compile(optimizer=CoupledSGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = np.random.default_rng(0).integers(0, 256, (4, 27, 27, 3)).astype("uint8")
    history = wrapper.fit(images, np.arange(4) % 10, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert wrapper.predict(images, verbose=0).shape == (4, 10)  # center crop at inference
    crops = keras.Model(wrapper.inputs, wrapper.get_layer("random_resized_crop").output)
    np.testing.assert_array_equal(crops.predict(images, verbose=0), images[:, 1:25, 1:25])


def test_abn_wrapper_trains_both_branches():
    """The trainer's wrapper of an ABN model adds L_att to the perception loss (Eq. 3), and
    its predictions are the bare model's on normalised images."""
    from keras_attn_zoo.data import ChannelStats
    from keras_attn_zoo.models.abn import ABNModel
    from keras_attn_zoo.training.trainer import training_model

    stats = ChannelStats((0.5,) * 3, (0.25,) * 3)
    model = zoo.load("abn_resnet20", input_shape=(16, 16, 3), classifier_activation=None)
    wrapper = training_model(model, stats, "none")
    assert isinstance(wrapper, ABNModel) and wrapper.output_shape == (None, 10)
    wrapper.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("float32")
    labels = np.array([1, 2, 3, 4])
    outputs = wrapper(images, training=True)
    assert sorted(outputs) == ["abn_logits", "predictions"]

    def cross_entropy(logits):
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)))

    expected = cross_entropy(outputs["predictions"]) + cross_entropy(outputs["abn_logits"])
    assert float(wrapper.compute_loss(images, labels, outputs)) == pytest.approx(expected, rel=1e-5)
    normalised = (images / 255 - 0.5) / 0.25
    np.testing.assert_allclose(wrapper.predict(images, verbose=0), model.predict(normalised, verbose=0), atol=1e-4)


def test_bad_training_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="mixed_precision must be"):
        train("resnet20", CIFAR10_ARCHIVE, output_dir=tmp_path, mixed_precision="float8")
    with pytest.raises(ValueError, match="data_parallel is the JAX backend's strategy"):
        train("resnet20", CIFAR10_ARCHIVE, output_dir=tmp_path, strategy="data_parallel")
    with pytest.raises(ValueError, match="Unknown model name"):
        train("resnet21", CIFAR10_ARCHIVE, output_dir=tmp_path)
    with pytest.raises(ValueError, match="Unknown recipe field"):
        train("resnet20", CIFAR10_ARCHIVE, output_dir=tmp_path, epoch=1)


def test_recorded_commands_name_paths_as_typed_in_the_repository(tmp_path):
    """Records hold the command as a user of the repository types it: this machine's absolute
    paths (the data, the output folder) relative to the checkout, whatever the option style."""
    root = tmp_path / "repo"
    argv = ["train", "resnet20", "--data", str(tmp_path / "shared" / "data" / "cifar10-jpeg.tar.gz"),
            f"--output={root / 'runs' / 'r20'}", "--epochs", "40", "--recipe", "onecycle"]
    assert command_line("keras-attn-zoo", argv, root=root) == (
        "keras-attn-zoo train resnet20 --data ../shared/data/cifar10-jpeg.tar.gz --output=runs/r20 "
        "--epochs 40 --recipe onecycle"
    )
    assert command_line("keras-attn-zoo", argv, root=None).split()[4] == str(tmp_path / "shared" / "data" / "cifar10-jpeg.tar.gz")
    assert command_line("keras-attn-zoo", ["--output", "/elsewhere/run"], root=root) == "keras-attn-zoo --output /elsewhere/run"
    assert CHECKOUT is not None and (CHECKOUT / "setup.cfg").is_file()  # the tests run from a checkout
    # relative paths, names and numbers are kept as typed
    assert command_line("keras-attn-zoo", ["evaluate", "resnet20", "--data", "../x.tar.gz"]) == \
        "keras-attn-zoo evaluate resnet20 --data ../x.tar.gz"
