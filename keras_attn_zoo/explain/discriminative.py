"""The discriminative-attention view of any model: the gradient attention maps of the target
class and of the most confusing class, at the inner and last layers, with their soft IoU
(Wang et al., "Reducing Visual Confusion with Discriminative Attention", Eq. 3-6): what the DAT
objective (:mod:`keras_attn_zoo.training.dat`) lowers.

>>> import numpy as np, keras_attn_zoo as zoo
>>> result = discriminative_attention(zoo.load("resnet20"), np.zeros((2, 32, 32, 3), "float32"))
>>> result.maps["target_last"].shape, result.soft_iou_last.shape
((2, 8, 8), (2,))
"""

import dataclasses
from pathlib import Path

import numpy as np
import keras
from keras import ops

from keras_attn_zoo.explain.outputs import functional
from keras_attn_zoo.explain.plots import DPI, PANEL_INCHES, _as_uint8, add_colour_bar, overlay, require_matplotlib
from keras_attn_zoo.training.dat import dat_model


@dataclasses.dataclass
class DiscriminativeAttention:
    """The maps of a batch (inference mode) and their soft IoU.

    Attributes:
        scores: the model's output ``(batch, classes)``.
        target: the class explained ``(batch,)`` (the given class, else the top one).
        confusing: the highest-scoring other class ``(batch,)``.
        maps: ``target_inner``, ``confusing_inner``, ``target_last``, ``confusing_last``
            ``(batch, h, w)``, unnormalised, and the masks ``mask_last``, ``mask_inner``.
        soft_iou_inner, soft_iou_last: Eq. 6 per image ``(batch,)``, masked as in training.
        consistency: L_ac (Eq. 8) per image.
        inner_layer, last_layer: the layers the maps are at.
        attention: "channel" (A_ch) or "pixel" (A_px).
    """

    scores: np.ndarray
    target: np.ndarray
    confusing: np.ndarray
    maps: dict
    soft_iou_inner: np.ndarray
    soft_iou_last: np.ndarray
    consistency: np.ndarray
    inner_layer: str
    last_layer: str
    attention: str


def discriminative_attention(model, images, class_index=None, inner_layer=None, last_layer=None,
                             attention="channel", batch_size=32, progress=False):
    """Target and most-confusing-class attention maps of some images, with their soft IoU.

    Args:
        model: a functional classifier ending in a Dense layer (any registry model but the
            multi-task ABN).
        images: model inputs ``(batch, H, W, C)`` (see ``keras_attn_zoo.images.preprocess``).
        class_index: the target class (e.g. the true label): None (each image's top class),
            an int, or one int per image. Defaults to None.
        inner_layer, last_layer: the layers. Default to the registry's ``dat_layers``.
        attention: "channel" (A_ch) or "pixel" (A_px). Defaults to "channel".
        batch_size: images per pass. Defaults to 32.
        progress: show a progress bar over the images. Defaults to False.

    Returns:
        A :class:`DiscriminativeAttention`.
    """
    model = functional(model)
    wrapper = dat_model(model, objective={"inner_layer": inner_layer, "last_layer": last_layer,
                                          "attention": attention})
    images = np.asarray(images, dtype="float32")
    if len(images) == 0:
        raise ValueError("No images given: the batch is empty.")
    labels = None
    if class_index is not None:
        labels = np.broadcast_to(np.asarray(class_index, dtype="int64"), (len(images),))
        classes = model.output_shape[-1]
        if np.any(labels < 0) or np.any(labels >= classes):
            raise ValueError(f"class_index must be in [0, {classes}), got {labels.tolist()}.")
    bar = keras.utils.Progbar(len(images), unit_name="image") if progress else None
    parts = []
    for start in range(0, len(images), batch_size):
        chunk = None if labels is None else labels[start:start + batch_size]
        out = wrapper.dat_outputs(images[start:start + batch_size], chunk, training=False)
        parts.append({
            "scores": out["scores"], "target": out["target"], "confusing": out["confusing"],
            **out["maps"], **out["terms"],
        })
        if bar is not None:
            bar.add(len(out["scores"]))
    joined = {k: np.concatenate([ops.convert_to_numpy(p[k]) for p in parts]) for k in parts[0]}
    config = wrapper.dat_config
    return DiscriminativeAttention(
        scores=joined["scores"], target=joined["target"].astype("int64"),
        confusing=joined["confusing"].astype("int64"),
        maps={k: joined[k].astype("float32") for k in (
            "target_inner", "confusing_inner", "target_last", "confusing_last", "mask_last", "mask_inner")},
        soft_iou_inner=joined["siou_inner"], soft_iou_last=joined["siou_last"], consistency=joined["l_ac"],
        inner_layer=config.inner_layer, last_layer=config.last_layer, attention=attention,
    )


def save_discriminative_attention(path, image, result, index=0, class_names=None):
    """Save one image's target / confusing maps at both layers as a PNG (five panels: the
    image, then target and confusing class at the last layer, then at the inner layer). Each
    layer's pair shares one scale (divided by the larger maximum), so overlap is visible.

    Args:
        path: the PNG to write.
        image: the pixels the model was given ``(H, W, 3)`` (uint8, or float in [0, 1]).
        result: a :class:`DiscriminativeAttention`.
        index: which image of the batch. Defaults to 0.
        class_names: names of the classes. Defaults to class indices.

    Returns:
        The ``Path`` written.
    """

    _, Figure = require_matplotlib()
    image = _as_uint8(image)
    t, c = int(result.target[index]), int(result.confusing[index])

    def label(k):
        return f"{class_names[k] if class_names is not None else f'class {k}'} {result.scores[index, k]:.3f}"

    fig = Figure(figsize=(PANEL_INCHES * 5, PANEL_INCHES), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 5)
    axes[0].imshow(image)
    axes[0].set_title(f"input as the model saw it ({image.shape[0]}x{image.shape[1]})\ntarget {label(t)}\n"
                      f"confusing {label(c)}", fontsize=9)
    for i, (where, layer, siou) in enumerate((("last", result.last_layer, result.soft_iou_last),
                                              ("inner", result.inner_layer, result.soft_iou_inner))):
        pair = [result.maps[f"{kind}_{where}"][index] for kind in ("target", "confusing")]
        peak = max(float(np.max(pair[0])), float(np.max(pair[1])))
        for j, (kind, m) in enumerate(zip(("target", "confusing"), pair)):
            ax = axes[1 + 2 * i + j]
            ax.imshow(overlay(image, m / peak if peak > 0 else m))
            ax.set_title(f"{kind}: {label(t if kind == 'target' else c)}\n{layer} "
                         f"({m.shape[0]}x{m.shape[1]}), soft IoU {float(siou[index]):.3f}", fontsize=9)
            add_colour_bar(fig, ax, "map / the pair's maximum")
    for ax in axes:
        ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def overlap_summary(model, images, labels, batch_size=64, progress=False):
    """What the DAT objective changes, over a labelled set: the mean soft IoU (Eq. 6, masked as in
    training) of the true class's and the most confusing class's maps at both layers, the mean
    consistency term L_ac (Eq. 8), and top-1.

    Args:
        model: as for :func:`discriminative_attention`.
        images: model inputs ``(n, H, W, C)``.
        labels: the true classes ``(n,)``: each image's maps are of its true class.
        batch_size: images per pass. Defaults to 64.
        progress: show a progress bar. Defaults to False.

    Returns:
        A dict: ``images``, ``top1``, and for ``soft_iou_inner``, ``soft_iou_last`` and
        ``consistency`` the ``mean`` and its standard error ``sem`` over the images; plus the
        ``inner_layer`` and ``last_layer``.
    """
    labels = np.asarray(labels, dtype="int64")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    result = discriminative_attention(model, images, labels, batch_size=batch_size, progress=progress)
    summary = {"images": len(labels), "top1": float(np.mean(result.scores.argmax(-1) == labels)),
               "inner_layer": result.inner_layer, "last_layer": result.last_layer}
    for key in ("soft_iou_inner", "soft_iou_last", "consistency"):
        values = np.asarray(getattr(result, key), dtype="float64")
        sem = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
        summary[key] = {"mean": float(np.mean(values)), "sem": sem}
    return summary
