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


def require_matplotlib(what="pictures of attention"):
    """``(matplotlib, Figure)``; an ImportError that names the picture asked for and the extra
    to install when matplotlib is missing."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"matplotlib is needed for {what}: pip install 'keras_attn_zoo[viz]'.") from e
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


# How to read the FA gates, under their chart (FANet Eq. 9, as FocusAssociation computes it).
FA_GATES_HOW_TO = ("a block's output is X + (U - X) k: k = 1 keeps the block's own output U,\n"
                   "k = 0 passes its input X on (the block is skipped); orange: whole stages")


def plot_fa_gates(ax, gates, index=0):
    """Horizontal bar chart of the FA gates k_i of one image along the depth of the network (the
    first FA layer on top), with one line on how to read them (:data:`FA_GATES_HOW_TO`).

    Args:
        ax: a matplotlib Axes.
        gates: FA layer name -> gates ``(batch,)`` in graph order (``Explanation.fa_gates``).
        index: which image of the batch. Defaults to 0.
    """
    names = list(gates)
    values = [float(gates[name][index]) for name in names]
    colours = ["tab:orange" if "block" not in name else "tab:blue" for name in names]
    ax.barh(range(len(names)), values, color=colours)
    ax.set_yticks(range(len(names)), [n.removesuffix("_fa") for n in names], fontsize=7)
    ax.invert_yaxis()  # depth runs down
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"FA gate k\n{FA_GATES_HOW_TO}", fontsize=8)
    ax.set_title("FA gates along depth", fontsize=9)


def plot_se_weights(ax, weights, index=0):
    """Horizontal box plot of each SE layer's channel weights for one image, along depth (the
    first SE layer on top).

    Args:
        ax: a matplotlib Axes.
        weights: SE layer name -> ``(batch, channels)`` (``Explanation.se_weights``).
        index: which image of the batch. Defaults to 0.
    """
    names = list(weights)
    ax.boxplot([weights[name][index] for name in names], vert=False, showfliers=False)
    ax.set_yticks(range(1, len(names) + 1), [n.removesuffix("_se") for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("channel weight (the factor SE scales each channel by)", fontsize=8)
    ax.set_title("SE channel weights along depth", fontsize=9)


def add_colour_bar(fig, ax, label, cmap="jet"):
    """A colour bar beside a heat map drawn by :func:`overlay` (values 0 to 1 on ``cmap``)."""
    matplotlib, _ = require_matplotlib()
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return bar


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
    """One PAYA module's panel: its heads' masks over the image (each scaled to its own maximum),
    head gates, own prediction and global gate weight."""
    masks = paya.masks[module][index]
    gates = paya.head_gates[module][index]
    scores = paya.module_scores[module][index]
    c = int(scores.argmax())
    label = class_names[c] if class_names is not None else f"class {c}"
    ax.imshow(paya_mosaic(image, masks))
    ax.axis("off")
    add_colour_bar(ax.get_figure(root=False), ax, "mask / its maximum")
    ax.set_title(
        f"{module} masks ({masks.shape[0]}x{masks.shape[1]}), head gates "
        + " ".join(f"{g:.2f}" for g in gates)
        + f"\nown prediction {label} {scores[c]:.3f}; global gate {paya.global_gates[module][index]:.3f}",
        fontsize=8,
    )


def explanation_figure(image, explanation, index=0, class_names=None):
    """One image's explanation as a matplotlib ``Figure``, one row of panels: the image as the model saw it,
    the Grad-CAM overlay and, when the model has them, the ABN attention map M (on its absolute
    0-1 scale, not rescaled) and, per PAYA module, every head's mask over the image (each scaled
    to its own maximum) with the head gates, the module's own prediction and its global gate
    weight; then the FA gates (with a line on how to read them) and the SE weights along depth.
    Every heat map has its colour bar; the charts are laid out apart from the pictures, so that
    their labels leave the pictures the figure's full height.

    The figure is ``PANEL_INCHES * DPI`` = 400 pixels high and 400 pixels wide per panel.

    Args:
        image: the pixels the model was given ``(H, W, 3)``: the image resized to its input, as
            ``keras-attn-zoo explain`` passes it (uint8, or float in [0, 1]).
        explanation: an ``Explanation`` from ``keras_attn_zoo.explain.explain``.
        index: which image of the explained batch. Defaults to 0.
        class_names: names of the classes, for the title. Defaults to class indices.

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    _, Figure = require_matplotlib()
    image = _as_uint8(image)
    abn_map = abn_map_of(explanation, index)
    paya = getattr(explanation, "paya", None)
    modules = list(paya.masks) if paya is not None else []
    pictures = 2 + (abn_map is not None) + len(modules)
    charts = bool(explanation.fa_gates) + bool(explanation.se_weights)
    fig = Figure(figsize=(PANEL_INCHES * (pictures + charts), PANEL_INCHES), dpi=DPI, layout="constrained")
    # two sub-figures, laid out apart: the charts' labels take no height from the pictures
    parts = fig.subfigures(1, 2, width_ratios=[pictures, charts]) if charts else [fig]
    axes = list(np.atleast_1d(parts[0].subplots(1, pictures)))
    chart_axes = list(np.atleast_1d(parts[1].subplots(1, charts))) if charts else []
    c = int(explanation.class_index[index])
    label = class_names[c] if class_names is not None else f"class {c}"
    axes[0].imshow(image)
    axes[0].set_title(f"input as the model saw it ({image.shape[0]}x{image.shape[1]})", fontsize=9)
    axes[1].imshow(overlay(image, explanation.grad_cam[index]))
    axes[1].set_title(
        f"Grad-CAM at {explanation.grad_cam_layer}\n{label}: {explanation.scores[index, c]:.3f}",
        fontsize=9,
    )
    add_colour_bar(parts[0], axes[1], "Grad-CAM / its maximum")
    if abn_map is not None:
        h, w = abn_map.shape
        axes[2].imshow(overlay(image, abn_map))
        axes[2].set_title(f"ABN attention map M ({h}x{w}, 0-1 scale)\nmean {abn_map.mean():.3f}, "
                          f"max {abn_map.max():.3f}", fontsize=9)
        add_colour_bar(parts[0], axes[2], "M (absolute)")
    for ax in axes[:2 + (abn_map is not None)]:
        ax.axis("off")
    for ax, module in zip(axes[2 + (abn_map is not None):], modules):
        plot_paya_module(ax, image, paya, module, index, class_names)
    if explanation.fa_gates:
        plot_fa_gates(chart_axes[0], explanation.fa_gates, index)
    if explanation.se_weights:
        plot_se_weights(chart_axes[-1], explanation.se_weights, index)
    return fig


def save_explanation(path, image, explanation, index=0, class_names=None):
    """Save :func:`explanation_figure` as a PNG.

    Args:
        path: where to write the PNG.
        image, explanation, index, class_names: as for :func:`explanation_figure`.

    Returns:
        The ``Path`` written.
    """
    fig = explanation_figure(image, explanation, index, class_names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path
