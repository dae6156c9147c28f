"""What the attention mechanisms attend to: values checked against known answers and against
the layers' own equations, and the pictures as real PNG files."""

import numpy as np
import pytest
from PIL import Image

import keras
import keras_attn_zoo as zoo
from helpers import sample_images
from keras_attn_zoo.cli import main
from keras_attn_zoo.explain import explain, fa_gates, grad_cam, se_layers, se_weights, select_outputs


def quadrant_model():
    """Channel 0 = relu(x), channel 1 = relu(-x); class c's logit is the mean of channel c.

    On an image that is positive in the top-left quadrant, negative in the bottom-right and
    zero elsewhere, Grad-CAM at ``features`` must be exactly the top-left quadrant for class 0
    and the bottom-right one for class 1.
    """
    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="features_conv")(inputs)
    x = keras.layers.ReLU(name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="quadrants")
    model.get_layer("features_conv").set_weights([np.array([[[[1.0, -1.0]]]])])
    model.get_layer("predictions").set_weights([np.eye(2), np.zeros(2)])
    return model


def quadrant_image():
    image = np.zeros((8, 8, 1), "float32")
    image[:4, :4] = 1.0
    image[4:, 4:] = -0.5
    return image


@pytest.mark.multibackend
def test_grad_cam_points_at_the_evidence_for_each_class():
    model = quadrant_model()
    images = np.stack([quadrant_image()] * 2)
    top_left, bottom_right = np.zeros((8, 8)), np.zeros((8, 8))
    top_left[:4, :4] = 1.0
    bottom_right[4:, 4:] = 1.0

    maps, classes = grad_cam(model, images, layer="features")  # class 0 wins: 16 > 8
    np.testing.assert_array_equal(classes, [0, 0])
    np.testing.assert_allclose(maps, [top_left, top_left], atol=1e-6)

    maps, classes = grad_cam(model, images, class_index=[0, 1], layer="features")
    np.testing.assert_array_equal(classes, [0, 1])
    np.testing.assert_allclose(maps, [top_left, bottom_right], atol=1e-6)
    raw, _ = grad_cam(model, images[:1], class_index=1, layer="features", normalize=False)
    np.testing.assert_allclose(raw[0], bottom_right * 0.5 / 64, atol=1e-7)  # relu(alpha * A): alpha = 1/64

    with pytest.raises(ValueError, match="not a registered model: pass layer="):
        grad_cam(model, images)
    with pytest.raises(ValueError, match="one 4D output"):
        grad_cam(model, images, layer="pool")
    with pytest.raises(ValueError, match=r"class_index must be in \[0, 2\)"):
        grad_cam(model, images, class_index=2, layer="features")


@pytest.mark.multibackend
def test_se_weights_are_the_factors_se_scales_its_input_by():
    from keras_attn_zoo.layers import SqueezeExcite

    inputs = keras.Input((8, 8, 3), name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = SqueezeExcite(2, name="block1_se")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv2")(x)
    x = SqueezeExcite(4, name="block2_se")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x))
    images = sample_images(4, (8, 8, 3))
    weights = se_weights(model, images)
    assert list(weights) == ["block1_se", "block2_se"]
    assert weights["block1_se"].shape == (4, 8) and weights["block2_se"].shape == (4, 16)
    for layer in se_layers(model):
        seen, scaled = (keras.ops.convert_to_numpy(t) for t in keras.Model(inputs, [layer.input, layer.output])(images))
        w = weights[layer.name]
        assert np.all((w > 0) & (w < 1)) and w.std() > 0
        np.testing.assert_allclose(w, keras.ops.convert_to_numpy(layer.excitation(seen)), atol=1e-6)
        np.testing.assert_allclose(scaled, seen * w[:, None, None, :], atol=1e-5)


def test_explain_collects_every_mechanism_for_a_batch():
    model = zoo.load("fa_se_resnet20")
    x = sample_images(3)
    result = explain(model, x)
    np.testing.assert_allclose(result.scores, model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_array_equal(result.class_index, result.scores.argmax(axis=1))
    assert result.grad_cam_layer == "stage3_block3_out"  # the registry's gradcam_layer
    assert result.grad_cam.shape == (3, 8, 8)
    np.testing.assert_allclose(result.grad_cam.max(axis=(1, 2)), 1.0)
    assert result.grad_cam.min() >= 0
    np.testing.assert_allclose(result.grad_cam, grad_cam(model, x)[0], atol=1e-6)
    gates = fa_gates(model, x)
    assert list(result.fa_gates) == list(gates)
    for name in gates:
        np.testing.assert_allclose(result.fa_gates[name], gates[name], atol=1e-6)
    assert list(result.se_weights) == [f"stage{s}_block{b}_se" for s in (1, 2, 3) for b in (1, 2, 3)]
    assert result.se_weights["stage3_block2_se"].shape == (3, 64)

    other = explain(model, x, class_index=4, gradcam_layer="stage2_block3_out")
    assert other.grad_cam.shape == (3, 16, 16) and list(other.class_index) == [4, 4, 4]

    plain = explain(zoo.load("resnet20"), x)
    assert plain.fa_gates == {} and plain.se_weights == {}


def test_selected_outputs_are_named_after_their_layers():
    model = zoo.load("fa_resnet20")
    outputs = select_outputs(model, ["stage3_fa:1", "stage2_block*_fa:1", "stage3_block3_out"])
    assert list(outputs) == [
        "predictions", "stage3_fa_1", "stage2_block2_fa_1", "stage2_block3_fa_1", "stage3_block3_out",
    ]
    assert outputs["stage3_fa_1"] is model.get_layer("stage3_fa").output[1]
    with pytest.raises(ValueError, match=r"has 2 outputs; select one as stage3_fa:0 \.\.\. stage3_fa:1"):
        select_outputs(model, ["stage3_fa"])
    with pytest.raises(ValueError, match="No layer of fa_resnet20 matches 'stage9_fa'"):
        select_outputs(model, ["stage9_fa:1"])
    with pytest.raises(ValueError, match="asks for index 2"):
        select_outputs(model, ["stage3_fa:2"])


def test_overlay_colours_the_map_over_the_image():
    import matplotlib

    from keras_attn_zoo.explain.plots import overlay

    heatmap = np.zeros((4, 4), "float32")
    heatmap[:2, :2] = 1.0
    out = overlay(np.zeros((32, 32, 3), "uint8"), heatmap, alpha=0.5)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # the map, upsampled to the image, in jet (1: dark red, 0: dark blue), half over black
    jet = matplotlib.colormaps["jet"]
    np.testing.assert_allclose(out[0, 0], 0.5 * 255 * np.array(jet(1.0)[:3]), atol=1)
    np.testing.assert_allclose(out[-1, -1], 0.5 * 255 * np.array(jet(0.0)[:3]), atol=1)
    assert out[0, 0, 0] > 60 and out[-1, -1, 2] > 60


def test_cli_explain_writes_a_png_of_the_promised_size(cifar_jpegs, tmp_path, capsys):
    from keras_attn_zoo.explain.plots import DPI, PANEL_INCHES

    photo = cifar_jpegs / "cat" / "0000.jpg"
    out = tmp_path / "pictures" / "cat.png"
    assert main(["explain", str(photo), "--model", "fa_resnet20", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "randomly initialised" in captured.err
    lines = captured.out.strip().split("\n")
    assert "Grad-CAM at stage3_block3_out" in lines[0]
    assert len([line for line in lines if "FA gate k =" in line]) == 8
    assert lines[-1] == f"wrote {out}"
    with Image.open(out) as image:
        assert image.format == "PNG"
        # image, Grad-CAM overlay, FA gates: three panels
        assert image.size == (3 * PANEL_INCHES * DPI, PANEL_INCHES * DPI)
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # a picture, not a blank canvas

    assert main(["explain", str(tmp_path / "missing.jpg"), "--model", "fa_resnet20", "-o", str(out)]) == 2
    assert "No such file" in capsys.readouterr().err


def test_abn_attention_map_is_drawn_on_its_absolute_scale(tmp_path):
    """The ABN panel is M over the image, not rescaled: all-ones is red, all-zeros blue. With one
    map per class (the multitask model) the explained class's map is the one drawn."""
    from keras_attn_zoo.explain import Explanation
    from keras_attn_zoo.explain.plots import DPI, PANEL_INCHES, abn_map_of, save_explanation

    def centre_of_panel(value):
        maps = np.full((1, 8, 8, 1), value, "float32")
        result = Explanation(scores=np.array([[0.2, 0.8]]), class_index=np.array([1]),
                             grad_cam=np.zeros((1, 8, 8)), grad_cam_layer="features", fa_gates={},
                             se_weights={}, abn_attention_map=maps)
        path = save_explanation(tmp_path / f"{value}.png", np.full((32, 32, 3), 128, "uint8"), result)
        with Image.open(path) as image:
            assert image.size == (3 * PANEL_INCHES * DPI, PANEL_INCHES * DPI)  # input, Grad-CAM, M
            pixels = np.asarray(image.convert("RGB")).astype(int)
        side = int(PANEL_INCHES * DPI)
        return pixels[side // 2 - 20:side // 2 + 20, 2 * side + side // 2 - 20:2 * side + side // 2 + 20].mean(axis=(0, 1))

    red, blue = centre_of_panel(1.0), centre_of_panel(0.0)
    assert red[0] > red[2] + 40 and blue[2] > blue[0] + 40  # jet: 1 dark red, 0 dark blue, 45% over grey

    per_class = np.stack([np.full((1, 4, 4), c, "float32") for c in range(3)], axis=-1)
    result = Explanation(scores=np.array([[0.1, 0.2, 0.7]]), class_index=np.array([2]), grad_cam=None,
                         grad_cam_layer="", fa_gates={}, se_weights={}, abn_attention_map=per_class)
    np.testing.assert_array_equal(abn_map_of(result), np.full((4, 4), 2.0))


def test_cli_explain_of_an_abn_model_reports_its_map(cifar_jpegs, tmp_path, capsys):
    from keras_attn_zoo.explain.plots import DPI, PANEL_INCHES
    from keras_attn_zoo.images import preprocess, read_image
    from keras_attn_zoo.models.abn import abn_outputs

    photo = cifar_jpegs / "cat" / "0000.jpg"
    out = tmp_path / "abn.png"
    keras.utils.set_random_seed(0)
    assert main(["explain", str(photo), "--model", "abn_resnet20", "-o", str(out)]) == 0
    (line,) = [line for line in capsys.readouterr().out.split("\n") if "ABN attention map M 16x16" in line]
    keras.utils.set_random_seed(0)
    model = zoo.load("abn_resnet20")
    maps = abn_outputs(model, preprocess(read_image(photo, (32, 32), 3)[None], None))["attention_map"]
    assert f"mean {maps.mean():.4f} (min {maps.min():.4f}, max {maps.max():.4f})" in line
    with Image.open(out) as image:
        assert image.size == (3 * PANEL_INCHES * DPI, PANEL_INCHES * DPI)


def test_the_picture_shows_what_the_model_saw_with_a_colour_bar_on_each_heat_map(cifar_jpegs, tmp_path,
                                                                                 monkeypatch):
    """A 64x48 photo: the picture shows it at the model's 32x32 (what the network saw), not as
    stored; Grad-CAM and the ABN map carry colour bars; the pictures take the figure's height
    (the charts' labels are laid out apart: no blank band below them); the FA chart says how to
    read the gates."""
    from keras_attn_zoo.explain import explain
    from keras_attn_zoo.explain import plots
    from keras_attn_zoo.images import preprocess, read_image
    from keras_attn_zoo.registry import load_for_inference

    photo = tmp_path / "wide.png"
    Image.open(cifar_jpegs / "frog" / "0002.jpg").resize((64, 48)).save(photo)
    drawn = []
    save = plots.save_explanation
    monkeypatch.setattr(plots, "save_explanation", lambda path, image, *rest: drawn.append(image) or save(path, image, *rest))
    assert main(["explain", str(photo), "--model", "fa_se_resnet20", "--weights", "cifar10",
                 "-o", str(tmp_path / "x.png")]) == 0
    (seen,) = drawn
    np.testing.assert_array_equal(seen, read_image(photo, (32, 32)))

    for name, bars in (("fa_se_resnet20", ["Grad-CAM / its maximum"]),
                       ("abn_resnet20", ["Grad-CAM / its maximum", "M (absolute)"])):
        loaded = load_for_inference(name, "cifar10")
        fig = plots.explanation_figure(seen, explain(loaded.model, preprocess(seen[None], loaded.normalization)))
        fig.draw_without_rendering()
        colour_bars = [ax for ax in fig.get_axes() if ax.get_label() == "<colorbar>"]
        pictures = [ax for ax in fig.get_axes() if ax.images]
        assert sorted(bar.get_ylabel() for bar in colour_bars) == sorted(bars), name
        assert all(ax.images[0].get_array().shape[:2] == (32, 32) for ax in pictures)
        assert all(ax.get_position().height > 0.75 for ax in pictures), name  # no blank quarter
        charts = [ax for ax in fig.get_axes() if ax.get_title() == "FA gates along depth"]
        assert (len(charts) == 1) == name.startswith("fa_")
        assert all(plots.FA_GATES_HOW_TO in ax.get_xlabel() for ax in charts)


def test_no_top5_for_five_or_fewer_classes():
    from keras_attn_zoo.training.trainer import accuracy_text, classification_metrics

    assert [m.name for m in classification_metrics(5)] == ["accuracy"]
    assert [m.name for m in classification_metrics(6)] == ["accuracy", "top5"]
    assert accuracy_text({"top1": 0.5, "top1_error": 50.0}) == "top-1 0.5000 (error 50.00%)"
    assert accuracy_text({"top1": 0.5, "top1_error": 50.0, "top5": 0.9}) == "top-1 0.5000 (error 50.00%), top-5 0.9000"
