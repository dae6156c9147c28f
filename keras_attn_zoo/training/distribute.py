"""Data-parallel training on several devices, per backend.

| name | backend | what |
| --- | --- | --- |
| ``mirrored`` | TensorFlow | ``tf.distribute.MirroredStrategy`` over the GPUs (or the logical CPUs) of one machine |
| ``multi_worker`` | TensorFlow | ``tf.distribute.MultiWorkerMirroredStrategy``, cluster from ``TF_CONFIG`` |
| ``tpu`` | TensorFlow | ``tf.distribute.TPUStrategy`` (``tpu=`` names the TPU; empty for a local one) |
| ``data_parallel`` | JAX | ``keras.distribution.DataParallel`` over all devices, of one process or of several (``KERAS_DISTRIBUTION_*``) |
| ``none`` | any | one device |
| ``auto`` | any | ``multi_worker`` if ``TF_CONFIG`` lists several workers, ``tpu`` if ``tpu=`` is given, ``mirrored`` / ``data_parallel`` if there are several accelerators, else ``none`` |

The batch size of a recipe is global: each of N replicas computes 1/N of every batch, so the
learning rate stays the paper's. Under tf.distribute, batch normalisation statistics are per
replica by default, as in the papers' ``DataParallel`` runs; :func:`synchronize_batch_norm`
(``train(sync_bn=True)``, ``--sync-bn``) computes them over the global batch instead. JAX's
``data_parallel`` traces the step on the global batch, sharded over the devices, so its
statistics are the global batch's already.

Several processes (machines): ``multi_worker`` reads the cluster from ``TF_CONFIG``; JAX's
``data_parallel`` from Keras' variables ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator's
``host:port``), ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``
(:func:`get_distribution` calls ``keras.distribution.initialize``; each process then feeds its
share of every global batch, :meth:`Distribution.share`). Every process trains; only the chief
(TF_CONFIG's ``chief`` task, else ``worker`` 0; JAX's process 0) writes the run's files
(:attr:`Distribution.is_chief`).
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
        is_chief: whether this process writes the run's files (False for the other workers of
            a cluster).
        process_index: this process's place among those that feed the data (JAX's processes).
        process_count: the number of processes that feed the data: 1, or JAX's processes
            (tf.distribute splits the data itself).
    """

    name: str
    description: str
    num_replicas: int = 1
    strategy: object = None
    distribution: object = None
    is_chief: bool = True
    process_index: int = 0
    process_count: int = 1

    def scope(self):
        """The context to build, compile and fit the model in."""
        if self.strategy is not None:
            return self.strategy.scope()
        if self.distribution is not None:
            return self.distribution.scope()
        return contextlib.nullcontext()

    def share(self, batches):
        """``batches`` (a ``keras_attn_zoo.data`` ``Batches``) giving this process its share of every
        global batch: with several JAX processes each feeds its contiguous part, which Keras
        joins into the global batch (``jax.make_array_from_process_local_data``)."""
        if self.process_count == 1:
            return batches
        if not hasattr(batches, "share"):
            raise ValueError(f"Training in {self.process_count} processes needs an image folder, an archive or "
                             "cifar10-jpeg as data (their batches can be shared), not a tf.data stream.")
        return batches.share(self.process_index, self.process_count)

    def prepare(self, model):
        """Make a compiled ``model`` ready to ``fit`` / ``evaluate`` under this distribution.

        Under ``multi_worker`` it works around two failures of Keras 3's ``fit`` with
        MultiWorkerMirroredStrategy (3.15.1, and its main branch as of 3.16.0;
        keras-team/keras#20585):

        - Keras builds the model from the mean of the first distributed batch,
          ``strategy.reduce("MEAN", (x, y))``, which this strategy cannot reduce (a nest of
          per-replica tensors: "Attempt to convert a value (PerReplica...) to a Tensor"). The
          build needs only the batch's shapes and dtypes: this one builds from this worker's
          first replica's share of the batch.
        - Keras averages each step's logs over the replicas with
          ``strategy.reduce("MEAN", value, axis=0)``, which fails on the scalar loss and
          metrics ("Invalid reduction dimension 0 for input with 0 dimensions"): the steps here
          return them as vectors of one element, whose mean over the replicas along axis 0 is
          the scalar Keras expects. (The epoch's logs are read from the metrics, whose
          variables Keras sums over the replicas, as on one machine.)
        """
        if self.name != "multi_worker":
            return model
        import tensorflow as tf

        strategy = self.strategy

        def vectors(step):
            def step_with_vector_logs(data):
                return keras.tree.map_structure(
                    lambda v: keras.ops.reshape(v, (1,)) if len(v.shape) == 0 else v, step(data))
            return step_with_vector_logs

        model.train_step = vectors(model.train_step)
        model.test_step = vectors(model.test_step)

        def local(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        def build_from_local_batch(iterator=None, data_batch=None):
            if iterator is not None:
                for _, _, batches in iterator:
                    data_batch = keras.tree.map_structure(local, next(batches))
                    break
            with strategy.scope():
                model._symbolic_build(data_batch=data_batch)

        model._maybe_symbolic_build = build_from_local_batch
        return model


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


def _tf_config():
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task', got {config!r}.")
    return config


def _tf_config_workers():
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def tf_config_task():
    """This process's task in ``TF_CONFIG``: ``(type, index, is_chief)``, or None without one.

    The chief is the ``chief`` task, or ``worker`` 0 in a cluster without one (tf.distribute's
    rule).
    """
    config = _tf_config()
    task, cluster = config.get("task"), config.get("cluster", {})
    if not task:
        return None
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ValueError(f"TF_CONFIG's task {task} is not in its cluster {cluster}: expected a type of "
                         f"{sorted(cluster)} and an index below its number of addresses.")
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return kind, index, chief


def synchronize_batch_norm(model):
    """Make every ``BatchNormalization`` layer of ``model`` compute its batch statistics over all
    replicas of a tf.distribute strategy (``synchronized=True``), not over its own share.

    Call it before the model is traced (before ``fit``). With one replica it changes nothing.
    Weight files are unchanged (the setting is no variable), so the weights load anywhere.

    Args:
        model: a Keras model (nested models included).

    Returns:
        The number of layers changed.

    Raises:
        ValueError: on a backend other than TensorFlow (Keras supports ``synchronized`` only
            there; JAX's ``data_parallel`` computes the global batch's statistics already).
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            f"Synchronized BatchNormalization is a tf.distribute option (TensorFlow backend), not {backend}'s"
            + ("; JAX's data_parallel computes the global batch's statistics already." if backend == "jax" else ".")
        )
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


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
    if name == "multi_worker" or (name == "auto" and _tf_config_workers() > 1):
        # before anything lists devices or runs an op: collectives are configured at start-up
        task = tf_config_task()
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise RuntimeError(
                "MultiWorkerMirroredStrategy must be created before TensorFlow runs anything "
                f"({e}): choose the strategy first thing in the process."
            ) from e
        return Distribution("multi_worker", f"MultiWorkerMirroredStrategy, {strategy.num_replicas_in_sync} "
                            f"replicas over {max(1, _tf_config_workers())} worker(s) (TF_CONFIG)",
                            strategy.num_replicas_in_sync, strategy, is_chief=task is None or task[2])
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "tpu" if tpu is not None else "mirrored" if len(gpus) > 1 else "none"
    if name == "none":
        return Distribution("none", f"one device ({(gpus[0].name if gpus else 'CPU')})")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        kind = "GPUs" if gpus else "logical CPU devices"
        return Distribution(name, f"MirroredStrategy over {len(devices)} {kind}",
                            strategy.num_replicas_in_sync, strategy)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
    return Distribution("tpu", f"TPUStrategy, {strategy.num_replicas_in_sync} cores",
                        strategy.num_replicas_in_sync, strategy)


PROCESS_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                     "KERAS_DISTRIBUTION_PROCESS_ID")


def _jax_processes():
    """Connect this process to the others named by Keras' ``KERAS_DISTRIBUTION_*`` variables (once,
    before JAX computes anything); returns ``(index, count)``, ``(0, 1)`` without them."""
    import jax

    given = {key: os.environ.get(key) for key in PROCESS_VARIABLES}
    if not any(given.values()):
        return 0, 1
    try:
        count, index = int(given["KERAS_DISTRIBUTION_NUM_PROCESSES"]), int(given["KERAS_DISTRIBUTION_PROCESS_ID"])
    except (TypeError, ValueError):
        raise ValueError(f"Training in several JAX processes needs all of {', '.join(PROCESS_VARIABLES)} "
                         f"(the coordinator's host:port, an integer count and this process's index); got {given}.")
    if not 0 <= index < count or not given["KERAS_DISTRIBUTION_JOB_ADDRESSES"]:
        raise ValueError(f"KERAS_DISTRIBUTION_PROCESS_ID must be in [0, {count}) and the job addresses set; got {given}.")
    if not jax.distributed.is_initialized():
        try:
            keras.distribution.initialize()
        except RuntimeError as e:
            raise RuntimeError(f"JAX's processes must connect before JAX computes anything ({e}): choose the "
                               "strategy first thing in the process, before --cpu-devices.") from e
    return jax.process_index(), jax.process_count()


def _jax(name):
    if name in ("mirrored", "multi_worker", "tpu"):
        raise ValueError(
            f"{name} is a tf.distribute strategy (TensorFlow backend); with JAX use data_parallel (several "
            f"processes: set {', '.join(PROCESS_VARIABLES)})."
        )
    index, count = _jax_processes() if name in ("auto", "data_parallel") else (0, 1)
    devices = keras.distribution.list_devices()
    if name == "auto":
        name = "data_parallel" if len(devices) > 1 else "none"
    if name == "none":
        return Distribution("none", f"one device ({devices[0]})")
    distribution = keras.distribution.DataParallel(devices=devices)
    where = f" in {count} processes" if count > 1 else ""
    if count > 1:
        distribution.auto_shard_dataset = False  # each process feeds its share: Distribution.share
    return Distribution(name, f"keras.distribution.DataParallel over {len(devices)} devices{where}",
                        len(devices), distribution=distribution, is_chief=index == 0, process_index=index,
                        process_count=count)
