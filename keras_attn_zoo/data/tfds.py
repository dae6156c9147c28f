"""Named data sets through tensorflow-datasets (the ``datasets`` extra), for users with a network
or a prepared ``data_dir``. Small data sets become in-memory arrays; ImageNet streams with
``tf.data``."""

import math

import numpy as np

from keras_attn_zoo.data.splits import ArraySplit, Split

# tensorflow-datasets names -> (data-set key of the registry / manifest, description).
TFDS_NAMES = {
    "cifar10": ("cifar10", "CIFAR-10"),
    "cifar100": ("cifar100", "CIFAR-100"),
    "svhn_cropped": ("svhn", "SVHN (cropped digits)"),
    "imagenet2012": ("imagenet", "ImageNet 2012"),
}
TFDS_SPLITS = {"imagenet2012": {"test": "validation"}}  # ImageNet's labelled held-out split


def import_tfds():
    """The ``tensorflow_datasets`` module, or an ImportError that says what to do."""
    try:
        import tensorflow_datasets
    except ImportError as e:
        raise ImportError(
            "Named data sets come from tensorflow-datasets, which is not installed: "
            "pip install 'keras_attn_zoo[datasets]'. Without a network, pass a local folder or "
            "archive instead (e.g. --data path/to/cifar10-jpeg.tar.gz)."
        ) from e
    return tensorflow_datasets


class TfdsStreamSplit(Split):
    """A tensorflow-datasets split decoded and resized batch by batch with ``tf.data``."""

    def __init__(self, dataset, info, name, split, image_size, resize_shorter, limit, key, title):
        self._ds, self.info, self.name = dataset, info, name
        self.split, self.dataset, self.source = split, key, title
        self.class_names = tuple(info.features["label"].names)
        self.image_shape = (*image_size, 3)
        self.image_size, self.resize_shorter = tuple(image_size), resize_shorter
        count = info.splits[TFDS_SPLITS.get(name, {}).get(split, split)].num_examples
        self._count = min(count, limit) if limit else count
        if limit:
            self._ds = self._ds.take(limit)

    @property
    def num_examples(self):
        return self._count

    def _resize(self, image):
        import tensorflow as tf

        if self.resize_shorter:
            shape = tf.cast(tf.shape(image)[:2], tf.float32)
            factor = self.resize_shorter / tf.reduce_min(shape)
            image = tf.image.resize(image, tf.cast(tf.round(shape * factor), tf.int32))
            image = tf.image.resize_with_crop_or_pad(image, *self.image_size)
        else:
            image = tf.image.resize(image, self.image_size)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    def batches(self, batch_size, shuffle=False, seed=0, drop_remainder=False):
        import tensorflow as tf

        ds = self._ds
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda x, y: (self._resize(x), tf.cast(y, tf.int32)), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

    def sample_images(self, count, seed=0):
        images = [x for x, _ in self.batches(min(count, 256)).take(math.ceil(count / 256)).as_numpy_iterator()]
        return np.concatenate(images)[:count]


def tfds_split(name, split, *, image_size=None, resize_shorter=None, limit=None, seed=0,
               data_dir=None, manual_dir=None, in_memory=None, download=True):
    """A :class:`Split` of the tensorflow-datasets data set ``name``.

    Args:
        name: a tfds name ("cifar10", "imagenet2012"...).
        split: "train" or "test" (ImageNet's "validation" serves as "test").
        image_size, resize_shorter, limit, seed, in_memory: as in ``load_split``.
        data_dir: tfds' data folder. Defaults to tfds' default (~/tensorflow_datasets).
        manual_dir: folder of manually downloaded files (ImageNet's tar files).
        download: let tfds download and prepare. Defaults to True.

    Returns:
        An in-memory split for data sets of fixed-size images (CIFAR, SVHN), else a streaming
        one (ImageNet).
    """
    tfds = import_tfds()
    key, title = TFDS_NAMES.get(name, (None, name))
    title = f"{title} (tensorflow-datasets {name})"
    tfds_split_name = TFDS_SPLITS.get(name, {}).get(split, split)
    kwargs = {"split": tfds_split_name, "data_dir": data_dir, "download": download,
              "as_supervised": True, "with_info": True}
    if manual_dir:
        kwargs["download_and_prepare_kwargs"] = {
            "download_config": tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        }
    shape = tuple(tfds.builder(name, data_dir=data_dir).info.features["image"].shape)
    if in_memory is None:
        in_memory = None not in shape[:2]  # fixed-size images (CIFAR, SVHN); ImageNet streams
    if not in_memory:
        size = tuple(image_size or shape[:2])
        if None in size:
            raise ValueError(f"{name} has images of varying size: pass image_size=.")
        ds, info = tfds.load(name, **kwargs)
        return TfdsStreamSplit(ds, info, name, split, size, resize_shorter, limit, key, title)
    data, info = tfds.load(name, batch_size=-1, **kwargs)
    x, y = tfds.as_numpy(data)
    if limit is not None and limit < len(x):
        idx = np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))
        x, y = x[idx], y[idx]
    if image_size is not None and tuple(image_size) != x.shape[1:3]:
        from PIL import Image

        size = (image_size[1], image_size[0])
        x = np.stack([np.asarray(Image.fromarray(i).resize(size, Image.BILINEAR)) for i in x])
    return ArraySplit(np.asarray(x, "uint8"), y, tuple(info.features["label"].names), split, title, key)
