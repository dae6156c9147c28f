"""Losses on attention maps, in ``keras.ops`` only (every backend).

The discriminative-attention objective (DAT; Wang et al., "Reducing Visual Confusion with
Discriminative Attention", arXiv 1811.07484, ICCV 2019 as "Sharpen Focus"), Section 3:

- :func:`attention_map`: the gradient attention maps A_ch (Eq. 3-4, channel-wise, the default)
  and A_px (Eq. 5, pixel-wise) from feature maps F and the gradients G = dY^c/dF of a class's
  pre-softmax logit;
- :func:`target_mask`: the target region, Eq. 7, sigmoid(omega * (A^last - 0.55 * max A^last)),
  held constant (no gradient flows through the mask or its maximum);
- :func:`soft_iou`: the separability term, Eq. 6, per sample;
- :func:`resize_mask` and :func:`attention_consistency`: the cross-layer consistency term,
  Eq. 8, per sample, with the last layer's mask brought to the inner layer's resolution;
- :func:`confusing_class`: the highest-scoring wrong class of each sample.

Maps are channels-last ``(batch, h, w)``; every term is returned per sample, ``(batch,)``: the
training wrapper (:mod:`keras_attn_zoo.training.dat`) takes the batch mean.

>>> import numpy as np
>>> t = np.array([[[0, 1], [2, 0]]], "float32"); c = np.array([[[1, 1], [0, 0]]], "float32")
>>> float(soft_iou(t, c)[0])  # 2 * min-sum 1 / (3 + 2)
0.4
"""

from keras import ops

MAP_KINDS = ("channel", "pixel")
MASK_KINDS = ("literal", "normalized")
RESIZE_KINDS = ("bilinear", "nearest")
EPSILON = 1e-7


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def attention_map(features, gradients, kind="channel"):
    """The gradient attention map of one class at one layer (DAT Section 3.1).

    Args:
        features: feature maps F, ``(batch, h, w, channels)``.
        gradients: G = dY^c/dF of the class's pre-softmax logit Y^c, the same shape.
        kind: "channel" for A_ch = ReLU(sum_k alpha_k F_k), alpha_k = the spatial mean of
            ReLU(G_k) (Eq. 3-4); "pixel" for A_px = ReLU(mean_k G_k * F_k) (Eq. 5).
            Defaults to "channel".

    Returns:
        The map ``(batch, h, w)``, non-negative, not normalised.
    """
    _check("kind", kind, MAP_KINDS)
    features = ops.cast(features, "float32")
    gradients = ops.cast(gradients, "float32")
    if kind == "channel":
        alpha = ops.mean(ops.relu(gradients), axis=(1, 2), keepdims=True)
        return ops.relu(ops.sum(alpha * features, axis=-1))
    return ops.relu(ops.mean(gradients * features, axis=-1))


def target_mask(last_map, ratio=0.55, omega=100.0, kind="literal", epsilon=EPSILON):
    """The soft mask of the target region, Eq. 7, held constant (``stop_gradient``).

    Args:
        last_map: the target class's map at the last layer, ``(batch, h, w)``.
        ratio: sigma = ``ratio`` * the map's per-sample maximum. Defaults to 0.55 (the paper's).
        omega: the sigmoid's sharpness. Defaults to 100 (the paper's).
        kind: "literal", sigmoid(omega * (A - sigma)) as printed, whose sharpness depends on the
            scale of A; or "normalized", sigmoid(omega * (A / max A - ratio)), scale-free.
            Defaults to "literal".
        epsilon: added to the maximum of the normalised variant. Defaults to 1e-7.

    Returns:
        The mask ``(batch, h, w)`` in (0, 1).
    """
    _check("kind", kind, MASK_KINDS)
    a = ops.stop_gradient(ops.cast(last_map, "float32"))
    peak = ops.max(a, axis=(1, 2), keepdims=True)
    if kind == "literal":
        return ops.stop_gradient(ops.sigmoid(omega * (a - ratio * peak)))
    return ops.stop_gradient(ops.sigmoid(omega * (a / (peak + epsilon) - ratio)))


def soft_iou(target_map, confusing_map, mask=None, epsilon=EPSILON):
    """Soft IoU of the target and the most confusing class's maps, Eq. 6, per sample.

    sIoU = 2 * sum_ij(min(A^T, A^C) * Mask) / (sum_ij(A^T + A^C) + epsilon); the denominator
    is not masked, so the value is in [0, 1].

    Args:
        target_map: A^T, ``(batch, h, w)``.
        confusing_map: A^C, the same shape.
        mask: the target region ``(batch, h, w)`` (see :func:`target_mask`), or None for none.
        epsilon: keeps an all-zero pair of maps at 0. Defaults to 1e-7.

    Returns:
        ``(batch,)``.
    """
    t = ops.cast(target_map, "float32")
    c = ops.cast(confusing_map, "float32")
    overlap = ops.minimum(t, c)
    if mask is not None:
        overlap = overlap * ops.cast(mask, "float32")
    return 2.0 * ops.sum(overlap, axis=(1, 2)) / (ops.sum(t + c, axis=(1, 2)) + epsilon)


def resize_mask(mask, size, interpolation="bilinear"):
    """A mask ``(batch, h, w)`` resampled to ``size = (H, W)``.

    Args:
        mask: ``(batch, h, w)``.
        size: the target ``(H, W)``.
        interpolation: "bilinear" (half-pixel centres, edges clamped) or "nearest".
            Defaults to "bilinear".

    Returns:
        ``(batch, H, W)``; the mask itself when the sizes match.
    """
    _check("interpolation", interpolation, RESIZE_KINDS)
    size = tuple(int(s) for s in size)
    if tuple(mask.shape[1:3]) == size:
        return mask
    resized = ops.image.resize(
        ops.expand_dims(ops.cast(mask, "float32"), -1), size, interpolation=interpolation,
        antialias=False, data_format="channels_last",
    )
    return ops.squeeze(resized, -1)


def attention_consistency(inner_target_map, mask, theta=0.8, epsilon=EPSILON):
    """Cross-layer attention consistency, Eq. 8, per sample.

    L_ac = theta - sum_ij(A^T_in * Mask) / (sum_ij A^T_in + epsilon): the share of the inner
    layer's target attention that lies outside the last layer's target region, shifted by
    theta. No hinge: it can be negative; theta does not change the gradients.

    Args:
        inner_target_map: the target class's map at the inner layer, ``(batch, H, W)``.
        mask: the last layer's target mask at the inner resolution (:func:`resize_mask`).
        theta: Defaults to 0.8 (the public ports'; the paper gives no value).
        epsilon: Defaults to 1e-7.

    Returns:
        ``(batch,)``.
    """
    a = ops.cast(inner_target_map, "float32")
    inside = ops.sum(a * ops.cast(mask, "float32"), axis=(1, 2))
    return theta - inside / (ops.sum(a, axis=(1, 2)) + epsilon)


def confusing_class(logits, target):
    """The highest-scoring class other than the target, per sample (no gradient).

    Args:
        logits: ``(batch, classes)``.
        target: the targets as a one-hot (or multi-hot) ``(batch, classes)`` array: the classes
            excluded.

    Returns:
        int32 ``(batch,)``: the top-1 class when it is wrong, else the top-2.
    """
    logits = ops.stop_gradient(ops.cast(logits, "float32"))
    excluded = ops.cast(target, "float32") > 0
    return ops.cast(ops.argmax(ops.where(excluded, -3.0e38, logits), axis=-1), "int32")
