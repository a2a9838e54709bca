"""The one training loop: compiled step, checkpoints and resume, TensorBoard, progress, export.

A *task* supplies what is particular to a method: the trainable `model`, a `dataset(start_step)`
(a tf.data pipeline of batches; `start_step` lets a resumed run continue a schedule), the
`losses(batch)` (a dict of float32 scalars with a "total"), `preview()` images for TensorBoard,
`export(path)` and `steps_per_epoch()`; optionally `extra_scalars()` for TensorBoard and, for
the MetaNet optimisers, `metanet_variable_names()`. Everything else (this file) is shared by the per-style and
MetaNet trainers.
"""
import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_style import data, distribute, images, losses, metanet, optimizers, precision, stylize
from keras_style.config import describe, fetch_style_image
from keras_style.errors import UserError
from keras_style.progress import Progress
from keras_style.styles import StyleSet
from keras_style.transform import build_transform_net, widened
from keras_style.vgg import build_vgg

PREVIEW_COUNT = 4
PREVIEW_GRID = 3  # MetaNet previews: this many validation photos x this many validation styles
VALIDATION_SIDE = 512  # the learning curve measures results at this longer side, as quality.py does
COLOUR_SLICES = 64  # quality.py's number of directions for the colour distance
EXPORT_POLICY = "mixed_bfloat16"
NONFINITE_PATIENCE = 20  # consecutive skipped (non-finite) steps before training gives up


class _PhotoTask:
    """What both trainers share: content photos, the loss network, loss weights, preview photos."""

    def __init__(self, config, skipped, vgg_layers, preview_count):
        self.config = config
        self.skipped = skipped
        self.files = data.list_image_files(config.train_data)
        self.vgg = build_vgg(vgg_layers, weights=config.loss_model_file)
        # The photos only need a forward pass to the content layers; sharing the generated images'
        # VGG call would also backpropagate through them (1.7x slower steps at 256 px).
        self.content_vgg = build_vgg(config.content_layers, weights=config.loss_model_file)
        self.weights = losses.LossWeights(config.content_weight, config.style_weight, config.tv_weight)
        self.preview_photos = data.fixed_images(_preview_paths(config.val_images, self.files),
                                                config.photo_side, preview_count, skipped)

    def steps_per_epoch(self):
        return math.ceil(len(self.files) / self.config.batch_size)

    def photo_crops(self):
        c = self.config
        return data.image_crops(self.files, c.image_size, c.batch_size, seed=c.seed, skipped=self.skipped,
                                shorter_side=c.photo_side)


class TransformTask(_PhotoTask):
    """Johnson et al.: one transform network trained for one style image."""

    def __init__(self, config, skipped, initial_weights=None):
        super().__init__(config, skipped, config.content_layers + config.style_layers, PREVIEW_COUNT)
        self.model = build_transform_net(config.base, config.residual_blocks, config.residual_width)
        for name, values in (initial_weights or {}).items():
            layer = self.model.get_layer(name)
            layer.set_weights(widened(layer.get_weights(), values))
        style = images.load_style_image(fetch_style_image(config.style_image), config.style_size)
        features = self.vgg(style[None])
        self.style_grams = {n: losses.gram_matrix(features[n]) for n in config.style_layers}

    def dataset(self, start_step=0):
        return self.photo_crops()

    def replica_share(self, photos, replica, replicas):
        return distribute.replica_rows(photos, replica, replicas)

    def losses(self, photos):
        generated = self.model(photos, training=True)
        content_targets = self.content_vgg(photos)
        return losses.perceptual_loss(generated, self.vgg(generated), content_targets,
                                      self.style_grams, self.weights,
                                      distances=self.config.loss_form == "distances")

    def preview(self):
        return self.model(self.preview_photos, training=False)

    def export(self, path):
        c = self.config
        _for_export(self.model, lambda: build_transform_net(c.base, c.residual_blocks, c.residual_width)).save(path)


class _Trainables(keras.Model):
    """The MetaNet and its meta transform as one object for the optimiser and checkpoints (the
    frozen VGG they are trained through stays out of the checkpoints)."""

    def __init__(self, metanet_model, transform, **kwargs):
        super().__init__(**kwargs)
        self.metanet = metanet_model
        self.transform = transform


class MetaNetTask(_PhotoTask):
    """Shen et al.: a MetaNet that turns any style image into the weights of a transform network,
    trained end to end on batches of photos and styles (the Keras port's schedule, see
    `data.style_schedule`), with a content loss and the mean/std style loss (`loss_form: squared`)
    or the Gram distances (`loss_form: distances`), and optionally a colour term."""

    def __init__(self, config, skipped):
        c = config
        super().__init__(c, skipped, c.content_layers + c.style_layers + metanet.STYLE_FEATURE_LAYERS,
                         PREVIEW_GRID)
        self.transform = self._meta_transform()
        self.metanet = metanet.build_metanet(metanet.ParamLayout.of_model(self.transform),
                                             metanet.style_feature_size(self.vgg), kernel_rank=c.kernel_rank)
        self.model = _Trainables(self.metanet, self.transform, name="metanet_trainables")
        start, new_layers = self._saved_weights(c.init_from) if c.init_from else ((), ())  # before the styles
        files = [f for folder in c.style_data for f in data.list_image_files(folder)]
        # The views are fixed, so are their VGG statistics: computed once, not in every step.
        self.styles = StyleSet(files, self.vgg, c.style_layers, c.style_size, metanet.ENCODE_SIDE,
                               summarise=self._statistics, cache_dir=Path(c.model_path) / "style_targets",
                               skipped=skipped, enlarge=c.enlarge_styles)
        print(f"{len(self.styles)} training styles; loss targets made for {self.styles.prepared} of them "
              "(the rest when first trained on)")
        self.style_views = tf.constant(self.styles.views)
        self.style_statistics = tf.constant(self.styles.statistics, tf.float32)
        metanet.fit_statistics_normalization(self.metanet, self.styles.statistics)
        if start:  # after the standardisation above: the saved one replaces it
            for variable, value in start:
                variable.assign(np.asarray(keras.ops.convert_to_numpy(value), np.float32))
            print(f"starting from the MetaNet {Path(c.init_from).name} (its weights; optimiser and "
                  "steps begin anew)")
            if new_layers:
                print(f"new in this config, from their initial values: {', '.join(new_layers)}")
        self.style_colours = tf.constant(self.styles.colours)
        preview_styles = _preview_paths(c.val_styles, self.styles.files)
        self.preview_styles = data.fixed_images(preview_styles, metanet.ENCODE_SIDE, PREVIEW_GRID, skipped)
        self.validation = _Validation(self, preview_styles) if c.eval_every else None

    def _meta_transform(self):
        c = self.config
        return metanet.build_meta_transform(c.base, c.residual_width, c.residual_blocks, style_norms=c.style_norms,
                                            style_output_convs=c.style_output_convs,
                                            relu_before_output=c.relu_before_output, demodulate=c.demodulate,
                                            color_match=c.color_match, keep_palette=c.keep_palette)

    def _saved_weights(self, path):
        """([(variable, saved value), ...], names of new layers) to continue from a MetaNet file
        (weights stored in bfloat16, cast back) when a run's checkpoints are gone. Layers by name:
        every saved one must be here with the same shapes; layers this config adds (e.g.
        `style_output_convs`) keep their initial values, which for the MetaNet's outputs are zeros:
        the style changes nothing new. Residual blocks it adds start as the identity, as in
        `warm_start`."""
        model = stylize.load_model(path)
        if not stylize.is_metanet(model):
            raise UserError(f"init_from {path}: not a MetaNet (method metanet continues from one)")
        encoder, transform = metanet.metanet_halves(model)
        saved = next((layer for layer in encoder.layers if layer.name == self.metanet.name), None)
        matches = [_weights_by_layer(target, source) for target, source in
                   ((self.metanet, saved), (self.transform, transform))] if saved is not None else [None]
        if None in matches:
            raise UserError(f"init_from {path}: its MetaNet has another shape than this config's "
                            "(base, residual_width, residual_blocks, style_norms, style_output_convs, kernel_rank)")
        c = self.config
        for option, saved_value in (("demodulate", metanet.is_demodulated(transform)),
                                    ("relu_before_output", metanet.has_relu_before_output(transform))):
            if saved_value != getattr(c, option):  # the same weights in another network: say so
                print(f"note: {Path(path).name} was built with {option}: {str(saved_value).lower()}; "
                      f"its weights continue in this config's network ({option}: {str(not saved_value).lower()})")
        existing = metanet.residual_block_count(transform)
        identity = _identity_blocks(existing, c.residual_blocks - existing, c.residual_width)
        pairs = [pair for pairs, _ in matches for pair in pairs]
        pairs += [pair for name, values in identity.items()
                  for pair in zip(self.transform.get_layer(name).weights, values)]
        return pairs, [name for _, added in matches for name in added]

    def _statistics(self, views, batch=32):
        """The MetaNet's input statistics of `views`, which set its input standardisation."""
        progress = Progress(len(views), label="style statistics", log_seconds=10.0)
        parts = []
        for i in range(0, len(views), batch):
            parts.append(np.asarray(metanet.style_statistics(self.vgg(tf.cast(views[i:i + batch], tf.float32)))))
            progress.update(min(len(views), i + batch))
        progress.close()
        return np.concatenate(parts)

    def dataset(self, start_step=0):
        c = self.config
        styles = data.style_schedule(len(self.styles), c.batch_size, c.steps_per_style,
                                     c.styles_before_batching,
                                     (c.styles_per_batch_min, c.styles_per_batch_max),
                                     seed=c.seed, start_step=start_step)
        return tf.data.Dataset.zip((self.photo_crops(), styles.map(self._with_targets))).map(_with_photos)

    def _with_targets(self, step):
        """A step's styles with their loss targets (made on first use, `StyleSet.targets`)."""
        layers = self.config.style_layers
        flat = tf.numpy_function(lambda ids: [t for n, pair in self.styles.targets(ids).items() for t in pair],
                                 [step["style_ids"]], [tf.float32] * (2 * len(layers)), stateful=False)
        targets = {}
        for k, name in enumerate(layers):
            channels = self.vgg.output[name].shape[-1]
            gram, mean = flat[2 * k], flat[2 * k + 1]
            gram.set_shape([None, channels, channels])
            mean.set_shape([None, channels])
            targets[name] = (gram, mean)
        return {**step, "style_targets": targets}

    def replica_share(self, batch, replica, replicas):
        """The replica's photos and their style indices; every replica gets all the styles."""
        shared = {k: v for k, v in batch.items() if k not in ("photos", "style_index")}
        return {"photos": distribute.replica_rows(batch["photos"], replica, replicas),
                "style_index": distribute.replica_rows(batch["style_index"], replica, replicas), **shared}

    def metanet_variable_names(self):
        return metanet.metanet_variable_names(self.metanet)

    def losses(self, batch):
        photos, index, ids = batch["photos"], batch["style_index"], batch["style_ids"]
        params = self.metanet([tf.gather(self.style_statistics, ids),
                               tf.cast(tf.gather(self.style_views, ids), tf.float32)], training=True)
        generated = self.transform([photos, tf.gather(params, index)], training=True)
        parts = self._loss_parts(generated, photos, {n: tuple(tf.gather(t, index) for t in pair)
                                                     for n, pair in batch["style_targets"].items()})
        if self.config.color_weight:
            colours = tf.gather(self.style_colours, tf.gather(ids, index))
            parts["colour"] = self.config.color_weight * relative_colour_distance(generated, photos, colours)
            parts["total"] += parts["colour"]
        return parts

    def _loss_parts(self, generated, photos, targets):
        """Content and style terms; `targets` per style layer: (Gram, channel means), one per photo."""
        content_targets = self.content_vgg(photos)
        if self.config.loss_form == "distances":
            return losses.perceptual_loss(generated, self.vgg(generated), content_targets,
                                          {n: gram for n, (gram, _) in targets.items()}, self.weights,
                                          distances=True)
        return losses.mean_std_perceptual_loss(generated, self.vgg(generated), content_targets,
                                               {n: _mean_and_std(*t) for n, t in targets.items()},
                                               self.weights)

    def _encode(self, style_views, training=False):
        return self.metanet([metanet.style_statistics(self.vgg(style_views)), style_views], training=training)

    def extra_scalars(self):
        """The generated parameter vectors' mean norm over the preview styles (it grows in training)."""
        norms = tf.norm(self._encode(tf.constant(self.preview_styles)), axis=-1)
        return {"metanet/params_norm": float(tf.reduce_mean(norms)),
                "metanet/styles_prepared": self.styles.prepared}

    def validation_scalars(self):
        return self.validation.measure() if self.validation else {}

    def preview(self):
        """One grid: the preview styles along the top, each preview photo down the left, results inside."""
        styles, photos = tf.constant(self.preview_styles), tf.constant(self.preview_photos)
        params = self._encode(styles)
        shown = tf.image.resize(styles, photos.shape[1:3])
        rows = [tf.concat([tf.fill(photos.shape[1:], 255.0)] + list(shown), axis=1)]
        for photo in photos:
            results = [self.transform([photo[None], params[i:i + 1]], training=False)[0]
                       for i in range(len(styles))]
            rows.append(tf.concat([photo] + results, axis=1))
        return tf.concat(rows, axis=0)[None]

    def export(self, path):
        transform = _for_export(self.transform, self._meta_transform)
        metanet.build_export_model(self.metanet, transform, self.vgg).save(path)


def _shapes(model):
    return [tuple(w.shape) for w in model.weights]


def _weights_by_layer(target, source):
    """([(variable of `target`, its value in `source`), ...], names of layers only `target` has),
    matching layers by name; None if a layer of `source` is missing from `target` or has other
    shapes there."""
    targets = {layer.name: layer for layer in target.layers if layer.weights}
    sources = {layer.name: layer for layer in source.layers if layer.weights}
    if any(name not in targets or _shapes(targets[name]) != _shapes(layer) for name, layer in sources.items()):
        return None
    pairs = [pair for name, layer in sources.items() for pair in zip(targets[name].weights, layer.weights)]
    return pairs, [name for name in targets if name not in sources]


def _mean_and_std(gram, mean, epsilon=1e-5):
    """Channel means and standard deviations from a Gram matrix (normalised by C x positions, as
    `losses.gram_matrix`) and the means: var = E[f^2] - mean^2, with `losses.mean_std`'s epsilon."""
    second_moment = tf.linalg.diag_part(gram) * tf.cast(tf.shape(gram)[-1], tf.float32)
    return mean, tf.sqrt(tf.maximum(second_moment - tf.square(mean), 0.0) + epsilon)


def relative_colour_distance(generated, photos, target_quantiles):
    """quality.py's color_dist, per image, averaged: the result's colour distance to its painting
    over the photo's own (1: the photo's colours; 0: the painting's palette). Every fourth pixel of
    each row and column (4,096 of a 256 px crop) is enough to rank the colours, and sorts fast."""
    directions = losses.colour_directions(target_quantiles.shape[1])
    levels = target_quantiles.shape[2]
    ours = losses.colour_distance(losses.colour_quantiles(generated, directions, levels, stride=4), target_quantiles)
    own = losses.colour_distance(losses.colour_quantiles(photos, directions, levels, stride=4), target_quantiles)
    # (a photo already in the painting's colours would make any change look huge: floor at 1 level)
    return tf.reduce_mean(ours / tf.maximum(tf.stop_gradient(own), 1.0))


class _Validation:
    """The learning curve: every validation style on every validation photo at `VALIDATION_SIDE`,
    measured as quality.py measures (mean Gram distance over the style layers, relu4_2 content
    distance, colour distance relative to the photo's), with this run's loss network."""

    def __init__(self, task, style_paths):
        self.task = task
        side = VALIDATION_SIDE
        photos = _preview_paths(task.config.val_images, task.files)
        self.photos = [images.resize_to_longer(images.load_image(p, max_size=side), side) for p in photos]
        self.styles = [images.load_painting_at(p, side) for p in style_paths]
        self.style_views = [data.scale_shorter_to(s, metanet.ENCODE_SIDE) for s in self.styles]  # as eval.py
        directions = losses.colour_directions(COLOUR_SLICES)
        self.directions = directions
        vgg = task.vgg
        layers = task.config.style_layers
        self.style_grams = [{n: losses.gram_matrix(f) for n, f in vgg(s[None]).items() if n in layers}
                            for s in self.styles]
        self.style_colours = [losses.colour_quantiles(s[None], directions) for s in self.styles]
        self.photo_features = [task.content_vgg(p[None]) for p in self.photos]
        self.photo_colours = [losses.colour_quantiles(p[None], directions) for p in self.photos]

    def measure(self):
        task = self.task
        sums = {"val/style_dist": 0.0, "val/content_dist": 0.0, "val/color_dist": 0.0}
        for view, grams, colours in zip(self.style_views, self.style_grams, self.style_colours):
            params = task._encode(view[None])
            for photo, content, photo_colours in zip(self.photos, self.photo_features, self.photo_colours):
                result = tf.clip_by_value(task.transform([tf.constant(photo[None]), params]), 0.0, 255.0)
                features = task.vgg(result)
                sums["val/style_dist"] += float(np.mean(
                    [losses.gram_distance(features[n], g) for n, g in grams.items()]))
                sums["val/content_dist"] += float(sum(losses.content_distance(features[n], t)
                                                      for n, t in content.items()))
                ours = losses.colour_distance(losses.colour_quantiles(result, self.directions), colours)
                own = losses.colour_distance(photo_colours, colours)
                sums["val/color_dist"] += float(ours[0] / max(float(own[0]), 1e-6))
        count = len(self.styles) * len(self.photos)
        return {k: v / count for k, v in sums.items()}


def _for_export(model, build):
    """`model` as it is saved: with bfloat16 arithmetic where it may (its weights float32) whatever
    precision it was trained in, so that loading can pick what the hardware runs fastest
    (`stylize.in_precision`). `build()` makes the same network under the current policy."""
    if model.dtype_policy.name == EXPORT_POLICY:
        return model
    with precision.policy_scope(EXPORT_POLICY):
        copy = build()
    copy.set_weights(model.get_weights())
    return copy


def _with_photos(photos, styles):
    return {"photos": photos, **styles}


def _preview_paths(folder, train_files):
    if folder:
        return [str(p) for p in images.find_images(folder)]
    return train_files


def total_steps(config, task):
    return config.max_steps or config.epoch * task.steps_per_epoch()


def learning_rate(config, task):
    """`learning_rate`, dropping to `final_learning_rate` for the last `final_steps` steps if set,
    ramping up linearly over the first `warmup_steps` steps.

    Always a schedule, never a plain number: a constant rate would be an optimiser variable, saved
    in checkpoints, which would then neither load into a run with a tail nor let a resumed run
    change the rate. The schedule reads optimizer.iterations, which is step - 1 during a step.
    """
    final = config.final_learning_rate or config.learning_rate
    boundary = max(0, total_steps(config, task) - config.final_steps - 1)
    return RateSchedule(config.learning_rate, final, boundary, config.warmup_steps)


@keras.saving.register_keras_serializable(package="keras_style")
class RateSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` up to update `boundary`, `final` after it; before update `warmup`, scaled by
    (update + 1) / `warmup`."""

    def __init__(self, rate, final, boundary, warmup=0):
        self.rate, self.final, self.boundary, self.warmup = rate, final, boundary, warmup

    def __call__(self, iteration):
        update = keras.ops.cast(iteration, "float32")
        rate = keras.ops.where(update <= self.boundary, self.rate, self.final)
        if self.warmup:
            rate = rate * keras.ops.minimum(1.0, (update + 1.0) / self.warmup)
        return rate

    def get_config(self):
        return {"rate": self.rate, "final": self.final, "boundary": self.boundary, "warmup": self.warmup}


def make_optimizer(config, task):
    if config.method == "metanet":
        make = optimizers.adagrad2_for if config.optimizer == "adagrad2" else optimizers.meta_adam_for
        return make(config, task, learning_rate(config, task))
    return keras.optimizers.Adam(learning_rate=learning_rate(config, task))


class TrainingDiverged(UserError):
    """The loss stayed non-finite: training stopped, the last good checkpoint kept."""


class Trainer:
    """Runs `task` with `optimizer` under `strategy` (tf.distribute; the default one when None).

    Build the task and the optimizer inside `strategy.scope()`, as `train` does, so their
    variables are mirrored across replicas.
    """

    def __init__(self, config, task, optimizer, strategy=None):
        self.config, self.task, self.optimizer = config, task, optimizer
        self.strategy = strategy or tf.distribute.get_strategy()
        self.run_dir = Path(config.run_dir)
        self.chief = distribute.is_chief(self.strategy)
        self.output = distribute.OutputFolder(self.run_dir, self.chief)
        with self.strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.nonfinite = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_steps")
            self.variables = task.model.trainable_variables
            optimizer.build(self.variables)
        self.checkpoint = tf.train.Checkpoint(step=self.step, nonfinite=self.nonfinite,
                                              model=task.model, optimizer=optimizer)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.output.path), max_to_keep=3)
        self.writer = (tf.summary.create_file_writer(str(self.run_dir)) if self.chief
                       else tf.summary.create_noop_writer())
        self.total_steps = total_steps(config, task)

    def distributed_dataset(self, start_step=0):
        """The task's batches, each replica given its share of every global batch."""
        return distribute.distribute_batches(self.strategy, lambda: self.task.dataset(start_step),
                                             self.task.replica_share)

    def compiled_step(self, dataset):
        """The training step as one tf.function, traced once for `dataset`'s element shapes (a
        MetaNet batch's style count varies): batch -> (loss parts, whether the update was applied)."""
        return tf.function(self._step_fn, input_signature=[dataset.element_spec])

    def _replica_gradients(self, batch):
        with tf.GradientTape() as tape:
            parts = self.task.losses(batch)
        grads = tape.gradient(parts["total"], self.variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.variables)]
        # Averaged here, once, so every replica (and the clipping in Adagrad2) sees the gradient
        # of the global batch, as a single-replica run would.
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, (parts, grads))

    def _step_fn(self, batch):
        reduced = self.strategy.run(self._replica_gradients, args=(batch,))
        parts, grads = distribute.first_local(self.strategy, reduced)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
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
        """Resume from the newest readable checkpoint of the run folder (an unreadable one, say
        from a crash mid-write, is reported and the one before it tried); returns the step.

        A folder whose checkpoints all fail to load (another network width, say) is an error:
        starting over would rotate those checkpoints out.
        """
        state = tf.train.get_checkpoint_state(str(self.run_dir))
        paths = list(reversed(state.all_model_checkpoint_paths)) if state else []
        reasons = []
        for path in paths:
            try:
                self.checkpoint.restore(path).expect_partial()
            except Exception as exc:  # a damaged file fails in many ways (OpError, IndexError...)
                reasons.append(_first_line(exc))
                print(f"warning: checkpoint {path} is unreadable ({reasons[-1]}); trying an older one",
                      file=sys.stderr)
                continue
            # A run folder's own checkpoint wins over init_from: rerunning a command continues it.
            replaced = "; it replaces init_from's weights" if self.config.init_from else ""
            print(f"resumed from step {int(self.step.numpy())} ({path}{replaced})")
            return int(self.step.numpy())
        if paths:
            raise UserError(f"{self.run_dir}: none of its {len(paths)} checkpoints fits this config "
                            f"(newest: {reasons[0]}); train under another naming or model_path, or "
                            "delete the folder to start over")
        return 0

    def run(self):
        try:
            return self._run()
        finally:
            self.output.cleanup()

    def _run(self):
        start = self.restore()
        if start >= self.total_steps:
            print(f"already trained for {start} of {self.total_steps} steps; exporting")
            return self.export()
        print(f"training {self.config.naming}: steps {start + 1}..{self.total_steps}, "
              f"batch {self.config.batch_size}{self._replicas_note()}, logs and checkpoints in {self.run_dir}")
        self._write_text_summary(start)
        progress = Progress(self.total_steps, start=start, enabled=self.chief)
        dataset = self.distributed_dataset(start)
        train_step = self.compiled_step(dataset)
        batches = iter(dataset)
        window_start, window_steps, failing = time.perf_counter(), 0, 0
        try:
            for step in range(start + 1, self.total_steps + 1):
                parts, applied = train_step(next(batches))
                failing = 0 if bool(applied) else failing + 1
                if failing >= NONFINITE_PATIENCE:
                    progress.close()
                    raise TrainingDiverged(self._diverged_message(step))
                window_steps += 1
                values = {k: float(v) for k, v in parts.items()}
                progress.update(step, values)
                if step % self.config.log_every == 0 or step == self.total_steps:
                    rate = window_steps * self.config.batch_size / (time.perf_counter() - window_start)
                    self._log(step, values, rate)
                    window_start, window_steps = time.perf_counter(), 0
                if self.config.eval_every and step % self.config.eval_every == 0:
                    self._validate(step)
                if step % self.config.save_every == 0 and not failing:  # never save mid-divergence
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

    def _replicas_note(self):
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return ""
        return f" split over {replicas} replicas ({distribute.worker_name(self.strategy)})"

    def _diverged_message(self, step):
        last = self.manager.latest_checkpoint or "none yet"
        return (f"the loss was not finite for {NONFINITE_PATIENCE} steps in a row (up to step {step}); "
                f"stopped without saving, the last good checkpoint is {last}: lower learning_rate "
                "or style_weight and run the same command to resume from it")

    def _log(self, step, values, images_per_second):
        if not self.chief:
            return
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

    def _validate(self, step):
        """The learning curve: the task's validation measures, in TensorBoard and in the log."""
        if not self.chief:
            return
        started = time.perf_counter()
        scalars = self.task.validation_scalars()
        with self.writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        self.writer.flush()
        measured = ", ".join(f"{name.split('/')[-1]} {value:.3f}" for name, value in scalars.items())
        print(f"step {step} validation: {measured} ({time.perf_counter() - started:.0f} s)", flush=True)

    def _write_text_summary(self, step):
        text = "\n".join(f"    {k}: {v}" for k, v in describe(self.config).items())
        with self.writer.as_default(step=step):
            tf.summary.text("config", text)

    def export(self):
        path = self.config.export_path if self.chief else self.output.path / self.config.export_path.name
        self.task.export(path)
        if self.chief:
            print(f"exported {path}")
        if self.strategy.num_replicas_in_sync > 1:
            self._report_replicas()
        return path

    def _report_replicas(self):
        """One line per process: the weights' digest, equal on every replica of a healthy run."""
        local = len(self.strategy.experimental_local_results(self.variables[0].value))
        digests = sorted({weights_digest(self.variables, self.strategy, r) for r in range(local)})
        where = distribute.worker_name(self.strategy)
        if len(digests) == 1:
            print(f"{where}: step {int(self.step.numpy())}, weights digest {digests[0]} "
                  f"on its {local} replica(s)")
        else:
            print(f"warning: {where}: replicas hold different weights ({', '.join(digests)})", file=sys.stderr)


def weights_digest(variables, strategy, replica=0):
    """A short fingerprint of one replica's copy of `variables`."""
    digest = hashlib.sha256()
    for v in variables:
        value = strategy.experimental_local_results(v.value)[replica]
        digest.update(np.asarray(value.numpy(), np.float32).tobytes())
    return digest.hexdigest()[:16]


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def warm_start(config):
    """(config, {layer name: weights}) to start a per-style network from `config.init_from`: a
    per-style model's own weights, or the network a MetaNet generates for `config.style_image`; the
    config takes the starting network's shape, plus `extra_residual_blocks` that start as the identity
    and `extra_base_channels` / `extra_residual_channels` that start out of the way.
    (config, None) without `init_from`."""
    if not config.init_from or config.method == "metanet":  # a MetaNet task starts itself
        return config, None
    model = stylize.load_model(config.init_from)
    name = Path(config.init_from).name
    try:
        if stylize.is_metanet(model):
            stylizer = stylize.MetaNetStylizer(model, config.init_from)
            style = images.load_image(fetch_style_image(config.style_image))
            transform = stylizer.network
            reason = metanet.why_not_plain(transform)
            if reason:  # before the ValueErrors below, which cannot name it
                raise UserError(f"init_from {name}: its transform {reason}")
            weights = metanet.plain_transform_weights(transform, stylizer.encode(style))
            source = f"the network {name} generates for {Path(config.style_image).name}"
        else:
            transform, source = model, name
            weights = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
        base, width, blocks = metanet.transform_shape(transform)
    except ValueError:  # no stem_conv / down2_conv: some other model
        raise UserError(f"init_from {config.init_from}: not a per-style network or a MetaNet") from None
    print(f"starting from {source} (base {base}, residual width {width}, {blocks} residual blocks)")
    weights.update(_identity_blocks(blocks, config.extra_residual_blocks, width))
    if config.extra_residual_blocks:
        print(f"adding {config.extra_residual_blocks} residual blocks that start as the identity")
    blocks += config.extra_residual_blocks
    base, width = base + config.extra_base_channels, width + config.extra_residual_channels
    if config.extra_base_channels or config.extra_residual_channels:
        print(f"widening to base {base}, residual width {width}: the new channels start out of the way")
    return dataclasses.replace(config, base=base, residual_width=width, residual_blocks=blocks), weights


def _identity_blocks(existing, extra, width):
    """Weights that make residual blocks existing+1..existing+extra add nothing at first: their last
    norm's scale and shift are zero (its convolutions keep their random start, so they still learn)."""
    zeros = np.zeros(width, np.float32)
    return {f"res{i}_b_norm": [zeros, zeros] for i in range(existing + 1, existing + extra + 1)}


def train(config):
    """Train the model `config` describes; returns the exported `.keras` path."""
    config, initial_weights = warm_start(config)
    strategy = distribute.make_strategy(config.distribute)  # first: multi_worker starts a server
    distribute.check_batch_size(config.batch_size, strategy)
    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(precision.chosen("training", config.mixed_precision).policy)
    skipped = data.SkippedFiles()
    with strategy.scope():
        task = (MetaNetTask(config, skipped) if config.method == "metanet"
                else TransformTask(config, skipped, initial_weights))
        optimizer = make_optimizer(config, task)
    return Trainer(config, task, optimizer, strategy).run()
