"""tf.data input pipelines: folders of photos -> batches of random square crops; the MetaNet's
schedule of styles (which prepared styles each step trains on).

Files are decoded by `images.load_image` inside the pipeline, so training reads exactly what
`eval.py` reads (CMYK, 16-bit, EXIF rotation...). Unreadable files are skipped with a warning and
counted in `SkippedFiles`, never a crash.
"""
import sys
import threading

import numpy as np
import tensorflow as tf

from keras_style import images
from keras_style.errors import UserError


class SkippedFiles:
    """Thread-safe count of files the pipeline could not read (each is warned about once)."""

    def __init__(self, stream=None):
        self._lock = threading.Lock()
        self._seen = set()
        self.stream = stream or sys.stderr

    def add(self, path, reason):
        with self._lock:
            if path in self._seen:
                return
            self._seen.add(path)
        self.stream.write(f"warning: skipping {reason}\n")

    @property
    def count(self):
        with self._lock:
            return len(self._seen)


def list_image_files(folder):
    """Image files under `folder`, recursively; an empty or missing folder is a UserError."""
    files = images.find_images(folder)
    if not files:
        raise UserError(f"{folder}: no image files found (looked for {', '.join(images.IMAGE_SUFFIXES)})")
    return [str(f) for f in files]


def _decoder(shorter_side, skipped):
    def decode(path_bytes):
        path = path_bytes.decode("utf-8", "replace")
        try:
            # Decoding at twice the crop size first keeps huge photos cheap and memory bounded.
            array = images.load_image(path, max_size=4 * shorter_side)
            return images.resize_shorter_to(array, shorter_side).astype(np.uint8), True
        except UserError as exc:
            skipped.add(path, str(exc))
            return np.zeros((1, 1, 3), np.uint8), False

    return decode


def _decoded_images(files, shorter_side, seed, skipped):
    """An endless, shuffled stream of the readable images of `files`, uint8, shorter side scaled."""
    decode = _decoder(shorter_side, skipped)

    def load(path):
        array, ok = tf.numpy_function(decode, [path], [tf.uint8, tf.bool], stateful=False)
        array.set_shape([None, None, 3])
        ok.set_shape([])
        return array, ok

    dataset = tf.data.Dataset.from_tensor_slices(list(files))
    dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    # Deterministic order: the same seed gives the same batches on every worker and every run.
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.filter(_is_readable).map(_without_flag)


# Named, not lambdas: AutoGraph cannot read two lambdas on one line.
def _is_readable(array, ok):
    return ok


def _without_flag(array, ok):
    return array


def _random_crops(images_dataset, image_size, seed):
    """Each image cropped at a position drawn from its own seed: reproducible in parallel maps."""
    def crop(array, crop_seed):
        return tf.cast(tf.image.stateless_random_crop(array, [image_size, image_size, 3], crop_seed),
                       tf.float32)

    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    return tf.data.Dataset.zip((images_dataset, seeds)).map(crop, num_parallel_calls=tf.data.AUTOTUNE)


def image_crops(files, image_size, batch_size, seed=0, skipped=None, shorter_side=None):
    """Endless, shuffled batches of random `image_size` crops, float32 in [0, 255].

    Each image is first scaled so its shorter side is `shorter_side` (default: `image_size`).
    """
    skipped = skipped if skipped is not None else SkippedFiles()
    photos = _decoded_images(files, shorter_side or image_size, seed, skipped)
    dataset = _random_crops(photos, image_size, seed)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def style_schedule(style_count, batch_size, steps_per_style, styles_before_batching, styles_per_batch,
                   seed=0, start_step=0):
    """The styles of each MetaNet training step, as positions among `style_count` prepared styles
    (the trainer holds their views and loss targets): endless dicts of `style_ids`, (S,) int32, the
    S styles of the step, and `style_index`, (batch_size,) int32, which of them each photo gets.

    The Keras port's schedule: first one style at a time for `steps_per_style` steps, until
    `styles_before_batching` styles have been seen; from then on every step mixes S styles, S drawn
    uniformly from `styles_per_batch` = (low, high), each photo assigned one of them at random
    (every one used once at least; so S <= batch_size). `start_step` resumes the schedule (a
    resumed run does not repeat the single-style phase).
    """
    single_steps = max(0, styles_before_batching * steps_per_style - start_step)
    singles = _shuffled_ids(style_count, seed).take(-(-single_steps // steps_per_style))
    singles = singles.flat_map(lambda i: tf.data.Dataset.from_tensors(i).repeat(steps_per_style))
    singles = singles.take(single_steps).map(
        lambda i: {"style_ids": i[None], "style_index": tf.zeros([batch_size], tf.int32)})

    low, high = styles_per_batch

    def mix(ids, draw):
        count = tf.random.stateless_uniform([], tf.stack([draw, 0]), low, high + 1, dtype=tf.int32)
        order = tf.argsort(tf.random.stateless_uniform([batch_size], tf.stack([draw, 1])))
        return {"style_ids": ids[:count], "style_index": tf.gather(tf.range(batch_size) % count, order)}

    # Fewer styles than `high` repeat within a group; a repeat is just the same style twice.
    groups = _shuffled_ids(style_count, seed + 1).batch(high, drop_remainder=True)
    mixed = tf.data.Dataset.zip((groups, tf.data.Dataset.random(seed=seed))).map(mix)
    return singles.concatenate(mixed).prefetch(tf.data.AUTOTUNE)


def _shuffled_ids(count, seed):
    ids = tf.data.Dataset.range(count).map(lambda i: tf.cast(i, tf.int32))
    return ids.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()


def centre_square(image, side):
    """(H, W, 3) float32 -> (side, side, 3): scaled so the shorter side is `side`, centre-cropped."""
    return tf.image.resize_with_crop_or_pad(scale_shorter_to(image, side), side, side)


def scale_shorter_to(image, side):
    """(H, W, 3) float32 -> scaled (antialiased bilinear) so the shorter side is `side`, the longer
    at least `side`. The MetaNet's training views are made with it, so a style encoded for use is
    too: the network is sensitive to the resampling filter (the README's MetaNet section measures it)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scaled = tf.cast(tf.math.ceil(shape * side / tf.reduce_min(shape)), tf.int32)
    return tf.image.resize(image, tf.maximum(scaled, side), antialias=True)


def fixed_images(paths, size, count, skipped=None):
    """The first `count` readable images of `paths` (e.g. validation photos), loaded once and
    centre-cropped to `size` squares; unreadable ones are skipped like in training."""
    loaded = []
    for path in paths:
        try:
            array = images.resize_shorter_to(images.load_image(path, max_size=4 * size), size)
        except UserError as exc:
            if skipped is not None:
                skipped.add(str(path), str(exc))
            continue
        top = (array.shape[0] - size) // 2
        left = (array.shape[1] - size) // 2
        loaded.append(array[top:top + size, left:left + size])
        if len(loaded) == count:
            break
    if not loaded:
        raise UserError(f"no readable preview images among {len(paths)} files")
    return np.stack(loaded).astype(np.float32)
