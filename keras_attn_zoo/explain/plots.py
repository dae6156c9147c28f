"""Pictures of attention (matplotlib, the ``viz`` extra): Grad-CAM and ABN attention-map overlays,
FA gates, SE weights.

>>> import numpy as np, keras_attn_zoo as zoo
>>> from keras_attn_zoo.explain import explain
>>> images = np.zeros((1, 32, 32, 3), "float32")
>>> path = save_explanation("out.png", images[0], explain(zoo.load("fa_resnet20"), images))
"""

from pathlib import Path

import numpy as np

PANEL_INCHES = 4.0
DPI = 100


def require_matplotlib():
    """``(matplotlib, Figure)``; an ImportError that names the extra when matplotlib is missing."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "Pictures of attention need matplotlib: pip install 'keras_attn_zoo[viz]'."
        ) from e
    return matplotlib, Figure


def _as_uint8(image):
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image * 255.0 if image.max() <= 1.0 else image, 0, 255).astype("uint8")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"Expected an image (H, W, 3) or (H, W, 1), got shape {image.shape}.")
    return image


def overlay(image, heatmap, alpha=0.45, cmap="jet"):
    """A map drawn over an image: upsampled (bilinear) to the image, coloured and blended.

    Args:
        image: pixels ``(H, W, 3)``, uint8 in [0, 255] or float in [0, 1].
        heatmap: a map ``(h, w)`` with values in [0, 1] (e.g. a Grad-CAM map).
        alpha: weight of the coloured map. Defaults to 0.45.
        cmap: a matplotlib colormap name. Defaults to "jet".

    Returns:
        A uint8 RGB array ``(H, W, 3)``.
    """
    from PIL import Image

    matplotlib, _ = require_matplotlib()
    image = _as_uint8(image)
    heatmap = np.asarray(heatmap, dtype="float32")
    if heatmap.ndim != 2:
        raise ValueError(f"Expected a map of shape (h, w), got {heatmap.shape}.")
    resized = Image.fromarray(heatmap).resize((image.shape[1], image.shape[0]), Image.BILINEAR)
    colours = matplotlib.colormaps[cmap](np.clip(np.asarray(resized), 0, 1))[..., :3] * 255.0
    return (image * (1 - alpha) + colours * alpha).astype("uint8")


def plot_fa_gates(ax, gates, index=0):
    """Bar chart of the FA gates k_i of one image along the depth of the network.

    Args:
        ax: a matplotlib Axes.
        gates: FA layer name -> gates ``(batch,)`` in graph order (``Explanation.fa_gates``).
        index: which image of the batch. Defaults to 0.
    """
    names = list(gates)
    values = [float(gates[name][index]) for name in names]
    colours = ["tab:orange" if "block" not in name else "tab:blue" for name in names]
    ax.bar(range(len(names)), values, color=colours)
    ax.set_xticks(range(len(names)), [n.removesuffix("_fa") for n in names], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("k_i (0: block skipped, 1: kept)")
    ax.set_title("FA gates along depth (orange: stage level)", fontsize=9)


def plot_se_weights(ax, weights, index=0):
    """Box plot of each SE layer's channel weights for one image, along depth.

    Args:
        ax: a matplotlib Axes.
        weights: SE layer name -> ``(batch, channels)`` (``Explanation.se_weights``).
        index: which image of the batch. Defaults to 0.
    """
    names = list(weights)
    ax.boxplot([weights[name][index] for name in names], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), [n.removesuffix("_se") for n in names], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("channel weight")
    ax.set_title("SE channel weights along depth", fontsize=9)


def abn_map_of(explanation, index=0):
    """The ABN attention map M ``(h, w)`` of one image: its only map, or (one map per class, as
    in the multitask model) the map of the class Grad-CAM explains; None without a branch."""
    maps = explanation.abn_attention_map
    if maps is None:
        return None
    c = int(explanation.class_index[index])
    return maps[index, :, :, c if maps.shape[-1] > 1 else 0]


def paya_mosaic(image, masks):
    """Every head's mask of one module drawn over the image, tiled in a grid (row-major).

    Each mask is scaled to its own maximum (a spatial softmax sums to 1, so its values shrink
    with the map's size). ``masks`` is ``(h, w, heads)``; returns a uint8 RGB mosaic.
    """
    image = _as_uint8(image)
    heads = masks.shape[-1]
    cols = int(np.ceil(np.sqrt(heads)))
    rows = int(np.ceil(heads / cols))
    tiles = [overlay(image, masks[..., k] / max(float(masks[..., k].max()), 1e-12)) for k in range(heads)]
    tiles += [np.full_like(image, 255)] * (rows * cols - heads)
    return np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def plot_paya_module(ax, image, paya, module, index=0, class_names=None):
    """One PAYA module's panel: its heads' masks over the image, head gates, own prediction and
    global gate weight."""
    masks = paya.masks[module][index]
    gates = paya.head_gates[module][index]
    scores = paya.module_scores[module][index]
    c = int(scores.argmax())
    label = class_names[c] if class_names is not None else f"class {c}"
    ax.imshow(paya_mosaic(image, masks))
    ax.axis("off")
    ax.set_title(
        f"{module} masks ({masks.shape[0]}x{masks.shape[1]}), head gates "
        + " ".join(f"{g:.2f}" for g in gates)
        + f"\nown prediction {label} {scores[c]:.3f}; global gate {paya.global_gates[module][index]:.3f}",
        fontsize=8,
    )


def save_explanation(path, image, explanation, index=0, class_names=None):
    """Save one image's explanation as a PNG: the image, the Grad-CAM overlay and, when the
    model has them, the ABN attention map M (on its absolute 0-1 scale, not rescaled), the FA
    gates, the SE weights along depth and, per PAYA module, every head's mask over the image
    (each scaled to its own maximum) with the head gates, the module's own prediction and its
    global gate weight.

    The figure is ``PANEL_INCHES * DPI`` = 400 pixels high and 400 pixels wide per panel.

    Args:
        path: where to write the PNG.
        image: the image's pixels ``(H, W, 3)`` at any size (uint8, or float in [0, 1]).
        explanation: an ``Explanation`` from ``keras_attn_zoo.explain.explain``.
        index: which image of the explained batch. Defaults to 0.
        class_names: names of the classes, for the title. Defaults to class indices.

    Returns:
        The ``Path`` written.
    """
    _, Figure = require_matplotlib()
    image = _as_uint8(image)
    abn_map = abn_map_of(explanation, index)
    paya = getattr(explanation, "paya", None)
    modules = list(paya.masks) if paya is not None else []
    panels = 2 + (abn_map is not None) + bool(explanation.fa_gates) + bool(explanation.se_weights) + len(modules)
    fig = Figure(figsize=(PANEL_INCHES * panels, PANEL_INCHES), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, panels)
    c = int(explanation.class_index[index])
    label = class_names[c] if class_names is not None else f"class {c}"
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(overlay(image, explanation.grad_cam[index]))
    axes[1].set_title(
        f"Grad-CAM at {explanation.grad_cam_layer}\n{label}: {explanation.scores[index, c]:.3f}",
        fontsize=9,
    )
    if abn_map is not None:
        h, w = abn_map.shape
        axes[2].imshow(overlay(image, abn_map))
        axes[2].set_title(f"ABN attention map M ({h}x{w}, 0-1 scale)\nmean {abn_map.mean():.3f}, "
                          f"max {abn_map.max():.3f}", fontsize=9)
    for ax in axes[:2 + (abn_map is not None)]:
        ax.axis("off")
    if explanation.fa_gates:
        plot_fa_gates(axes[2 + (abn_map is not None)], explanation.fa_gates, index)
    if explanation.se_weights:
        plot_se_weights(axes[panels - len(modules) - 1], explanation.se_weights, index)
    for ax, module in zip(axes[panels - len(modules):], modules):
        plot_paya_module(ax, image, paya, module, index, class_names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path
