"""Inference: load a `.keras` model file and stylise photos with it."""
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_style.layers  # noqa: F401  (registers the custom layers for loading)
from keras_style.errors import UserError

MIN_SIDE = 16  # the network's reflection padding needs a few pixels after two downsamplings


def load_model(path):
    """Load a model file written by train.py; any problem is a UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found" + (" (it is a folder)" if path.is_dir() else ""))
    if path.suffix != ".keras":
        raise UserError(f"{path}: not a .keras model file (train.py exports models/<naming>/<naming>.keras)")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # zip, JSON and deserialisation errors all mean the same to a user
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a keras-style model file ({reason})") from None


def is_metanet(model):
    return any(layer.name == "style_encoder" for layer in model.layers)


class TransformStylizer:
    """Applies a per-style transform network to images of any size."""

    def __init__(self, model, name):
        if is_metanet(model):
            raise UserError(f"{name}: this is a MetaNet model; give it a style with --style_image")
        if len(model.inputs) != 1:
            raise UserError(f"{name}: not a per-style transform network")
        self.model = model
        self.name = name
        self._run = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def __call__(self, image):
        """(H, W, 3) float32 in [0, 255] -> stylised (H, W, 3) float32 in [0, 255]."""
        padded, (height, width) = _pad_small(image)
        out = self._run(tf.constant(padded[None]))
        return np.clip(out.numpy()[0, :height, :width], 0, 255)


def _pad_small(image):
    height, width = image.shape[:2]
    pad_h, pad_w = max(0, MIN_SIDE - height), max(0, MIN_SIDE - width)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return image.astype(np.float32), (height, width)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start
