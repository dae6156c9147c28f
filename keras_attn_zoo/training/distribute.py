"""Data-parallel training on several devices, per backend.

| name | backend | what |
| --- | --- | --- |
| ``mirrored`` | TensorFlow | ``tf.distribute.MirroredStrategy`` over the GPUs (or the logical CPUs) of one machine |
| ``multi_worker`` | TensorFlow | ``tf.distribute.MultiWorkerMirroredStrategy``, cluster from ``TF_CONFIG`` |
| ``tpu`` | TensorFlow | ``tf.distribute.TPUStrategy`` (``tpu=`` names the TPU; empty for a local one) |
| ``data_parallel`` | JAX | ``keras.distribution.DataParallel`` over all devices |
| ``none`` | any | one device |
| ``auto`` | any | ``multi_worker`` if ``TF_CONFIG`` lists several workers, ``tpu`` if ``tpu=`` is given, ``mirrored`` / ``data_parallel`` if there are several accelerators, else ``none`` |

The batch size of a recipe is global: each of N replicas computes 1/N of every batch, so the
learning rate stays the paper's. Batch normalisation statistics are per replica, as in the
papers' ``DataParallel`` runs.
"""

import contextlib
import dataclasses
import json
import os

import keras

STRATEGIES = ("auto", "none", "mirrored", "multi_worker", "tpu", "data_parallel")


@dataclasses.dataclass
class Distribution:
    """A chosen way to spread training over devices.

    Attributes:
        name: one of ``STRATEGIES`` (never "auto").
        description: what it runs on, for logs and training records.
        num_replicas: number of model replicas.
        strategy: the ``tf.distribute.Strategy`` (TensorFlow) or None.
        distribution: the ``keras.distribution.Distribution`` (JAX) or None.
    """

    name: str
    description: str
    num_replicas: int = 1
    strategy: object = None
    distribution: object = None

    def scope(self):
        """The context to build, compile and fit the model in."""
        if self.strategy is not None:
            return self.strategy.scope()
        if self.distribution is not None:
            return self.distribution.scope()
        return contextlib.nullcontext()


def configure_cpu_devices(count):
    """Split the host CPU into ``count`` logical devices, to run data parallelism without GPUs.

    Must run before the backend creates its first tensor (first thing in a process).

    Args:
        count: number of logical CPU devices (>= 1).
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"The number of CPU devices must be a positive integer, got {count!r}.")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError as e:
            raise RuntimeError(
                "Logical CPU devices must be configured before TensorFlow creates a tensor; "
                "call configure_cpu_devices first thing in the process."
            ) from e
    elif backend == "jax":
        import jax

        jax.config.update("jax_num_cpu_devices", count)
        if len(jax.devices("cpu")) != count:
            raise RuntimeError(
                f"JAX has {len(jax.devices('cpu'))} CPU devices, not {count}: configure them "
                "before JAX initialises (first thing in the process)."
            )
    else:
        raise ValueError(f"Logical CPU devices are supported on TensorFlow and JAX, not {backend}.")


def _tf_config_workers():
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def get_distribution(name="auto", tpu=None):
    """The :class:`Distribution` for a strategy name on the current backend.

    Args:
        name: one of ``STRATEGIES``. Defaults to "auto".
        tpu: TPU name or address for "tpu" ("" for a local TPU VM). Defaults to None.

    Returns:
        A :class:`Distribution`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(name, tpu)
    if backend == "jax":
        return _jax(name)
    if name not in ("auto", "none"):
        raise ValueError(f"Distributed training is supported on TensorFlow and JAX, not {backend}.")
    return Distribution("none", "one device")


def _tensorflow(name, tpu):
    import tensorflow as tf

    if name == "data_parallel":
        raise ValueError("data_parallel is the JAX backend's strategy; with TensorFlow use mirrored, multi_worker or tpu.")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if _tf_config_workers() > 1:
            name = "multi_worker"
        elif tpu is not None:
            name = "tpu"
        else:
            name = "mirrored" if len(gpus) > 1 else "none"
    if name == "none":
        return Distribution("none", f"one device ({(gpus[0].name if gpus else 'CPU')})")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        kind = "GPUs" if gpus else "logical CPU devices"
        return Distribution(name, f"MirroredStrategy over {len(devices)} {kind}",
                            strategy.num_replicas_in_sync, strategy)
    if name == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return Distribution(name, f"MultiWorkerMirroredStrategy, {strategy.num_replicas_in_sync} replicas "
                            f"over {max(1, _tf_config_workers())} worker(s) (TF_CONFIG)",
                            strategy.num_replicas_in_sync, strategy)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
    return Distribution("tpu", f"TPUStrategy, {strategy.num_replicas_in_sync} cores",
                        strategy.num_replicas_in_sync, strategy)


def _jax(name):
    if name in ("mirrored", "multi_worker", "tpu"):
        raise ValueError(
            f"{name} is a tf.distribute strategy (TensorFlow backend); with JAX use "
            "data_parallel (several hosts: call keras.distribution.initialize() first)."
        )
    devices = keras.distribution.list_devices()
    if name == "auto":
        name = "data_parallel" if len(devices) > 1 else "none"
    if name == "none":
        return Distribution("none", f"one device ({devices[0]})")
    distribution = keras.distribution.DataParallel(devices=devices)
    return Distribution(name, f"keras.distribution.DataParallel over {len(devices)} devices",
                        len(devices), distribution=distribution)
