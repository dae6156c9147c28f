"""Shared test helpers: layer and model round trips with exact output comparison."""

import functools
import importlib.util
import tarfile
from pathlib import Path

import numpy as np

import keras


# The real CIFAR-10 as JPEGs, beside the repository (see ../shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR10_ARCHIVE = SHARED_DATA / "cifar10-jpeg.tar.gz"


def sample_images(n=2, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype("float32")


def run_model_saving_test(model, tmp_path, x):
    """``.keras`` and ``.weights.h5`` round trips must reproduce the outputs exactly."""
    expected = model.predict(x, verbose=0)
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), expected)

    weights = tmp_path / f"{model.name}.weights.h5"
    model.save_weights(weights)
    clone = keras.models.clone_model(model)  # fresh random weights, same architecture
    assert not np.array_equal(clone.predict(x, verbose=0), expected)
    clone.load_weights(weights)
    np.testing.assert_array_equal(clone.predict(x, verbose=0), expected)
    return weights


def run_layer_serialization_test(layer, inputs):
    """A layer rebuilt from its config with the same weights gives the same output."""
    out = layer(inputs)
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    clone(inputs)
    clone.set_weights(layer.get_weights())
    for a, b in zip(keras.tree.flatten(out), keras.tree.flatten(clone(inputs))):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=0, atol=0)
    return clone


@functools.lru_cache(maxsize=None)
def make_docs():
    """The README generator, ``scripts/make_docs.py``, as a module."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "make_docs.py"
    spec = importlib.util.spec_from_file_location("make_docs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_counts():
    """Our parameter counts as the README's model table states them."""
    return make_docs().readme_counts((make_docs().README).read_text())


def readme_macs():
    """Our multiply-adds per image as the README's model table states them."""
    return make_docs().readme_macs((make_docs().README).read_text())


def extract_cifar(dest, per_class, split="test"):
    """The first ``per_class`` JPEGs of each class of the CIFAR-10 copy, extracted into ``dest``
    in its class-folder layout (``dest/test/cat/0000.jpg``...); returns ``dest / split``."""
    if not CIFAR10_ARCHIVE.is_file():
        raise FileNotFoundError(f"The CIFAR-10 JPEG copy is missing: {CIFAR10_ARCHIVE} (see shared/data/README.md).")
    wanted = {f"{i:04d}.jpg" for i in range(per_class)}
    with tarfile.open(CIFAR10_ARCHIVE, "r|gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[0] == split and parts[2] in wanted:
                tar.extract(member, dest, filter="data")
    return Path(dest) / split


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@functools.lru_cache(maxsize=None)
def cifar_sample(per_class=16, split="train", classes=CIFAR_CLASSES):
    """Real CIFAR-10 images (the JPEG copy beside the repo): ``(x in [0, 1], y)``, the first
    ``per_class`` images of each class in archive order."""
    import io
    import tarfile

    from PIL import Image

    wanted = {c: [] for c in classes}
    with tarfile.open(CIFAR10_ARCHIVE) as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) < 3 or parts[-3] != split or parts[-2] not in wanted:
                continue
            if len(wanted[parts[-2]]) < per_class:
                data = tar.extractfile(member).read()
                wanted[parts[-2]].append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            if all(len(v) == per_class for v in wanted.values()):
                break
    x = np.stack([img for c in classes for img in wanted[c]]).astype("float32") / 255.0
    y = np.repeat(np.arange(len(classes)), per_class)
    return x, y


_PARAM_COUNTS = {}


def param_count(name, model=None, **build_kwargs):
    """Trainable parameters of registry model ``name`` built with ``build_kwargs``, counted once
    per test session (builds of deep models dominate the suite's time): from ``model`` when the
    caller has built it already. Arguments equal to the registry's defaults share one entry."""
    from keras_attn_zoo import count_trainable, get_spec

    spec = get_spec(name)
    defaults = {"classes": spec.num_classes, "input_shape": tuple(spec.input_shape)}
    kwargs = {k: v for k, v in build_kwargs.items()
              if not (k in defaults and (tuple(v) if k == "input_shape" else v) == defaults[k])}
    key = (spec.name, repr(sorted(kwargs.items())))
    if key not in _PARAM_COUNTS:
        _PARAM_COUNTS[key] = count_trainable(model if model is not None else spec.build(**kwargs))
    return _PARAM_COUNTS[key]


def kill_when(command, env, cwd, ready, timeout_s=300):
    """Start ``command`` and SIGKILL it as soon as ``ready()`` is true (a training run killed
    mid-way); fails if it ends first or ``ready`` takes longer than ``timeout_s``."""
    import os
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run did not get far enough in time"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def bomb_png(path, width, height, rows=None):
    """A grey PNG of ``width`` x ``height`` zero pixels, compressed without ever holding the
    image: a decompression bomb of a few hundred KB. ``rows`` writes only that many rows of
    pixel data (the header still declares ``height``): enough for files refused at the header."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = height if rows is None else rows
    compressor, block = zlib.compressobj(9), bytes((width + 1) * 256)  # a filter byte per row
    parts = [compressor.compress(block) for _ in range(rows // 256)]
    parts += [compressor.compress(bytes((width + 1) * (rows % 256))), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                           + chunk(b"IEND", b""))
    return Path(path)


# Python code that makes `tensorflow` (and tensorflow-datasets, tensorboard) unimportable, as
# on the accelerator machine (JAX only); put before code run with `python -c`.
NO_TENSORFLOW = """
import importlib.abc, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets", "tensorboard"):
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, NoTensorFlow())
"""
# Runs the CLI (its arguments after `-c CODE`) with `tensorflow` unimportable.
WITHOUT_TENSORFLOW = NO_TENSORFLOW + """
from keras_attn_zoo.cli import main
sys.exit(main(sys.argv[1:]))
"""
