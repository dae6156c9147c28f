"""Every registered model builds, classifies and exposes the layer names its metadata promises."""

import re

import numpy as np
import pytest

from helpers import param_count, readme_counts, readme_macs, sample_images
from keras_attn_zoo import get_spec, list_models
from keras_attn_zoo.explain import fa_gates, fa_layers
from keras_attn_zoo.flops import count_macs
from keras_attn_zoo.layers import SqueezeExcite
from keras_attn_zoo.models import resnet


# Too big for a forward pass in the default suite on two cores; their counts are tested without
# one (tests/test_paya.py, tests/test_abn.py).
BIG = {"paya_wrn28_10", "paya_wrn40_10", "wrn40_10"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in list_models()]
)
def test_forward_pass_and_named_layers(name):
    spec = get_spec(name)
    shape = spec.input_shape
    if spec.builder is resnet and shape[0] > 64:  # size-agnostic: run a small batch, same weights
        model, shape = spec.build(name=name, input_shape=(None, None, 3)), (64, 64, 3)
    else:
        model = spec.build(name=name)
    # An eager call: tracing predict's tf.function costs ~10x the forward pass of a deep graph.
    probs = np.asarray(model(sample_images(2, shape), training=False))
    assert probs.shape == (2, spec.num_classes) and np.all(np.isfinite(probs))
    if spec.name.endswith("_multitask"):  # independent attribute probabilities
        assert np.all((probs >= 0) & (probs <= 1))
    else:
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert param_count(name, model) == readme_counts()[name]  # the README states real counts
    assert count_macs(model, spec.input_shape) == readme_macs()[name]  # and real multiply-adds

    names = {layer.name for layer in model.layers}
    assert {spec.classifier, spec.gradcam_layer} <= names
    if spec.name.endswith("_multitask"):  # not a single-label classifier: no DAT objective
        assert spec.dat_layers == ()
    else:  # the DAT objective's inner and last layers: one 4D output each, inner >= last in size
        inner, last = (model.get_layer(n).output.shape for n in spec.dat_layers)
        assert len(inner) == len(last) == 4 and inner[-1] and last[-1]
        assert inner[1] is None or inner[1] >= last[1]
    assert len(names) == len(model.layers)  # flat graph, unique names
    attention = spec.kwargs.get("attention", "abn")
    has_se = any(isinstance(layer, SqueezeExcite) for layer in model.layers)
    assert has_se == (attention in ("se", "fa_se", "abn_se"))
    has_branch = attention is not None and attention.startswith("abn")
    assert ("abn_attention_map" in names) == has_branch
    fa = [layer.name for layer in fa_layers(model)]
    assert bool(fa) == (attention in ("fa", "fa_se"))
    assert all(re.fullmatch(r"stage\d+(_block\d+)?_fa", n) for n in fa)


def test_fa_deployment_follows_fig_4():
    """FA-ResNet-20: blocks 2-3 of every stage, plus stages 2-3 as blocks; block 1 and stage 1
    are the benchmarks. The gates of a batch come from the same model (no copy)."""
    model = get_spec("fa_resnet20").build()
    gates = fa_gates(model, sample_images(3))
    assert sorted(gates) == sorted(
        [f"stage{s}_block{b}_fa" for s in (1, 2, 3) for b in (2, 3)] + ["stage2_fa", "stage3_fa"]
    )
    for k in gates.values():
        assert k.shape == (3,) and np.all((k > 0) & (k < 1))
    # stage-level association: stage3 sees [k_stage2, k'_stage3]
    assert tuple(model.get_layer("stage3_fa").association_expand.kernel.shape) == (2, 8)
    # the stage-level X is the first block's projection shortcut: 32 channels for stage 2
    assert tuple(model.get_layer("stage2_fa").focus_reduce.kernel.shape) == (32, 8)
    assert model.get_layer("stage2_fa").projection is None


def test_fa_se_keeps_se_inside_and_fa_around_the_block():
    model = get_spec("fa_se_resnet20").build()
    order = [layer.name for layer in model.layers]
    assert order.index("stage2_block2_se") < order.index("stage2_block2_add") < order.index("stage2_block2_fa")


def test_vgg_fa_projects_each_block_input():
    model = get_spec("fa_vgg19_bn").build()
    for s, (c_in, c_out) in zip((2, 3, 4, 5), ((64, 128), (128, 256), (256, 512), (512, 512))):
        fa = model.get_layer(f"stage{s}_fa")
        assert tuple(fa.projection.kernel.shape) == (1, 1, c_in, c_out)
        assert fa.projection.strides == (2, 2)


def test_float_image_sides_are_named_as_the_problem():
    """32.0 is not "less than 8 pixels": the message says the sides must be whole numbers."""
    import keras_attn_zoo as zoo

    with pytest.raises(ValueError, match=r"needs height and width of whole numbers \(int\), at least 8 pixels .*"
                                         r"got input_shape=\(32.0, 32, 3\)"):
        zoo.load("fa_resnet20", input_shape=(32.0, 32, 3))
    with pytest.raises(ValueError, match=r"needs height and width of at least 8 pixels"):
        zoo.load("fa_resnet20", input_shape=(4, 4, 3))
