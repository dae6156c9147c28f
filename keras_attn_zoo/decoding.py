"""Decoding one image file into pixels: the one place that does it, for ``predict``, ``explain``,
export (``keras_attn_zoo.images``) and training data (``keras_attn_zoo.data``).

:func:`decode_pixels` refuses, per file and before decoding, an image whose header declares
more than :data:`MAX_IMAGE_PIXELS` pixels (a small, highly compressed file can declare a size
that takes gigabytes to decode; :func:`check_header` does only that), applies the EXIF
orientation, and scales 16-bit images to 8 bits. It imports nothing of the package, so every
layer may use it.
"""

import contextlib
import io
import warnings

import numpy as np

# Images whose header declares more pixels than this are refused before decoding: 64
# megapixels (e.g. 9238x6928) are 192 MB as RGB, and more than any camera photo we expect.
# Pillow's own limit is higher (89 megapixels warn, 179 megapixels fail), and its error is
# not an OSError. Raise this module attribute (keras_attn_zoo.decoding.MAX_IMAGE_PIXELS) to
# read larger images.
MAX_IMAGE_PIXELS = 64_000_000

# Pillow's 16-bit and 32-bit integer grey modes: its convert() clips them to 0..255 (a 16-bit
# image reads almost all white). They are scaled from 16 bits to 8 instead ("I", as 16-bit
# PGM and some TIFF files open, is taken as 16-bit too, values clipped to 0..65535).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _name(source, name):
    return name or (f"an image of {len(source):,} bytes" if isinstance(source, bytes) else str(source))


@contextlib.contextmanager
def _opened(source, name):
    """The image opened (its header read, no pixel decoded) once its declared size is checked;
    every error Pillow raises for a file it cannot read becomes a ValueError naming ``name``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow warns above 89 megapixels; the check below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"{name} declares {width}x{height} = {width * height:,} pixels, more than "
                    f"the limit of {MAX_IMAGE_PIXELS:,} (keras_attn_zoo.decoding.MAX_IMAGE_PIXELS): "
                    "refused before decoding (a decompression bomb, or an image to "
                    "downscale first)."
                )
            yield image
    except Image.DecompressionBombError as e:  # Pillow's own, higher limit, hit while opening
        raise ValueError(f"{name} declares more pixels than Pillow decodes: refused before decoding ({e}).") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{name} is not an image Pillow can read ({e}).") from e


def check_header(source, name=None):
    """Refuse, as :func:`decode_pixels` would, a file that is no image or declares too many
    pixels, from its header alone (a truncated image is only found by decoding it).

    Raises:
        ValueError: naming the file.
    """
    with _opened(source, _name(source, name)):
        pass


def decode_pixels(source, mode="RGB", size=None, name=None):
    """Decode one image file into a Pillow image of ``mode``, refusing decompression bombs.

    The size the header declares is checked against :data:`MAX_IMAGE_PIXELS` before any pixel
    is decoded; the EXIF orientation is applied (``PIL.ImageOps.exif_transpose``: a photo taken
    with the phone held upright comes out upright, as image viewers show it); 16-bit grey images
    are scaled to 8 bits (not clipped, as Pillow's ``convert`` does).

    Args:
        source: a path, or the file's bytes.
        mode: "RGB" or "L". Defaults to "RGB".
        size: ``(width, height)`` to resize to (bilinear), Pillow's order. None keeps the size.
        name: what to call the file in messages (e.g. an archive member). Defaults to the path.

    Returns:
        A loaded ``PIL.Image.Image`` of ``mode``.

    Raises:
        ValueError: if it is not an image Pillow can read (truncated, corrupt), or declares too
            many pixels.
    """
    from PIL import Image, ImageOps

    with _opened(source, _name(source, name)) as image:
        image = ImageOps.exif_transpose(image)  # a phone photo's EXIF orientation: upright, as viewers show it
        if image.mode in SIXTEEN_BIT_MODES:
            wide = np.clip(np.asarray(image), 0, 65535).astype("uint32")
            image = Image.fromarray(((wide * 255 + 32767) // 65535).astype("uint8"), "L")
        image = image.convert(mode)
        if size is not None and image.size != tuple(size):
            image = image.resize(tuple(size), Image.BILINEAR)
        image.load()
        return image
