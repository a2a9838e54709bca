"""tf.distribute for the trainers: the strategy a config names, which process writes files, and how
each replica gets its share of a global batch.

Every process runs the same program. Gradients are averaged over replicas before the optimiser
sees them, so a run on N replicas takes the same steps as one replica with the same global batch.
"""
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from keras_style.errors import UserError



def make_strategy(name):
    """The tf.distribute strategy for `distribute: none | mirrored | multi_worker`.

    Create it before any other TensorFlow work: MultiWorkerMirroredStrategy starts this process's
    server from TF_CONFIG.
    """
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise UserError("distribute: multi_worker needs the cluster in the TF_CONFIG environment "
                            "variable (see the README's section on training on several machines)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes checkpoints, TensorBoard events and the exported model."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_name(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return "local"
    return f"{resolver.task_type} {resolver.task_id}"


class OutputFolder:
    """Where this process writes: the run folder for the chief; for other workers a temporary folder
    (they must save too, since saving a distributed checkpoint is a collective step) removed by
    `cleanup()`."""

    def __init__(self, run_dir, chief):
        self.chief = chief
        self.path = Path(run_dir) if chief else Path(tempfile.mkdtemp(prefix="keras_style_worker_"))
        self.path.mkdir(parents=True, exist_ok=True)

    def cleanup(self):
        if not self.chief:
            shutil.rmtree(self.path, ignore_errors=True)


def check_batch_size(batch_size, strategy):
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(f"batch_size {batch_size} must be a multiple of the {replicas} replicas "
                        "it is split across")


def replica_rows(tensor, replica, replicas):
    """Replica `replica`'s contiguous share of the leading (batch) axis."""
    share = tf.shape(tensor)[0] // replicas
    return tensor[replica * share:(replica + 1) * share]


def distribute_batches(strategy, make_dataset, share):
    """A distributed dataset giving each replica `share(global_batch, replica, replicas)`.

    Every input pipeline builds the same seeded stream of global batches (`make_dataset()`) and
    keeps the rows of the replicas it feeds, so the batches a step sees are exactly those of a
    single-replica run: decoding is repeated per worker, which is small beside the VGG passes.
    """
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return strategy.distribute_datasets_from_function(lambda context: make_dataset())

    def dataset_fn(context):
        per_pipeline = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * per_pipeline

        def shares(batch):
            parts = [share(batch, r, replicas) for r in range(first, first + per_pipeline)]
            stacked = tf.nest.map_structure(lambda *xs: tf.stack(xs), *parts)
            return tf.data.Dataset.from_tensor_slices(stacked)

        return make_dataset().flat_map(shares).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


def first_local(strategy, values):
    """One local copy of values that are identical on every replica (e.g. after an all-reduce)."""
    return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], values)
