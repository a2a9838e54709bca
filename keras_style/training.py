"""The one training loop: compiled step, checkpoints and resume, TensorBoard, progress, export.

A *task* supplies what is particular to a method: the trainable `model`, a `dataset()`, the
`losses(batch)` (a dict of float32 scalars with a "total"), `preview()` images for TensorBoard, and
`export(path)`. Everything else (this file) is shared by the per-style and MetaNet trainers.
"""
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_style import data, images, losses
from keras_style.config import describe, fetch_style_image
from keras_style.progress import Progress
from keras_style.transform import build_transform_net
from keras_style.vgg import build_vgg

PREVIEW_COUNT = 4


class TransformTask:
    """Johnson et al.: one transform network trained for one style image."""

    def __init__(self, config, skipped):
        self.config = config
        self.skipped = skipped
        self.files = data.list_image_files(config.train_data)
        self.model = build_transform_net(config.base, config.residual_blocks)
        self.vgg = build_vgg(config.content_layers + config.style_layers,
                             weights=config.loss_model_file)
        style = images.load_image(fetch_style_image(config.style_image), max_size=config.style_size)
        features = self.vgg(style[None])
        self.style_grams = {n: losses.gram_matrix(features[n]) for n in config.style_layers}
        self.weights = losses.LossWeights(config.content_weight, config.style_weight, config.tv_weight)
        self.preview_photos = data.fixed_images(_preview_paths(config, self.files), config.image_size,
                                                PREVIEW_COUNT, skipped)

    def steps_per_epoch(self):
        return math.ceil(len(self.files) / self.config.batch_size)

    def dataset(self):
        c = self.config
        return data.image_crops(self.files, c.image_size, c.batch_size, seed=c.seed, skipped=self.skipped)

    def losses(self, photos):
        generated = self.model(photos, training=True)
        features = self.vgg(tf.concat([generated, photos], axis=0))
        count = tf.shape(photos)[0]
        generated_features = {n: f[:count] for n, f in features.items()}
        content_targets = {n: features[n][count:] for n in self.config.content_layers}
        return losses.perceptual_loss(generated, generated_features, content_targets,
                                      self.style_grams, self.weights)

    def preview(self):
        return self.model(self.preview_photos, training=False)

    def export(self, path):
        self.model.save(path)


def _preview_paths(config, train_files):
    if config.val_images:
        return [str(p) for p in images.find_images(config.val_images)]
    return train_files


def make_optimizer(config, task):
    if config.optimizer == "adagrad2":
        from keras_style.optimizers import adagrad2_for
        return adagrad2_for(config, task)
    return keras.optimizers.Adam(learning_rate=config.learning_rate)


class Trainer:
    def __init__(self, config, task, optimizer):
        self.config, self.task, self.optimizer = config, task, optimizer
        self.run_dir = Path(config.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.nonfinite = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_steps")
        self.variables = task.model.trainable_variables
        optimizer.build(self.variables)
        checkpoint = tf.train.Checkpoint(step=self.step, nonfinite=self.nonfinite,
                                         model=task.model, optimizer=optimizer)
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.run_dir), max_to_keep=3)
        self.writer = tf.summary.create_file_writer(str(self.run_dir))
        self.total_steps = config.max_steps or config.epoch * task.steps_per_epoch()
        self._train_step = tf.function(self._step_fn)

    def _step_fn(self, batch):
        with tf.GradientTape() as tape:
            parts = self.task.losses(batch)
        grads = tape.gradient(parts["total"], self.variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])
        finite = tf.logical_and(finite, tf.math.is_finite(parts["total"]))

        def apply():
            self.optimizer.apply_gradients(zip(grads, self.variables))
            return tf.constant(True)

        def skip():
            self.nonfinite.assign_add(1)
            return tf.constant(False)

        applied = tf.cond(finite, apply, skip)
        self.step.assign_add(1)
        return parts, applied

    def restore(self):
        latest = self.manager.latest_checkpoint
        if latest:
            self.manager.checkpoint.restore(latest).expect_partial()
            print(f"resumed from step {int(self.step.numpy())} ({latest})")
        return int(self.step.numpy())

    def run(self):
        start = self.restore()
        if start >= self.total_steps:
            print(f"already trained for {start} of {self.total_steps} steps; exporting")
            return self.export()
        print(f"training {self.config.naming}: steps {start + 1}..{self.total_steps}, "
              f"batch {self.config.batch_size}, logs and checkpoints in {self.run_dir}")
        self._write_text_summary(start)
        progress = Progress(self.total_steps, start=start)
        batches = iter(self.task.dataset())
        window_start, window_steps = time.perf_counter(), 0
        try:
            for step in range(start + 1, self.total_steps + 1):
                parts, _ = self._train_step(next(batches))
                window_steps += 1
                values = {k: float(v) for k, v in parts.items()}
                progress.update(step, values)
                if step % self.config.log_every == 0 or step == self.total_steps:
                    rate = window_steps * self.config.batch_size / (time.perf_counter() - window_start)
                    self._log(step, values, rate)
                    window_start, window_steps = time.perf_counter(), 0
                if step % self.config.save_every == 0:
                    self.manager.save(checkpoint_number=step)
        except KeyboardInterrupt:
            progress.close()
            print(f"\ninterrupted at step {int(self.step.numpy())}: saving a checkpoint and exporting")
            self.manager.save(checkpoint_number=int(self.step.numpy()))
            self.export()
            raise
        progress.close()
        self.manager.save(checkpoint_number=int(self.step.numpy()))
        return self.export()

    def _log(self, step, values, images_per_second):
        lr = self.optimizer.learning_rate
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"loss/{name}", value)
            tf.summary.scalar("learning_rate", float(keras.ops.convert_to_numpy(lr)))
            tf.summary.scalar("images_per_second", images_per_second)
            tf.summary.scalar("skipped/unreadable_files", self.task.skipped.count)
            tf.summary.scalar("skipped/nonfinite_steps", int(self.nonfinite.numpy()))
            for name, value in getattr(self.task, "extra_scalars", lambda: {})().items():
                tf.summary.scalar(name, value)
            preview = np.clip(keras.ops.convert_to_numpy(self.task.preview()), 0, 255) / 255.0
            tf.summary.image("preview", preview, max_outputs=len(preview))
        self.writer.flush()

    def _write_text_summary(self, step):
        text = "\n".join(f"    {k}: {v}" for k, v in describe(self.config).items())
        with self.writer.as_default(step=step):
            tf.summary.text("config", text)

    def export(self):
        path = self.config.export_path
        self.task.export(path)
        print(f"exported {path}")
        return path


def train(config):
    """Train the model `config` describes; returns the exported `.keras` path."""
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    skipped = data.SkippedFiles()
    task = TransformTask(config, skipped)
    return Trainer(config, task, make_optimizer(config, task)).run()
