"""Reading the user's image files into model inputs, for ``predict``, ``explain`` and export.

:func:`preprocess` is the one place that turns pixels into what a model expects: normalised
with the statistics its weights recorded (``registry.load_for_inference`` finds them).

:func:`~keras_attn_zoo.decoding.decode_pixels` (re-exported here) is the one place that decodes
an image file, here and for training data (``keras_attn_zoo.decoding``, below the data layer).
"""

import os
from pathlib import Path

import numpy as np

from keras_attn_zoo.decoding import MAX_IMAGE_PIXELS, SIXTEEN_BIT_MODES, decode_pixels  # noqa: F401 (public here)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

def preprocess(pixels, normalization=None):
    """Turn RGB pixel values in [0, 255] into model inputs, float32.

    The only preprocessing step of ``predict``, ``explain`` and export's representative images:
    ``(x / 255 - mean) / std`` with the ``normalization`` the weights were trained with (see
    ``registry.load_for_inference``), or ``x / 255`` for a randomly initialised model.

    Args:
        pixels: array of shape ``(..., H, W, C)`` with values in [0, 255].
        normalization: an object with per-channel ``mean`` and ``std`` (on the [0, 1] scale),
            or None. Defaults to None.

    Returns:
        A float32 array of the same shape.
    """
    x = np.asarray(pixels, dtype="float32") / 255.0
    if normalization is None:
        return x
    return (x - np.asarray(normalization.mean, "float32")) / np.asarray(normalization.std, "float32")


def image_files(paths):
    """The image files among ``paths``: files as given, folders searched recursively.

    Files named directly are kept whatever their extension (reading them says whether they are
    images); inside folders only files with an image extension are taken, sorted.

    Args:
        paths: a path or a list of paths to files or folders.

    Returns:
        A list of ``Path`` objects.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            )
        else:
            files.append(path)
    return files


def read_image(path, size=None, channels=3):
    """Read one image file as pixels resized to ``size``.

    Args:
        path: the image file (JPEG, PNG, ... anything Pillow reads).
        size: ``(height, width)`` of the result; the image is resized to it (bilinear), without
            keeping the aspect ratio. None keeps the file's size.
        channels: 3 for RGB, 1 for grey. Defaults to 3.

    Returns:
        A uint8 array of shape ``(height, width, channels)``.

    Raises:
        ValueError: if the file cannot be read as an image, or declares more than
            :data:`MAX_IMAGE_PIXELS` pixels.
        FileNotFoundError: if there is no such file.
    """
    if channels not in (1, 3):
        raise ValueError(f"Images can be read with 1 or 3 channels, not {channels}.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    image = decode_pixels(path, "RGB" if channels == 3 else "L", None if size is None else (size[1], size[0]))
    pixels = np.asarray(image, dtype="uint8")
    return pixels.reshape(*pixels.shape[:2], channels)


def read_images(paths, size, channels=3):
    """Read every readable image among ``paths``; the others are reported, not fatal.

    Args:
        paths: files and folders, as for :func:`image_files`.
        size: ``(height, width)`` to resize to.
        channels: 3 for RGB, 1 for grey. Defaults to 3.

    Returns:
        ``(pixels, read, failed)``: a uint8 array ``(n, height, width, channels)`` of the images
        that could be read, their paths, and a list of ``(path, message)`` for the others.
    """
    pixels, read, failed = [], [], []
    for path in image_files(paths):
        try:
            pixels.append(read_image(path, size, channels))
            read.append(path)
        except (ValueError, FileNotFoundError) as e:
            failed.append((path, str(e)))
    array = np.stack(pixels) if pixels else np.zeros((0, *size, channels), "uint8")
    return array, read, failed


def model_image_size(model):
    """``(height, width, channels)`` of a model's image input; an error if it is not fixed."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(
            f"{model.name} takes inputs of shape {shape}; reading images for it needs a fixed "
            "(height, width, channels): build the model with input_shape=(H, W, C)."
        )
    return shape[1:]
