"""Reading the user's image files into model inputs, for ``predict``, ``explain`` and export.

:func:`preprocess` is the one place that turns pixels into what a model expects. Until models
record their own normalisation (with the training pipeline) it scales pixels to [0, 1].

:func:`decode_pixels` is the one place that decodes an image file, here and for training data:
it refuses, per file and before decoding, an image whose header declares more than
:data:`MAX_IMAGE_PIXELS` pixels (a small, highly compressed file can declare a size that takes
gigabytes to decode), and scales 16-bit images to 8 bits.
"""

import io
import os
from pathlib import Path

import sys
import warnings

import numpy as np

from keras_attn_zoo.weights import recorded_stats

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Images whose header declares more pixels than this are refused before decoding: 64
# megapixels (e.g. 9238x6928) are 192 MB as RGB, and more than any camera photo we expect.
# Pillow's own limit is higher (89 megapixels warn, 179 megapixels fail), and its error is
# not an OSError. Raise this module attribute to read larger images.
MAX_IMAGE_PIXELS = 64_000_000

# Pillow's 16-bit and 32-bit integer grey modes: its convert() clips them to 0..255 (a 16-bit
# image reads almost all white). They are scaled from 16 bits to 8 instead ("I", as 16-bit
# PGM and some TIFF files open, is taken as 16-bit too, values clipped to 0..65535).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def preprocess(pixels, normalization=None):
    """Turn RGB pixel values in [0, 255] into model inputs, float32.

    The only preprocessing step of ``predict``, ``explain`` and export's representative images:
    ``(x / 255 - mean) / std`` with the ``normalization`` the weights were trained with (see
    :func:`normalization_for`), or ``x / 255`` for a model without recorded statistics.

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


def normalization_for(model, weights):
    """The normalisation recorded with ``model``'s ``weights`` (a tag or a trained file), or
    None for a randomly initialised model or weights without a record (said on stderr)."""
    if weights is None:
        return None
    try:
        return recorded_stats(model.name, weights)
    except (ValueError, FileNotFoundError) as e:
        print(f"WARNING: inputs are only scaled to [0, 1]: {e}", file=sys.stderr)
        return None


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


def decode_pixels(source, mode="RGB", size=None, name=None):
    """Decode one image file into a Pillow image of ``mode``, refusing decompression bombs.

    The size the header declares is checked against :data:`MAX_IMAGE_PIXELS` before any pixel
    is decoded; 16-bit grey images are scaled to 8 bits (not clipped, as Pillow's ``convert``
    does).

    Args:
        source: a path, or the file's bytes.
        mode: "RGB" or "L". Defaults to "RGB".
        size: ``(width, height)`` to resize to (bilinear), Pillow's order. None keeps the size.
        name: what to call the file in messages (e.g. an archive member). Defaults to the path.

    Returns:
        A loaded ``PIL.Image.Image`` of ``mode``.

    Raises:
        ValueError: if it is not an image Pillow can read, or declares too many pixels.
    """
    from PIL import Image, UnidentifiedImageError

    name = name or (f"an image of {len(source):,} bytes" if isinstance(source, bytes) else str(source))
    try:
        with warnings.catch_warnings():  # Pillow warns above 89 megapixels; the check below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"{name} declares {width}x{height} = {width * height:,} pixels, more than "
                    f"the limit of {MAX_IMAGE_PIXELS:,} (keras_attn_zoo.images.MAX_IMAGE_PIXELS): "
                    "refused before decoding (a decompression bomb, or an image to "
                    "downscale first)."
                )
            if image.mode in SIXTEEN_BIT_MODES:
                wide = np.clip(np.asarray(image), 0, 65535).astype("uint32")
                image = Image.fromarray(((wide * 255 + 32767) // 65535).astype("uint8"), "L")
            image = image.convert(mode)
            if size is not None and image.size != tuple(size):
                image = image.resize(tuple(size), Image.BILINEAR)
            image.load()
            return image
    except Image.DecompressionBombError as e:  # Pillow's own, higher limit, hit while opening
        raise ValueError(f"{name} declares more pixels than Pillow decodes: refused before decoding ({e}).") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{name} is not an image Pillow can read ({e}).") from e


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
