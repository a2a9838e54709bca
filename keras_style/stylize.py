"""Inference: load a `.keras` model file and stylise photos with it."""
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_style.layers  # noqa: F401  (registers the custom layers for loading)
from keras_style import images
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

    def __init__(self, model, path):
        path = Path(path)
        if is_metanet(model):
            raise UserError(f"{path}: this is a MetaNet model; give it a style with --style_image")
        if len(model.inputs) != 1:
            raise UserError(f"{path}: not a per-style transform network")
        self.model = model
        self.name = path.stem
        # One trace for every image size; traced here so the first photo's timing is honest.
        self._run = tf.function(lambda x: model(x, training=False),
                                input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)])
        self._run(tf.zeros((1, MIN_SIDE, MIN_SIDE, 3)))

    def __call__(self, image):
        """(H, W, 3) float32 in [0, 255] -> stylised (H, W, 3) float32 in [0, 255]."""
        padded, (height, width) = _pad_small(image)
        out = self._run(tf.constant(padded[None]))
        return np.clip(out.numpy()[0, :height, :width], 0, 255)


def gallery(rows, height=256, gap=4):
    """One image from rows of (label, image): each row one photo and its results, labelled."""
    from PIL import Image, ImageDraw

    def tile(image):
        scale = height / image.shape[0]
        return images.resize(image, (height, max(1, round(image.shape[1] * scale))))

    tiles = [[(label, tile(image)) for label, image in row] for row in rows]
    width = max(sum(t.shape[1] + gap for _, t in row) - gap for row in tiles)
    label_height = 18
    sheet = Image.new("RGB", (width, len(tiles) * (height + label_height + gap) - gap), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(tiles):
        top, left = r * (height + label_height + gap), 0
        for label, t in row:
            sheet.paste(Image.fromarray(np.clip(t, 0, 255).astype(np.uint8)), (left, top + label_height))
            draw.text((left + 2, top + 3), label, fill="black")
            left += t.shape[1] + gap
    return np.asarray(sheet, dtype=np.float32)


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
