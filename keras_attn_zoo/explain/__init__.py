"""What a model attends to, as arrays: FA gates, SE channel weights, PAYA masks and gates,
Grad-CAM maps.

>>> import numpy as np, keras_attn_zoo as zoo
>>> from keras_attn_zoo.explain import explain
>>> result = explain(zoo.load("fa_se_resnet20"), np.zeros((2, 32, 32, 3), "float32"))
>>> result.grad_cam.shape, result.fa_gates["stage3_fa"].shape, result.se_weights["stage3_block3_se"].shape
((2, 8, 8), (2,), (2, 64))

Pictures of these (matplotlib, the ``viz`` extra) are in :mod:`keras_attn_zoo.explain.plots`.
"""

import dataclasses

import keras
import numpy as np

from keras_attn_zoo.explain.gates import (
    PayaAttention, fa_gates, fa_layers, gate_model, has_paya, paya_attention, se_layers, se_weights,
)
from keras_attn_zoo.explain.gradcam import grad_cam, resolve_layers
from keras_attn_zoo.explain.outputs import run, select_outputs, with_outputs


@dataclasses.dataclass
class Explanation:
    """What each attention mechanism of a model attends to, for a batch of images.

    Attributes:
        scores: the model's output, ``(batch, classes)``.
        class_index: the class each Grad-CAM map explains, ``(batch,)``.
        grad_cam: Grad-CAM maps in [0, 1], ``(batch, h, w)`` at the resolution of
            ``grad_cam_layer``.
        grad_cam_layer: the layer the maps were computed at.
        fa_gates: FA layer name -> gates k_i ``(batch,)``, in graph order (empty without FA).
        se_weights: SE layer name -> channel weights ``(batch, channels)`` (empty without SE).
        abn_attention_map: the attention branch's map M ``(batch, h, w, maps)`` at the branch
            point (None without an attention branch): in (0, 1) for classification ABN, one
            raw map per task for the multi-task ABN.
        paya: a PAYA model's masks per module and head, head gates, global gate weights and
            each module's own class prediction (a :class:`PayaAttention`; None without PAYA).
    """

    scores: np.ndarray
    class_index: np.ndarray
    grad_cam: np.ndarray
    grad_cam_layer: str
    fa_gates: dict
    se_weights: dict
    abn_attention_map: np.ndarray = None
    paya: PayaAttention = None


def _abn_map(model, images, batch_size):
    if "abn_attention_map" not in {layer.name for layer in model.layers}:
        return None
    probe = keras.Model(model.inputs, model.get_layer("abn_attention_map").output)
    return probe.predict(images, batch_size=batch_size, verbose=0)


def explain(model, images, class_index=None, gradcam_layer=None, batch_size=32):
    """Everything the model's attention mechanisms say about a batch of images, as arrays.

    Args:
        model: a functional ``keras.Model`` (any registry model, or your own).
        images: a batch of model inputs, ``(batch, H, W, C)`` (see
            ``keras_attn_zoo.images.preprocess``).
        class_index: the class Grad-CAM explains: None (each image's top class), an int, or
            one int per image. Defaults to None.
        gradcam_layer: the Grad-CAM layer. Defaults to the registry's ``gradcam_layer``;
            required for models not in the registry.
        batch_size: images per pass. Defaults to 32.

    Returns:
        An :class:`Explanation`.
    """
    images = np.asarray(images, dtype="float32")
    layer, _ = resolve_layers(model, gradcam_layer, None)
    maps, classes = grad_cam(model, images, class_index, layer=layer, batch_size=batch_size)
    return Explanation(
        scores=run(model, images, batch_size),
        class_index=classes,
        grad_cam=maps,
        grad_cam_layer=layer,
        fa_gates=fa_gates(model, images, batch_size) if fa_layers(model) else {},
        se_weights=se_weights(model, images, batch_size) if se_layers(model) else {},
        abn_attention_map=_abn_map(model, images, batch_size),
        paya=paya_attention(model, images, batch_size) if has_paya(model) else None,
    )


__all__ = [
    "Explanation",
    "PayaAttention",
    "explain",
    "fa_gates",
    "fa_layers",
    "gate_model",
    "paya_attention",
    "grad_cam",
    "se_layers",
    "se_weights",
    "select_outputs",
    "with_outputs",
]
