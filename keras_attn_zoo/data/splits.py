"""What every data source returns: a :class:`Split` of labelled images, in memory
(:class:`ArraySplit`) or decoded batch by batch (``sources.FileSplit``), and its seeded batches."""

import abc
import dataclasses
import math

import numpy as np

import keras


class Split(abc.ABC):
    """One split of a labelled image data set.

    Attributes:
        dataset: the data-set key the registry's paper results use ("cifar10", "imagenet"...),
            or None for custom data.
        split: "train", "test"...
        source: what the data is, e.g. "CIFAR-10 (JPEG copy, quality 75)".
        description: the source, split and size, for records and results tables, e.g.
            "CIFAR-10 (JPEG copy, quality 75), test split, 10,000 images".
        class_names: class names in label order.
        image_shape: (H, W, C) of the images it yields.
        num_examples: number of images.
        skipped: the messages (each naming its file) of the images left out because they
            cannot be used (``load_split(skip_bad_images=True)``); empty otherwise.
    """

    image_shape = ()
    skipped = ()

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def description(self):
        return f"{self.source}, {self.split} split, {self.num_examples:,} images"

    @property
    @abc.abstractmethod
    def num_examples(self):
        """Number of images."""

    @abc.abstractmethod
    def batches(self, batch_size, shuffle=False, seed=0, drop_remainder=False):
        """Batches of (uint8 images, int32 labels) for ``fit`` / ``evaluate`` / ``predict``.

        Args:
            batch_size: global batch size.
            shuffle: reshuffle every epoch (seeded). Defaults to False.
            seed: shuffling seed. Defaults to 0.
            drop_remainder: drop a last, smaller batch. Defaults to False.

        Returns:
            A ``keras.utils.PyDataset`` (or a ``tf.data.Dataset`` for streaming
            tensorflow-datasets splits).
        """

    @abc.abstractmethod
    def sample_images(self, count, seed=0):
        """Up to ``count`` images (uint8 array), drawn at random with a seed, for statistics."""

    def arrays(self, batch_size=256):
        """All images (uint8, (N, H, W, C)) and labels (int32, (N,)) of the split, in order, as two arrays.

        For measurements that need every image at once; a split larger than memory is read with
        :meth:`batches` instead.
        """
        xs, ys = zip(*((np.asarray(x), np.asarray(y)) for x, y in self.batches(batch_size)))
        return np.concatenate(xs), np.concatenate(ys).astype("int32")


@dataclasses.dataclass
class ArraySplit(Split):
    """A split held in memory as uint8 images ``x`` (N, H, W, C) and int labels ``y``."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple
    split: str
    source: str
    dataset: str = None

    def __post_init__(self):
        if not len(self.x):
            raise ValueError(f"The {self.split} split of {self.source} has no images.")
        if len(self.x) != len(self.y):
            raise ValueError(f"Need as many labels as images, got {len(self.y)} labels for {len(self.x)} images.")
        self.y = np.asarray(self.y, "int32")
        self.image_shape = tuple(self.x.shape[1:])

    @property
    def num_examples(self):
        return len(self.x)

    def batches(self, batch_size, shuffle=False, seed=0, drop_remainder=False):
        return Batches(len(self.x), lambda idx: (self.x[idx], self.y[idx]), batch_size, shuffle, seed, drop_remainder)

    def arrays(self, batch_size=256):
        return self.x, self.y

    def sample_images(self, count, seed=0):
        if count >= len(self.x):
            return self.x
        return self.x[np.sort(np.random.default_rng(seed).choice(len(self.x), count, replace=False))]


class Batches(keras.utils.PyDataset):
    """Seeded, per-epoch reshuffled batches of a split (epoch e uses the order of seed + e)."""

    def __init__(self, size, load, batch_size, shuffle, seed, drop_remainder, workers=1):
        super().__init__(workers=workers, use_multiprocessing=False)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.size, self.load, self.batch_size = size, load, batch_size
        self.shuffle, self.seed, self.drop_remainder = shuffle, seed, drop_remainder
        self.epoch = 0
        self.order = self._order()
        self.part, self.parts = 0, 1

    def _order(self):
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def __len__(self):
        count = self.size // self.batch_size if self.drop_remainder else math.ceil(self.size / self.batch_size)
        if count < 1:
            raise ValueError(f"{self.size} images give no full batch of {self.batch_size}.")
        return count

    def indices(self, index):
        """The positions of the examples in batch ``index`` of the current epoch, sorted (what
        ``self[index]`` loads; the device-resident loop of ``training.device_loop`` gathers the
        same batches on the accelerator); of a shared batch, this part's."""
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} of {len(self)}.")
        batch = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        if len(batch) % self.parts:
            raise ValueError(f"A batch of {len(batch)} cannot be shared by {self.parts} processes: drop the "
                             "remainder, or choose a batch size they divide.")
        size = len(batch) // self.parts
        return batch[self.part * size:(self.part + 1) * size]

    def share(self, part, parts):
        """Yield only part ``part`` of ``parts`` (contiguous, equal) of every batch: one process's share
        of the global batch when several processes train together. Returns ``self``."""
        if not 0 <= part < parts:
            raise ValueError(f"part must be in [0, {parts}), got {part}.")
        self.part, self.parts = part, parts
        return self

    def __getitem__(self, index):
        return self.load(self.indices(index))

    def set_epoch(self, epoch):
        """Continue with the order of ``epoch`` (when training resumes from a checkpoint)."""
        self.epoch = epoch
        self.order = self._order()

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)
