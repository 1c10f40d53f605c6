"""Training over several devices or hosts with TensorFlow's tf.distribute (train.distribute).

- `none`: the default strategy, one device.
- `mirrored`: MirroredStrategy over one host's GPUs; on a host without one, over
  train.cpu_replicas logical CPU devices (how the tests run it: it proves the
  mechanics, and buys little speed, since the devices share the same cores).
- `multi_worker`: MultiWorkerMirroredStrategy over the hosts TF_CONFIG names, one
  process each, as TensorFlow expects. Worker 0 (or the `chief` task, if the
  cluster names one) is the chief.

`train.batch_size` is the global batch: each step splits it over the replicas, so the
optimizer sees the same batches as in one process, and the learning rate is not
rescaled. Every worker reads the whole input pipeline and keeps its share of each
global batch (tf.data's DATA sharding), so shuffling and augmentation are the same
as in one process too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from captcha_ocr.params import TF_CONFIG, Role, TrainParams, cluster_role

ONE_PROCESS = Role(0, 1)


@dataclass(frozen=True)
class Placement:
    """Where training runs: the strategy, its replicas, and this process's role."""

    strategy: Any  # tf.distribute.Strategy
    kind: str  # train.distribute
    role: Role

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        return self.role.is_chief

    def describe(self, batch_size: int) -> str | None:
        if self.kind == "none":
            return None
        where = (
            f"worker {self.role.index} of {self.role.workers}"
            + (" (the chief: it alone writes outputs and the MLflow run)" if self.is_chief else "")
            if self.kind == "multi_worker"
            else "one process"
        )
        return (
            f"train: {self.kind} over {self.replicas} replicas, {where}; the global batch of "
            f"{batch_size} is {batch_size / self.replicas:g} a replica; the learning rate is "
            "as set"
        )


def placement(params: TrainParams) -> Placement:
    """The strategy for train.distribute. Call it before TensorFlow runs an op:
    logical CPU devices and the multi-worker runtime must be set up first."""
    import tensorflow as tf

    kind = params.distribute
    if kind == "none":
        return Placement(tf.distribute.get_strategy(), kind, ONE_PROCESS)
    if kind == "mirrored":
        # Physical devices, not logical: listing those would start the runtime, after
        # which the CPU can no longer be split.
        gpus = tf.config.list_physical_devices("GPU")
        devices = None if gpus else _cpu_devices(params.cpu_replicas)  # None: every GPU
        return Placement(tf.distribute.MirroredStrategy(devices), kind, ONE_PROCESS)
    if kind == "multi_worker":
        role = cluster_role(os.environ.get(TF_CONFIG))
        keras_multi_worker_fixes()
        return Placement(tf.distribute.MultiWorkerMirroredStrategy(), kind, role)
    raise ValueError(f"unknown train.distribute {kind!r}")


def _cpu_devices(count: int) -> list[str]:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or [None]
    if len(configured) < count:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError:  # TensorFlow already started in this process
            raise RuntimeError(
                f"train.distribute mirrored needs {count} logical CPU devices, and TensorFlow "
                "already started in this process with fewer: run the stage in a fresh process"
            ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")[:count]]


def synchronize_batch_norm(model: Any) -> None:
    """Make each BatchNormalization layer normalize over the whole global batch, not
    over each replica's share (Keras's default): the model then trains as in one
    process, and every worker keeps the same moving statistics, so the validation
    sequence accuracy, and what EarlyStopping and ReduceLROnPlateau make of it, are
    the same on all of them. It costs an all-reduce of the batch moments per layer
    per step."""
    import keras

    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def weights_digest(model: Any) -> str:
    """A short hash of a model's weights: workers that trained in step print the same."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:16]


def shard_by_data(dataset: Any) -> Any:
    """Every worker reads the whole pipeline and keeps its share of each global batch,
    so the batches are those of one process (FILE sharding, tf.data's default for
    files, would give each worker other files, and other batches)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


_FIXED = False


def keras_multi_worker_fixes() -> None:
    """Work around two faults of Keras's TensorFlow trainer under
    MultiWorkerMirroredStrategy (Keras 3.x, keras#20585), which make `fit` fail
    before the first step:

    1. `fit` builds the model from a first batch that it averages over the workers
       with `strategy.reduce`, which takes one tensor, not an (images, labels) pair
       ("Attempt to convert a value (PerReplica...) to a Tensor"). Building needs only
       shapes and types: the dataset's element spec gives them, with no collective.
    2. It reduces each logged scalar with `strategy.reduce("MEAN", v, axis=0)`, and a
       scalar has no axis 0. Scalars are averaged over replicas with axis=None.

    tests/test_distribute.py runs plain Keras across two processes and fails once
    Keras's own `fit` works there: then this can go.
    """
    global _FIXED
    if _FIXED:
        return
    from keras.src.backend.tensorflow import trainer

    original_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return original_reduce(values, strategy, reduction)

        def mean(value: Any) -> Any:
            local = value.values[0] if trainer._is_per_replica_instance(value) else value
            return strategy.reduce("MEAN", value, axis=0 if local.shape.rank else None)

        import tensorflow as tf

        return tf.nest.map_structure(mean, values)

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            data_batch = iterator.data_adapter.get_tf_dataset().element_spec
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    _FIXED = True
