"""Inference: load a `.keras` model file and stylise photos with it."""
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_style import data, images, precision, tiles
from keras_style.errors import UserError
from keras_style.layers import SpaceToDepthConv2D, upsampling_later  # (importing layers registers them)
from keras_style.metanet import ENCODE_SIDE, metanet_halves

MIN_SIDE = 16  # the network's reflection padding needs a few pixels after two downsamplings
# A MetaNet encodes a style image with its shorter side scaled to this, as in training.
STYLE_SIDE = ENCODE_SIDE
# Photos up to this many pixels are stylised in one piece (a base-8 network peaks near 1 GB at
# 2048 x 2048); larger ones in tiles (tiles.py), whose memory grows with the photo only by the
# features kept between passes (at most tiles.FEATURES_BUDGET).
WHOLE_PIXELS = 2048 * 2048


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


def in_precision(model, chosen):
    """`model` as it should run for `chosen` (a `precision.Precision`). For bfloat16, the saved
    arithmetic (bfloat16 where the file allows it); for float32, everything in float32 (a file saved
    with bfloat16 layers then runs at float32 speed on CPUs that only emulate bfloat16). On a CPU,
    either way, a copy with the same weights computing some layers another way (`cpu_classes`)."""
    on_cpu = not tf.config.list_physical_devices("GPU")
    if chosen.is_bfloat16:
        return precision.recast(model, _saved_policy, cpu_classes(model)) if on_cpu else model
    if precision.runs_in_float32(model) and not on_cpu:
        return model
    return precision.recast(model, lambda layer: "float32", cpu_classes(model) if on_cpu else type)


def _saved_policy(layer):
    return layer.dtype_policy.name


def cpu_classes(model):
    """A `class_of` for `precision.recast`: the classes computing `model`'s layers faster on a CPU,
    with the same weights and, up to rounding, the same result. Plain 9x9 stride-1 convolutions in
    pixel blocks (`SpaceToDepthConv2D`); each 2x upsampling with the reflection pad and 3x3
    convolution after it at the low resolution (`layers.upsampling_later`). Measured on CPUs only."""
    swaps = {id(layer): swap for up, pad, conv in _upsampling_chains(model)
             for layer, swap in upsampling_later(up, pad, conv)}

    def class_of(layer):
        if id(layer) in swaps:
            return swaps[id(layer)]
        plain_9x9 = (type(layer) is keras.layers.Conv2D and layer.kernel_size == (9, 9)
                     and SpaceToDepthConv2D.computes(layer))
        return SpaceToDepthConv2D if plain_9x9 else type(layer)
    return class_of


def _upsampling_chains(model):
    """(upsampling, pad, convolution) triples of `model` and the models nested in it, each layer the
    only reader of the one before (the convolution as its first input), and none a model's output."""
    readers = {}

    def read(tensors, reader):  # (None: read other than as a convolution's image)
        for position, tensor in enumerate(keras.tree.flatten(tensors)):
            readers.setdefault(id(tensor), []).append(reader if position == 0 else None)

    def visit(network):
        read(network.outputs, None)
        for layer in network.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            read(layer.input, layer)
            if isinstance(layer, keras.Model):
                yield from visit(layer)
            elif isinstance(layer, keras.layers.UpSampling2D):
                yield layer

    def only_reader(layer):
        found = readers.get(id(layer.output), [])
        return found[0] if len(found) == 1 else None

    for up in list(visit(model)):
        pad = only_reader(up)
        conv = pad and only_reader(pad)
        if conv:
            yield up, pad, conv


def is_metanet(model):
    return any(layer.name == "style_encoder" for layer in model.layers)


_PHOTO = tf.TensorSpec((1, None, None, 3), tf.float32)


class TransformStylizer:
    """Applies a per-style transform network to images of any size."""

    def __init__(self, model, path):
        path = Path(path)
        if is_metanet(model):
            raise UserError(f"{path}: a MetaNet model needs a style: give --style_image (or --style_file)")
        if len(model.inputs) != 1:
            raise UserError(f"{path}: not a per-style transform network")
        self.model = self.network = model
        self.name = path.stem
        # One trace for every image size; traced here so the first photo's timing is honest.
        self._run = tf.function(lambda x: model(x, training=False), input_signature=[_PHOTO])
        self._run(tf.zeros((1, MIN_SIDE, MIN_SIDE, 3)))

    def apply(self, model, batch):
        """`model` (the network, or a part of it) on a (1, h, w, C) tensor: for tiles.py, which hands
        its norms statistics."""
        return model(batch, training=False)

    def __call__(self, image, tile_size=None):
        """(H, W, 3) in [0, 255] -> stylised (H, W, 3) in [0, 255]: see `stylize`."""
        return stylize(self, image, tile_size)


class MetaNetStylizer:
    """A MetaNet model file: encode a style once (`encode`, `use_style`), then stylise any number of
    photos of any size with it, like a per-style network."""

    def __init__(self, model, path):
        path = Path(path)
        if not is_metanet(model):
            raise UserError(f"{path}: a per-style network ignores styles; drop --style_image and "
                            "--style_file (or give a MetaNet model)")
        encoder, transform = metanet_halves(model)
        self.model_name = path.stem
        self.param_size = int(transform.inputs[1].shape[-1])
        self.params = self.style_name = None
        self._encode = tf.function(lambda s: encoder(s, training=False), input_signature=[_PHOTO])
        self._encode(tf.zeros((1, MIN_SIDE, MIN_SIDE, 3)))  # traced now: honest timings later
        params = tf.TensorSpec((1, self.param_size), tf.float32)
        self._transform = tf.function(lambda x, p: transform([x, p], training=False),
                                      input_signature=[_PHOTO, params])
        self._transform(tf.zeros((1, MIN_SIDE, MIN_SIDE, 3)), tf.zeros((1, self.param_size)))
        self._run = lambda x: self._transform(x, self.params)
        self.network = transform

    def apply(self, model, batch):
        """`model` (the transform, or a part of it) with the style set, on a (1, h, w, C) tensor (see
        `TransformStylizer`)."""
        return model([batch, self.params], training=False)

    @property
    def name(self):
        return f"{self.model_name}+{self.style_name}"

    def encode(self, style):
        """A style image (H, W, 3) in [0, 255] -> its parameter vector (P,) float32."""
        style = data.scale_shorter_to(tf.constant(style, tf.float32), STYLE_SIDE)
        return self._encode(style[None]).numpy()[0]

    def use_style(self, vectors, name, weights=None):
        """Stylise with the weighted mean of `vectors` (one per style; equal weights by default)."""
        weights = normalised_weights(weights or [1.0] * len(vectors), len(vectors))
        self.params = tf.constant(sum(w * v for w, v in zip(weights, vectors))[None], tf.float32)
        self.style_name = name

    def load_style(self, path):
        """A parameter vector saved with --save_style; a file that is not one is a UserError."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such style file" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            vector = None
        if not isinstance(vector, np.ndarray):  # unreadable, pickled, or an .npz archive
            raise UserError(f"{path}: not a style vector (a .npy file written by --save_style)")
        if not np.issubdtype(vector.dtype, np.number) or np.issubdtype(vector.dtype, np.complexfloating):
            raise UserError(f"{path}: not a saved style: holds {vector.dtype} values, not numbers")
        vector = vector.reshape(-1) if vector.ndim == 2 and vector.shape[0] == 1 else vector
        if vector.ndim != 1 or vector.size != self.param_size:
            raise UserError(f"{path}: holds {vector.size} numbers in shape {vector.shape}; "
                            f"{self.model_name} needs a style vector of {self.param_size}")
        if not np.isfinite(vector).all():
            raise UserError(f"{path}: the style vector holds non-finite values")
        return vector.astype(np.float32)

    def __call__(self, image, tile_size=None):
        """(H, W, 3) in [0, 255] -> stylised (H, W, 3) in [0, 255]: see `stylize`."""
        if self.params is None:
            raise ValueError("MetaNetStylizer: use_style() first")
        return stylize(self, image, tile_size)


def normalised_weights(weights, count):
    """Blending weights for `count` styles, summing to 1; bad --style_weights are a UserError."""
    if len(weights) != count:
        raise UserError(f"--style_weights has {len(weights)} values for {count} style images")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError("--style_weights must be non-negative and not all zero")
    total = float(sum(weights))
    return [w / total for w in weights]


def stylize(stylizer, image, tile_size=None):
    """A photo (H, W, 3) in [0, 255] stylised: in one piece (float32) up to `WHOLE_PIXELS` unless a
    `tile_size` is given, else in tiles of that size (default `tiles.TILE_SIZE`; uint8) with the
    whole photo's normalisation statistics."""
    if tile_size is None and image.shape[0] * image.shape[1] <= WHOLE_PIXELS:
        return _apply(stylizer._run, image)
    return tiles.stylize_tiles(stylizer.network, stylizer.apply, image, tile_size or tiles.TILE_SIZE)


def _apply(run, image):
    padded, (height, width) = _pad_small(image)
    out = run(tf.constant(padded[None]))
    return np.clip(out.numpy()[0, :height, :width], 0, 255)


def gallery(rows, height=256, gap=4, columns=None):
    """One image from rows of (label, image): each row one photo and its results, labelled; a row
    longer than `columns` pictures continues on the next line."""
    from PIL import Image, ImageDraw

    def tile(image):
        scale = height / image.shape[0]
        return images.resize(image, (height, max(1, round(image.shape[1] * scale))))

    columns = columns or max(len(row) for row in rows)
    tiles = [[(label, tile(image)) for label, image in row[start:start + columns]]
             for row in rows for start in range(0, len(row), columns)]
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
