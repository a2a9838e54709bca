"""Photos of any size: stylised in overlapping tiles, with the whole photo's normalisation statistics.

A transform network is local but for its instance norms: every output pixel depends on the photo
within `RECEPTIVE_RADIUS` pixels, and on each norm's mean and variance over the whole photo. So a
tile stylised with the whole photo's statistics, `margin` pixels wider on every side than the part
of it that is kept, gives the pixels the whole photo would have given (up to float rounding), and
neighbouring tiles meet without seams. Memory is bounded by a tile plus `FEATURES_BUDGET`, not by
the photo.

The statistics are accumulated exactly over the tiles, norm by norm: a pass over the tiles measures
the input of the next norm on each tile's kept part, every earlier norm using the whole photo's
statistics found before. The passes stop at the norm they measure, so all of them together cost
about half a pass per norm. Once the norms before the residual blocks are measured, each tile's
features at the blocks' input (a quarter of its resolution) are kept, if they fit in
`FEATURES_BUDGET`, and the later passes start from them instead of from the photo: on a 12-megapixel
photo with pretrained/wave.keras (2-core AMD EPYC Zen 3, AVX2, float32) that cut the statistics'
time from 75 s to 44 s, for the same result to the bit.

Statistics from a reduced copy of the photo are cheaper and wrong: measured on a 2048 x 1536 photo
with pretrained/wave.keras, a copy at half the size put the tiled result 5.9 levels of 255 from the
whole one on average, a quarter 11.9; exact, 0.46. Measuring on 16 of the 48 tiles of an
8000 x 6000 photo was 2.3x faster and 1.9 levels off the exact result.

A `KeepPalette` layer (a MetaNet with `keep_palette`) bounds the result's colours by the photo's
palette: it is handed the whole photo's, measured from the photo in strips, like the norms.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_style.layers import InstanceNormalization, KeepPalette, palette_of, split_palette
from keras_style.progress import Progress

# How far an output pixel sees into the photo: the 9x9 stem (4), two stride-2 3x3 convolutions
# (1 + 2), ten residual 3x3 convolutions at a quarter resolution (4 each), the first up-sampling's
# 3x3 at half (2), the last's at full (1) and the 9x9 output (4): 54 pixels for 5 blocks.
RECEPTIVE_RADIUS = 54
MARGIN = 64
TILE_SIZE = 1024
# Where the later passes resume: the residual blocks' input, at 1/RESUME_SCALE of the resolution.
RESUME_AT = "down2_relu"
RESUME_SCALE = 4
# Memory for the tiles' features there (float32); a photo needing more is measured from the photo
# in every pass, so memory stays bounded by a tile plus this.
FEATURES_BUDGET = 1 << 30
_BATCH = tf.TensorSpec((1, None, None, 3), tf.float32)
_BOX = tf.TensorSpec((4,), tf.int32)


def norm_layers(model):
    """The instance norms of `model` that normalise, nested models included, in network order."""
    return _layers_where(model, lambda layer: isinstance(layer, InstanceNormalization) and layer.normalise)


def _layers_where(model, wanted):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_layers_where(layer, wanted))
        elif wanted(layer):
            found.append(layer)
    return found


def whole_palette(photo, rows=256):
    """`layers.palette_of` the whole photo (H, W, 3), measured in strips of `rows` rows."""
    strips = np.stack([np.asarray(palette_of(np.asarray(photo[top:top + rows], np.float32)[None]))[0]
                       for top in range(0, photo.shape[0], rows)])
    heights = [min(rows, photo.shape[0] - top) for top in range(0, photo.shape[0], rows)]
    means, lowers, uppers = split_palette(strips)
    mean, lower, upper = np.average(means, axis=0, weights=heights), lowers.min(axis=0), uppers.max(axis=0)
    return np.concatenate([mean, lower, upper])[None].astype(np.float32)


def _box_sums(x, box, tile_height):
    """(count, sum, sum of squares) per channel of `x` (1, h, w, C), a map of a tile mirror-padded to
    a multiple of 4 at 1/1, 1/2 or 1/4 of its resolution, over the part under `box` = (top, left,
    bottom, right) in the tile's pixels."""
    step = ((tile_height + 3) // 4 * 4) // tf.shape(x)[1]
    top, left = box[0] // step, box[1] // step
    bottom, right = (box[2] + step - 1) // step, (box[3] + step - 1) // step
    part = tf.cast(x[0, top:bottom, left:right], tf.float64)
    count = tf.cast((bottom - top) * (right - left), tf.float64)
    return count, tf.reduce_sum(part, axis=[0, 1]), tf.reduce_sum(tf.square(part), axis=[0, 1])


def _moments(count, total, squares):
    mean = total / count
    variance = tf.maximum(squares / count - tf.square(mean), 0.0)
    return (tf.cast(tf.reshape(mean, (1, 1, 1, -1)), tf.float32),
            tf.cast(tf.reshape(variance, (1, 1, 1, -1)), tf.float32))


def split_at(network, name):
    """(head, tail): `network` up to the output of its layer `name`, and from there (taking that
    output and the network's other inputs, e.g. a style) to its last norm; the same layers, so norms
    handed statistics serve all three. (None, None) where it does not split there (no such layer, or
    a later layer reads something from before it)."""
    def inputs(tensors):
        return tensors if len(tensors) > 1 else tensors[0]

    norms = norm_layers(network)
    try:
        cut = network.get_layer(name).output
        head = keras.Model(inputs(network.inputs), cut)
        tail = keras.Model(inputs([cut, *network.inputs[1:]]), norms[-1].output)
    except (ValueError, IndexError):
        return None, None
    return head, tail


class NormStatistics:
    """Statistics handed to a network's instance norms in place of each image's own: per norm the
    pixel count, sum and sum of squares (float64) over all the images and tiles measured so far.

    `apply(model, x)` applies `model` (the network, or a part of it from `split_at`) to a (1, h, w, C)
    tensor, with whatever else it takes (a stylizer's `apply`: a MetaNet adds its style).
    """

    def __init__(self, network, apply):
        self.norms = norm_layers(network)
        self.apply = apply
        self.run = lambda batch: apply(network, batch)
        self.head, self.tail = split_at(network, RESUME_AT)
        self.head_norms = norm_layers(self.head) if self.head else self.norms
        self.sums = {}
        self._stylize = None

    def _handing(self, source):
        for layer in self.norms:
            layer.statistics = source

    def _release(self):
        for layer in self.norms:
            layer.statistics = None

    def _traced(self, source, body, batch_spec=_BATCH):
        """`body` as one compiled function, traced with `source` handing the norms statistics."""
        def traced(batch, box):
            self._handing(source)
            try:
                return body(batch, box)
            finally:
                self._release()
        return tf.function(traced, input_signature=[batch_spec, _BOX])

    def _with_measured(self, norms, run):
        """`run(batch)` compiled with the measured statistics handed to `norms`."""
        fixed = {layer.name: self.fixed(layer.name) for layer in norms}
        return self._traced(lambda layer, x: fixed[layer.name], lambda batch, box: run(batch))

    def fixed(self, name):
        return _moments(*[tf.constant(v) for v in self.sums[name]])

    def measure_tiles(self, photo, grid, margin, progress=None):
        """The whole photo's statistics, exactly, from its tiles: one pass over them per norm."""
        self.sums.clear()
        features = None
        for done, norm in enumerate(self.norms):
            if features is None and norm not in self.head_norms:
                features = self._features(photo, grid, margin)
            if features:
                self.sums[norm.name] = self._pass_to(norm, self._resume, features, RESUME_SCALE)
            else:
                self.sums[norm.name] = self._pass_to(norm, self.run, _photo_tiles(photo, grid, margin))
            if progress:
                progress.update(done + 1)
        self._stylize = None

    def _features(self, photo, grid, margin):
        """Each tile's features at `RESUME_AT`, with the statistics measured so far: a list of
        (features, box) pairs, or [] where they would not fit in `FEATURES_BUDGET`."""
        channels = self.head.outputs[0].shape[-1]
        outer = [_outer_box(photo.shape, box, margin) for box in grid]
        needed = sum(4 * channels * _ceil(bottom - top, RESUME_SCALE) * _ceil(right - left, RESUME_SCALE)
                     for top, left, bottom, right in outer)
        if needed > FEATURES_BUDGET:
            return []
        head = self._with_measured(self.head_norms, lambda batch: self.apply(self.head, batch))
        return [(head(tile, inner), inner) for tile, inner in _photo_tiles(photo, grid, margin)]

    def _resume(self, features):
        return self.apply(self.tail, features)

    def _pass_to(self, target, run, tiles, scale=1):
        """One pass over `tiles` ((input, box) pairs; inputs at 1/`scale` of the tiles' resolution)
        with `run`, to the input of the norm `target`: its (count, sum, sum of squares)."""
        reached = {}

        def source(layer, x):
            if layer is target:
                reached["input"] = x
            if layer is target or layer.name not in self.sums:  # (their outputs are not used)
                return ops.moments(x, axes=[1, 2], keepdims=True)
            return self.fixed(layer.name)

        def body(batch, box):
            run(batch)  # everything after the target norm is pruned from the compiled graph
            return _box_sums(reached["input"], box, scale * tf.shape(batch)[1])

        totals, measure = [0.0, 0.0, 0.0], None
        for batch, inner in tiles:
            if measure is None:
                spec = tf.TensorSpec((1, None, None, batch.shape[-1]), batch.dtype)
                measure = self._traced(source, body, spec)
            for k, value in enumerate(measure(batch, inner)):
                totals[k] = totals[k] + np.asarray(value)
        return tuple(totals)

    def stylize(self, tile):
        """The network on one tile with these statistics, compiled once per set of statistics."""
        if self._stylize is None:
            missing = [layer.name for layer in self.norms if layer.name not in self.sums]
            if missing:
                raise ValueError(f"no statistics measured for {', '.join(missing)}")
            self._stylize = self._with_measured(self.norms, self.run)
        return self._stylize(tile, tf.zeros(4, tf.int32))


def tile_grid(height, width, tile_size):
    """(top, left, bottom, right) of the kept part of each tile, covering the photo row by row."""
    return [(top, left, min(top + tile_size, height), min(left + tile_size, width))
            for top in range(0, height, tile_size) for left in range(0, width, tile_size)]


def _outer_box(shape, box, margin):
    """`box` grown by `margin` within a photo of `shape`."""
    top, left, bottom, right = box
    return (max(0, top - margin), max(0, left - margin),
            min(shape[0], bottom + margin), min(shape[1], right + margin))


def _ceil(n, d):
    return -(-n // d)


def _tile(photo, box, margin):
    """The tile around `box`, grown by `margin` within the photo, as a (1, h, w, 3) float32 tensor;
    and `box` in the tile's coordinates."""
    outer_top, outer_left, outer_bottom, outer_right = _outer_box(photo.shape, box, margin)
    tile = np.asarray(photo[outer_top:outer_bottom, outer_left:outer_right], np.float32)[None]
    top, left, bottom, right = box
    inner = [top - outer_top, left - outer_left, bottom - outer_top, right - outer_left]
    return tf.constant(tile), tf.constant(inner, tf.int32)


def _photo_tiles(photo, grid, margin):
    """(tile, box in the tile) pairs over `grid`, cut from the photo one at a time."""
    return (_tile(photo, box, margin) for box in grid)


def stylize_tiles(network, apply, photo, tile_size=TILE_SIZE, margin=MARGIN):
    """Stylise `photo` ((H, W, 3), uint8 or float in [0, 255]) in tiles with the whole photo's
    statistics, measured exactly over the tiles; returns uint8 (H, W, 3).

    `network` is the model whose norms take the statistics, `apply(model, x)` applies it or a part
    of it (see `NormStatistics`).
    """
    palettes = _layers_where(network, lambda layer: isinstance(layer, KeepPalette))
    whole = tf.constant(whole_palette(photo)) if palettes else None
    for layer in palettes:
        layer.photo_palette = whole
    try:
        return _stylize_tiles(network, apply, photo, tile_size, margin)
    finally:
        for layer in palettes:
            layer.photo_palette = None


def _stylize_tiles(network, apply, photo, tile_size, margin):
    height, width = photo.shape[:2]
    grid = tile_grid(height, width, tile_size)
    statistics = NormStatistics(network, apply)
    progress = Progress(len(statistics.norms), label="normalisation statistics", log_seconds=10.0,
                        enabled=len(grid) > 1)
    statistics.measure_tiles(photo, grid, margin, progress)
    progress.close()
    result = np.zeros((height, width, 3), np.uint8)
    progress = Progress(len(grid), label="tile", log_seconds=10.0, enabled=len(grid) > 1)
    for i, box in enumerate(grid):
        tile, inner = _tile(photo, box, margin)
        out = np.asarray(statistics.stylize(tile))[0]
        kept = out[int(inner[0]):int(inner[2]), int(inner[1]):int(inner[3])]
        result[box[0]:box[2], box[1]:box[3]] = np.clip(np.round(kept), 0, 255).astype(np.uint8)
        progress.update(i + 1)
    progress.close()
    return result
