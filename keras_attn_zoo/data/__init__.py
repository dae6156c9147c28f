"""Data for training and evaluation: sources, the papers' augmentation, input normalisation.

>>> from keras_attn_zoo.data import load_split
>>> train = load_split("cifar10-jpeg", "train", data_dir="/data")   # or a folder, or "cifar10"
>>> train.num_examples, train.class_names[:2]
(50000, ('airplane', 'automobile'))

Nothing here imports TensorFlow unless a tensorflow-datasets source is asked for.
"""

from keras_attn_zoo.data.augment import (
    AUGMENTATIONS,
    RandomPadCrop,
    RandomResizedCrop,
    augmentation_layers,
)
from keras_attn_zoo.data.preprocessing import (
    IMAGENET_STATS,
    ChannelStats,
    channel_stats,
    normalization_layer,
    preprocess_input,
    recorded_stats,
)
from keras_attn_zoo.data.sources import (
    BadImagesError,
    FileSplit,
    decode_image,
    extract_archive,
    load_split,
    load_splits,
    split_folders,
)
from keras_attn_zoo.data.splits import ArraySplit, Split

__all__ = [
    "AUGMENTATIONS",
    "ArraySplit",
    "BadImagesError",
    "ChannelStats",
    "FileSplit",
    "IMAGENET_STATS",
    "RandomPadCrop",
    "RandomResizedCrop",
    "Split",
    "augmentation_layers",
    "channel_stats",
    "decode_image",
    "extract_archive",
    "load_split",
    "load_splits",
    "normalization_layer",
    "preprocess_input",
    "recorded_stats",
    "split_folders",
]
