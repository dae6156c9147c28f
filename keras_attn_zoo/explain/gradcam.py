"""Grad-CAM (Selvaraju et al., ICCV 2017) for any functional model.

The map of class c at a layer with feature maps A^k is ``relu(sum_k alpha_k A^k)`` with
``alpha_k`` the spatial mean of d y^c / d A^k, y^c the class score before the softmax.
Gradients are not part of ``keras.ops``, so the one backend-specific step, the gradient,
covers the TensorFlow, JAX and PyTorch backends
(:mod:`keras_attn_zoo.autodiff`).
"""

import weakref

import keras
import numpy as np
from keras import ops

from keras_attn_zoo.autodiff import Probe as _Probe
from keras_attn_zoo.autodiff import gradient
from keras_attn_zoo.explain.outputs import functional
from keras_attn_zoo.registry import get_spec


_PROBES = weakref.WeakKeyDictionary()  # model -> {(layer, classifier): (probe model, probe)}


def registry_layers(model):
    """``(gradcam_layer, classifier)`` from the registry when ``model`` is a registered model."""
    try:
        spec = get_spec(model.name)
    except ValueError:
        return None, None
    names = {layer.name for layer in model.layers}
    return (
        spec.gradcam_layer if spec.gradcam_layer in names else None,
        spec.classifier if spec.classifier in names else None,
    )


def _probe_model(model, layer_name, classifier_name):
    """A model sharing ``model``'s layers: x -> [features (via a probe), classifier in, out]."""
    cache = _PROBES.setdefault(model, {})
    if (layer_name, classifier_name) in cache:
        return cache[layer_name, classifier_name]
    probe = _Probe(name=f"{layer_name}_gradcam_probe")
    captured = {}

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name == layer_name:
            out = probe(out)
            captured["features"] = out
        if layer.name == classifier_name:
            captured["inputs"], captured["scores"] = args[0], out
        return out

    clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    sub = keras.Model(
        clone.input, [captured["features"], captured["inputs"], captured["scores"]],
        name=f"{model.name}_gradcam",
    )
    cache[layer_name, classifier_name] = sub, probe
    return sub, probe


def resolve_layers(model, layer=None, classifier=None):
    """The Grad-CAM layer and classifier names: the given ones, else the registry's (the
    classifier falls back to the model's last layer); errors if they do not fit."""
    default_layer, default_classifier = registry_layers(model)
    layer = layer or default_layer
    classifier = classifier or default_classifier or model.layers[-1].name
    if layer is None:
        raise ValueError(
            f"{model.name} is not a registered model: pass layer=, the name of a layer with a "
            "4D output (batch, h, w, channels), e.g. the last convolutional block's output."
        )
    outputs = keras.tree.flatten(model.get_layer(layer).output)
    if len(outputs) != 1 or len(outputs[0].shape) != 4:
        raise ValueError(
            f"Grad-CAM needs a layer with one 4D output (batch, h, w, channels); {layer} outputs "
            f"{[tuple(t.shape) for t in outputs]}."
        )
    model.get_layer(classifier)
    return layer, classifier


def _class_scores(classifier, inputs, scores):
    """The score y^c to differentiate: a Dense classifier's pre-activation, else its output."""
    if isinstance(classifier, keras.layers.Dense):
        logits = ops.matmul(inputs, classifier.kernel)
        return logits + classifier.bias if classifier.use_bias else logits
    return scores


def grad_cam(model, images, class_index=None, layer=None, classifier=None, batch_size=32, normalize=True):
    """Grad-CAM maps of a batch: where the evidence for a class lies at one layer.

    Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization" (ICCV 2017).

    Args:
        model: a functional (or built Sequential) ``keras.Model``.
        images: a batch of model inputs, ``(batch, H, W, C)``.
        class_index: the class to explain: None (each image's top class), an int (the same for
            all) or one int per image. Defaults to None.
        layer: name of the layer whose feature maps are weighted. Defaults to the registry's
            ``gradcam_layer`` for registered models; required for other models.
        classifier: name of the layer giving class scores; a Dense layer is read before its
            activation. Defaults to the registry's ``classifier``, else the last layer.
        batch_size: images per pass. Defaults to 32.
        normalize: scale each map to a maximum of 1. Defaults to True.

    Returns:
        ``(maps, class_index)``: float32 maps ``(batch, h, w)`` at the layer's resolution,
        non-negative (in [0, 1] when normalised), and the int array ``(batch,)`` of the classes.

    Example:
    >>> import keras_attn_zoo as zoo
    >>> maps, classes = grad_cam(zoo.load("resnet20"), np.zeros((2, 32, 32, 3), "float32"))
    >>> maps.shape
    (2, 8, 8)
    """
    model = functional(model)
    layer, classifier = resolve_layers(model, layer, classifier)
    sub, probe = _probe_model(model, layer, classifier)
    dense = model.get_layer(classifier)
    images = np.asarray(images, dtype="float32")
    if class_index is not None:
        class_index = np.broadcast_to(np.asarray(class_index, dtype="int64"), (len(images),))
    maps, classes = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        features, inputs, scores = sub(x, training=False)
        chosen = (
            np.argmax(ops.convert_to_numpy(scores), axis=-1)
            if class_index is None else class_index[start:start + batch_size]
        )
        n_classes = ops.shape(scores)[-1]
        if np.any(chosen < 0) or np.any(chosen >= n_classes):
            raise ValueError(f"class_index must be in [0, {n_classes}), got {chosen.tolist()}.")
        onehot = ops.one_hot(ops.convert_to_tensor(chosen), n_classes)

        def score(offset):
            probe.offset = offset
            try:
                features, inputs, scores = sub(x, training=False)
            finally:
                probe.offset = None
            return ops.sum(_class_scores(dense, inputs, scores) * onehot), features

        grads, features = gradient(score, ops.zeros(ops.shape(features)), "Grad-CAM")
        alpha = ops.mean(grads, axis=(1, 2), keepdims=True)
        cam = ops.convert_to_numpy(ops.relu(ops.sum(alpha * features, axis=-1)))
        maps.append(cam)
        classes.append(np.asarray(chosen))
    maps = np.concatenate(maps).astype("float32")
    if normalize:
        peak = maps.max(axis=(1, 2), keepdims=True)
        maps = np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
    return maps, np.concatenate(classes).astype("int64")
