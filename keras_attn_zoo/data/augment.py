"""The papers' training augmentation as Keras layers: they run on the accelerator, in the
training graph, on every backend (the GPU machine has JAX and no TensorFlow).

- CIFAR / SVHN (He et al. 2016, used by FANet and ABN): zero-pad 4 pixels, random 32x32 crop,
  random horizontal flip: ``RandomPadCrop(4)`` + ``keras.layers.RandomFlip("horizontal")``.
- The PAYA authors' CIFAR: the same with reflect padding (``np.pad(mode="reflect")``, the edge
  pixel not repeated): augmentation "cifar_reflect", ``RandomPadCrop(4, fill_mode="mirror")``.
- ImageNet: random-resized crop to 224 + horizontal flip for training; evaluation images are
  resized to 256 and center-cropped to 224 on the host (``keras_attn_zoo.data.load_split``).

Each layer is the identity at inference, so a model wrapped with them evaluates on clean images.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class RandomPadCrop(keras.layers.Layer):
    """Zero-pad ``padding`` pixels on each side and take a random crop of the original size.

    Equivalent to a random integer translation by (dy, dx) in [-padding, padding]^2 with zero
    fill, which is how it is computed (one nearest-neighbour affine transform per image).

    Args:
        padding: pixels of zero padding on each side. Defaults to 4 (CIFAR's 32x32 setting;
            FANet uses 8 for 64x64 Tiny ImageNet).
        seed: integer seed. Defaults to None.
        fill_mode: "constant" (zeros) or "mirror" (reflection without repeating the edge
            pixel, NumPy's ``pad(mode="reflect")``, the PAYA authors'). Defaults to "constant".
        **kwargs: ``keras.layers.Layer`` arguments (``name``...).

    Example:
    >>> layer = RandomPadCrop(4, seed=0)
    >>> layer(images, training=True).shape == images.shape
    True
    """

    def __init__(self, padding=4, seed=None, fill_mode="constant", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")
        if fill_mode not in ("constant", "mirror"):
            raise ValueError(f"fill_mode must be 'constant' or 'mirror', got {fill_mode!r}.")
        self.padding = padding
        self.fill_mode = fill_mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        images = ops.cast(images, self.compute_dtype)
        if not training or self.padding == 0:
            return images
        batch = ops.shape(images)[0]
        shifts = keras.random.randint(
            (batch, 2), -self.padding, self.padding + 1, seed=self.seed_generator
        )
        shifts = ops.cast(shifts, "float32")
        ones, zeros = ops.ones((batch, 1)), ops.zeros((batch, 1))
        # Output pixel (x, y) reads input pixel (x + dx, y + dy); outside the image: 0.
        transform = ops.concatenate(
            [ones, zeros, shifts[:, :1], zeros, ones, shifts[:, 1:], zeros, zeros], axis=1
        )
        if self.fill_mode == "constant":
            return ops.image.affine_transform(
                images, transform, interpolation="nearest", fill_mode="constant", fill_value=0
            )
        # mirror (TensorFlow's affine_transform lacks it): reflect-pad, shift, take the centre;
        # the shifts never leave the padded image
        p = self.padding
        padded = ops.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        moved = ops.image.affine_transform(
            padded, transform, interpolation="nearest", fill_mode="constant", fill_value=0
        )
        return moved[:, p:-p, p:-p, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "seed": self.seed, "fill_mode": self.fill_mode}


@keras.saving.register_keras_serializable(package="keras_attn_zoo")
class RandomResizedCrop(keras.layers.Layer):
    """Inception-style random-resized crop (Szegedy et al. 2015; torchvision's default).

    In training, each image gets a box of a random fraction ``scale`` of its area and a random
    aspect ratio in ``ratio`` (log-uniform), at a random position, resampled bilinearly to
    ``(height, width)``. A box that would exceed the image is clipped to it (torchvision retries
    ten times and then falls back to a center crop; clipping keeps one graph per batch). At
    inference the layer center-crops to ``(height, width)``.

    Args:
        height: output height. Defaults to 224.
        width: output width. Defaults to 224.
        scale: range of the box's area fraction. Defaults to (0.08, 1.0).
        ratio: range of the box's aspect ratio (width / height). Defaults to (3/4, 4/3).
        seed: integer seed. Defaults to None.
        **kwargs: ``keras.layers.Layer`` arguments.

    The input must be at least ``(height, width)``; the training pipeline loads ImageNet images
    at 256x256 (ABN's setting) and crops 224x224 from them.
    """

    def __init__(self, height=224, width=224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {scale}.")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {ratio}.")
        self.height, self.width = int(height), int(width)
        self.scale, self.ratio = scale, ratio
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _check(self, in_height, in_width):
        if in_height is not None and in_width is not None and (
            in_height < self.height or in_width < self.width
        ):
            raise ValueError(
                f"RandomResizedCrop({self.height}, {self.width}) needs inputs at least that "
                f"large, got {in_height}x{in_width}."
            )

    def call(self, images, training=None):
        images = ops.cast(images, self.compute_dtype)
        shape = ops.shape(images)
        batch, in_height, in_width, channels = shape[0], shape[1], shape[2], images.shape[-1]
        self._check(images.shape[1], images.shape[2])
        if not training:
            top = (in_height - self.height) // 2
            left = (in_width - self.width) // 2
            out = images[:, top:top + self.height, left:left + self.width, :]
            return ops.reshape(out, (-1, self.height, self.width, channels))
        h_in, w_in = ops.cast(in_height, "float32"), ops.cast(in_width, "float32")
        area = keras.random.uniform((batch,), *self.scale, seed=self.seed_generator) * h_in * w_in
        log_ratio = keras.random.uniform(
            (batch,), math.log(self.ratio[0]), math.log(self.ratio[1]), seed=self.seed_generator
        )
        aspect = ops.exp(log_ratio)
        box_w = ops.minimum(ops.sqrt(area * aspect), w_in)
        box_h = ops.minimum(ops.sqrt(area / aspect), h_in)
        x0 = keras.random.uniform((batch,), seed=self.seed_generator) * (w_in - box_w)
        y0 = keras.random.uniform((batch,), seed=self.seed_generator) * (h_in - box_h)
        sx, sy = box_w / self.width, box_h / self.height
        zeros = ops.zeros((batch,))
        # Output pixel centre (x + 0.5) maps to x0 + (x + 0.5) * sx in input coordinates.
        transform = ops.stack(
            [sx, zeros, x0 + 0.5 * sx - 0.5, zeros, sy, y0 + 0.5 * sy - 0.5, zeros, zeros], axis=1
        )
        out = ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="nearest"
        )
        out = out[:, : self.height, : self.width, :]
        return ops.reshape(out, (-1, self.height, self.width, channels))

    def compute_output_shape(self, input_shape):
        self._check(input_shape[1], input_shape[2])
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "height": self.height,
            "width": self.width,
            "scale": self.scale,
            "ratio": self.ratio,
            "seed": self.seed,
        }


AUGMENTATIONS = ("cifar", "cifar_reflect", "imagenet", "flip", "none")


def augmentation_layers(kind, image_shape, seed=None):
    """The training augmentation of a recipe, as a list of Keras layers.

    Args:
        kind: "cifar" (pad + random crop + flip; the padding is 1/8 of the image side, i.e. 4
            for 32x32 and FANet's 8 for 64x64), "cifar_reflect" (the same with reflect padding,
            the PAYA authors'), "imagenet" (random-resized crop + flip),
            "flip" (horizontal flip only) or "none".
        image_shape: (H, W, C) of the images the model takes.
        seed: integer seed. Defaults to None.

    Returns:
        A list of layers, identity at inference.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {kind!r}.")
    flip = keras.layers.RandomFlip("horizontal", seed=seed, name="random_flip")
    if kind in ("cifar", "cifar_reflect"):
        pad = max(1, image_shape[0] // 8)
        fill = "mirror" if kind == "cifar_reflect" else "constant"
        return [RandomPadCrop(pad, seed=seed, fill_mode=fill, name="random_pad_crop"), flip]
    if kind == "imagenet":
        crop = RandomResizedCrop(image_shape[0], image_shape[1], seed=seed, name="random_resized_crop")
        return [crop, flip]
    if kind == "flip":
        return [flip]
    return []
