"""Input normalisation: per-channel mean and standard deviation, recorded with the weights.

The convention, for every model and weight file of the zoo: inputs are RGB images with values in
[0, 255] (uint8 or float); they are divided by 255 and normalised per channel,
``(x / 255 - mean) / std``. The trainer measures ``mean`` and ``std`` on the training split
(the papers' "mean / std normalisation"), uses them through :func:`normalization_layer`, and
writes them into the training record and the manifest row of the weights, from where
:func:`preprocess_input` reads them for users' images. Nothing is guessed: a model without
recorded statistics needs them passed explicitly.
"""

import numpy as np

import keras

from keras_attn_zoo import weights as weights_lib
from keras_attn_zoo.normalization import ChannelStats
from keras_attn_zoo.weights import recorded_stats  # noqa: F401 (public here too)

# The statistics every ImageNet-trained model of the field uses (torchvision, timm, ABN).
IMAGENET_STATS = ChannelStats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def channel_stats(images, chunk=4096):
    """Per-channel mean and std of uint8 images, computed in float64 chunks.

    Args:
        images: array of shape (N, H, W, C) with values in [0, 255].
        chunk: images per chunk (bounds the memory used). Defaults to 4096.

    Returns:
        A :class:`ChannelStats` on the [0, 1] scale.
    """
    images = np.asarray(images)
    if images.ndim != 4 or not len(images):
        raise ValueError(f"Expected a non-empty (N, H, W, C) array, got shape {images.shape}.")
    total = np.zeros(images.shape[-1])
    squares = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].astype("float64") / 255.0
        total += part.sum(axis=(0, 1, 2))
        squares += np.square(part).sum(axis=(0, 1, 2))
    count = images.size / images.shape[-1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return ChannelStats(tuple(mean), tuple(std))


def normalization_layer(stats, name="normalize"):
    """The Keras layer that applies ``(x / 255 - mean) / std`` to [0, 255] inputs.

    Used by the training and evaluation wrappers, so training and inference share one formula.

    Args:
        stats: a :class:`ChannelStats`.
        name: layer name. Defaults to "normalize".

    Returns:
        A ``keras.layers.Normalization`` with the statistics scaled to [0, 255].
    """
    mean = [255.0 * m for m in stats.mean]
    variance = [(255.0 * s) ** 2 for s in stats.std]
    return keras.layers.Normalization(mean=mean, variance=variance, name=name)


def preprocess_input(name_or_model, images, weights=None, mean=None, std=None):
    """Normalise [0, 255] RGB images the way a model's weights were trained.

    The statistics come from the weights' manifest row (a published tag) or training record (a
    file written by ``keras-attn-zoo train``), or are given as ``mean`` and ``std``.

    Args:
        name_or_model: a registered name or a model made by ``keras_attn_zoo.load``.
        images: (N, H, W, C) or (H, W, C) RGB values in [0, 255], NumPy or backend tensor.
        weights: a published tag (e.g. "cifar10") or a ``.weights.h5`` path. If omitted and the
            model has exactly one published weight, that one.
        mean: per-channel means on the [0, 1] scale; with ``std``, overrides ``weights``.
        std: per-channel standard deviations on the [0, 1] scale.

    Returns:
        float32 images ``(x / 255 - mean) / std``: a NumPy array for NumPy input, else a tensor.

    Example:
    >>> x = preprocess_input("resnet20", images, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    """
    name = name_or_model if isinstance(name_or_model, str) else getattr(name_or_model, "name", None)
    if (mean is None) != (std is None):
        raise ValueError("Pass both mean and std, or neither.")
    if mean is not None:
        stats = ChannelStats(tuple(mean), tuple(std))
    else:
        if weights is None:
            tags = weights_lib.published_tags(name)
            weights = tags[0] if len(tags) == 1 else None
        stats = recorded_stats(name, weights, fix="pass mean= and std= explicitly")
    channels = np.shape(images)[-1]
    if channels != len(stats.mean):
        raise ValueError(f"The images have {channels} channels, the statistics {len(stats.mean)}.")
    scale = 255.0 * np.asarray(stats.std, "float32")
    offset = 255.0 * np.asarray(stats.mean, "float32")
    if isinstance(images, np.ndarray):
        return (images.astype("float32") - offset) / scale
    return (keras.ops.cast(images, "float32") - offset) / scale
