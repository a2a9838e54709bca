"""Serialisable Keras layers shared by the networks (registered under the `keras_style` package)."""
import math

import keras
import numpy as np
from keras import ops

from keras_style.losses import mean_std

register = keras.saving.register_keras_serializable(package="keras_style")

# Caffe-style ImageNet means of the VGG19 weights, in BGR order.
VGG_BGR_MEAN = (103.939, 116.779, 123.68)


def with_static_channels(x, channels):
    """`x` with its channel count known to graph tracers again: a pad or repeat by computed amounts
    leaves even the channels unknown in a traced graph, and TFLite needs them for its convolutions."""
    if channels is None:
        return x
    shape = ops.shape(x)
    return ops.reshape(x, (shape[0], shape[1], shape[2], channels))


@register
class ReflectionPad2D(keras.layers.Layer):
    """Pads height and width by mirroring, so convolutions see no dark border."""

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, shape):
        grow = lambda n: None if n is None else n + 2 * self.padding  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def spatial_mean(x):
    """(B, H, W, C) -> (B, 1, 1, C): the mean over positions, row by row and then of the rows. One
    float32 sum over a whole photo drifts: the mean colour of a 2048x1536 result came out 0.8 of 255
    off (its colour match then shifted every pixel by that); in two short sums it does not."""
    return ops.mean(ops.mean(x, axis=2, keepdims=True), axis=1, keepdims=True)


def spatial_moments(x):
    """(mean, variance) over positions, each (B, 1, 1, C), as `spatial_mean` sums."""
    mean = spatial_mean(x)
    return mean, spatial_mean(ops.square(x - mean))


@register
class InstanceNormalization(keras.layers.Layer):
    """Normalises each channel of each image over its spatial positions, with learned scale and offset.

    Statistics are computed in float32 even under a bfloat16 policy: bfloat16 means of 65k pixels
    would be off by whole percent.
    """

    normalise = True  # a subclass may only scale and shift

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        # Normally each image's own statistics; a photo stylised in tiles hands the norms those of
        # the whole photo instead: `statistics(layer, x)` -> (mean, variance)
        # (tiles.py sets it, on eager calls; it is not part of the layer's config).
        self.statistics = None

    def build(self, shape):
        channels = shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, x):
        return self._normalise(x, ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"))

    def _normalise(self, x, scale, shift):
        x32 = ops.cast(x, "float32")
        mean, variance = self._moments(x32)
        y = (x32 - mean) * ops.rsqrt(variance + self.epsilon)
        return ops.cast(y * scale + shift, self.compute_dtype)

    def _moments(self, x32):
        """Each channel's (mean, variance) over positions: the image's own, or those handed in."""
        if self.statistics is None:
            return spatial_moments(x32)
        return self.statistics(self, x32)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@register
class StyleInstanceNormalization(InstanceNormalization):
    """Instance normalisation whose scale and offset also depend on the style (conditional instance
    normalisation, as in Ghiasi et al.'s arbitrary-style network).

    Called on `[x, params]`: `params` is (B, P) or (1, P), and this layer adds columns
    [offset, offset + C) to its own learned scale and the next C columns to its offset, per image.
    The MetaNet writes those columns, so each channel's mean and spread after the norm, and with
    them the result's colours and contrast, are the style's to set. With shared scales and offsets
    the generated kernels could move them only by reshaping the distribution, and a network learns
    to do that with a few extreme values that dominate the statistics: the smooth blobs that
    StyleGAN's authors called droplets.

    With `normalise=False` the layer only scales and shifts (no statistics): it follows a
    demodulated `DynamicConv2D`, whose weights already fix the scale.
    """

    def __init__(self, epsilon=1e-5, offset=0, normalise=True, **kwargs):
        super().__init__(epsilon, **kwargs)
        self.normalise = bool(normalise)
        self.offset = int(offset)
        self.channels = None

    def build(self, shapes):
        x_shape, params_shape = shapes
        super().build(x_shape)
        self.channels = int(x_shape[-1])
        _check_param_width(self, params_shape)

    @property
    def param_parts(self):
        """What this layer reads from the parameter vector, in order: (name, shape) pairs."""
        return (("scale", (self.channels,)), ("shift", (self.channels,)))

    @property
    def param_size(self):
        return 2 * self.channels

    def call(self, inputs):
        x, params = inputs
        block = ops.cast(params[:, self.offset:self.offset + self.param_size], "float32")
        scale = ops.cast(self.gamma, "float32") + block[:, None, None, :self.channels]
        shift = ops.cast(self.beta, "float32") + block[:, None, None, self.channels:]
        if not self.normalise:
            return ops.cast(ops.cast(x, "float32") * scale + shift, self.compute_dtype)
        return self._normalise(x, scale, shift)

    def compute_output_shape(self, shapes):
        return shapes[0]

    def get_config(self):
        return {**super().get_config(), "offset": self.offset, "normalise": self.normalise}


@register
class ColourMatch(InstanceNormalization):
    """The last layer of a meta transform: moves each colour channel of the result to the painting's
    mean, and its spread `strength` of the way to the painting's standard deviation.

    Called on `[image, params]`, image (B, H, W, 3) in [0, 255]; columns [offset, offset + 6) of
    `params` hold the painting's per-channel mean and standard deviation, which the MetaNet measures
    on the style image's pixels (not a learned guess: `metanet.build_metanet`). Per channel c:
    out = mean_style + (x - mean_x) * ((1 - strength) + strength * std_style / std_x). The image's
    own statistics are an instance norm's, so tiles.py hands it the whole photo's like the others'.
    """

    def __init__(self, strength=0.0, offset=0, epsilon=1.0, **kwargs):
        super().__init__(epsilon, **kwargs)
        self.strength = float(strength)
        self.offset = int(offset)
        self.channels = None

    def build(self, shapes):  # no weights of its own
        x_shape, params_shape = shapes
        self.channels = int(x_shape[-1])
        _check_param_width(self, params_shape)

    @property
    def param_parts(self):
        return (("mean", (self.channels,)), ("std", (self.channels,)))

    @property
    def param_size(self):
        return 2 * self.channels

    def call(self, inputs):
        x, params = inputs
        x32 = ops.cast(x, "float32")
        block = ops.cast(params[:, self.offset:self.offset + self.param_size], "float32")
        style_mean, style_std = block[:, None, None, :self.channels], block[:, None, None, self.channels:]
        mean, variance = self._moments(x32)
        gain = (1 - self.strength) + self.strength * style_std * ops.rsqrt(variance + self.epsilon)
        return ops.cast(style_mean + (x32 - mean) * gain, self.compute_dtype)

    def compute_output_shape(self, shapes):
        return shapes[0]

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "offset": self.offset}


def _palette_directions():
    """(3, 13) unit vectors: the colour axes, each pair's sum and difference, and the four diagonals
    of the colour cube. Bounds along them (both ways) describe a palette by 26 planes."""
    vectors = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1),
               (0, 1, -1), (1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)]
    d = np.asarray(vectors, np.float32).T
    return d / np.linalg.norm(d, axis=0, keepdims=True)


PALETTE_DIRECTIONS = _palette_directions()
PALETTE_SIZE = 3 + 2 * PALETTE_DIRECTIONS.shape[1]


def palette_of(images):
    """(B, H, W, 3) in [0, 255] -> (B, PALETTE_SIZE) float32: the mean colour, then the least and the
    greatest projection of any pixel on each of `PALETTE_DIRECTIONS`. The pixels lie inside the
    polytope those bounds cut out (a little larger than their convex hull), as does the mean."""
    # Computed on colour planes (B, 3, H, W): every mean, least and greatest value is then one along
    # a row, which TensorFlow reduces faster than across positions of (B, H, W, 3): 1.9 ms instead of
    # 3.5 for a 512x512 photo, 20 instead of 49 at 2048x1536 (Zen 4).
    planes = ops.transpose(ops.cast(images, "float32"), (0, 3, 1, 2))
    shape = ops.shape(planes)
    mean = ops.mean(ops.mean(planes, axis=-1), axis=-1)  # row by row, then the rows: see spatial_mean
    projected = ops.matmul(ops.convert_to_tensor(PALETTE_DIRECTIONS.T)[None],
                           ops.reshape(planes, (shape[0], 3, shape[2] * shape[3])))
    return ops.concatenate([mean, ops.min(projected, axis=-1), ops.max(projected, axis=-1)], axis=-1)


def split_palette(palette):
    """(mean, lower, upper): the parts of `palette_of`'s last axis, for tensors and arrays alike."""
    count = PALETTE_DIRECTIONS.shape[1]
    return palette[..., :3], palette[..., 3:3 + count], palette[..., 3 + count:]


@register
class Palette(keras.layers.Layer):
    """(B, H, W, 3) in [0, 255] -> (B, PALETTE_SIZE): `palette_of` its pixels (the MetaNet's
    measure of a painting's colours for `KeepPalette`)."""

    def call(self, images):
        return ops.cast(palette_of(images), self.compute_dtype)

    def compute_output_shape(self, shape):
        return (shape[0], PALETTE_SIZE)


@register
class KeepPalette(keras.layers.Layer):
    """The last colour step of a meta transform: a result's colours stay within the photo's and the
    painting's.

    Called on `[image, photo, params]`, image and photo (B, H, W, 3) in [0, 255]; columns [offset,
    offset + PALETTE_SIZE) of `params` hold the painting's `palette_of` (the MetaNet measures it).
    The two palettes' bounds along each direction, the wider of the two, cut out a polytope around
    both; every pixel outside it moves straight towards the point halfway between the two mean
    colours (inside it) until it is on its surface. Pixels inside are left as they are, so where the
    network keeps to the palettes this changes nothing. A photo stylised in tiles hands the whole
    photo's palette in `photo_palette` (tiles.py), so every tile keeps to the same bounds.
    """

    def __init__(self, offset=0, **kwargs):
        super().__init__(**kwargs)
        self.offset = int(offset)
        self.photo_palette = None  # (1, PALETTE_SIZE) handed in for tiles; not part of the config

    def build(self, shapes):
        _check_param_width(self, shapes[2])

    @property
    def param_parts(self):
        count = PALETTE_DIRECTIONS.shape[1]
        return (("mean", (3,)), ("lower", (count,)), ("upper", (count,)))

    @property
    def param_size(self):
        return PALETTE_SIZE

    def call(self, inputs):
        x, photo, params = inputs
        painting = ops.cast(params[:, self.offset:self.offset + self.param_size], "float32")
        own = palette_of(photo) if self.photo_palette is None else ops.cast(self.photo_palette, "float32")
        (own_mean, own_lower, own_upper), (mean, lower, upper) = split_palette(own), split_palette(painting)
        directions = ops.convert_to_tensor(PALETTE_DIRECTIONS)
        centre = (own_mean + mean) / 2
        at_centre = ops.matmul(centre, directions)
        # Room from the centre to each plane: upper >= 0 >= lower, the centre being inside.
        upper = ops.maximum(own_upper, upper) - at_centre
        lower = ops.minimum(own_lower, lower) - at_centre
        # A pixel's offset from the centre, projected on a direction and divided by the room that
        # way, is how many times over it crosses that plane (> 1: outside): one product for all
        # 26 planes, cheaper than testing each (the floor of 1e-3 levels keeps all finite).
        scaled = ops.concatenate([directions[None] / ops.maximum(upper, 1e-3)[:, None, :],
                                  directions[None] / ops.minimum(lower, -1e-3)[:, None, :]], axis=-1)
        offsets = ops.cast(x, "float32") - centre[:, None, None, :]
        crossing = ops.max(ops.einsum("bhwc,bcd->bhwd", offsets, scaled), axis=-1, keepdims=True)
        shrink = 1.0 / ops.maximum(crossing, 1.0)  # one division per pixel, not per channel
        return ops.cast(centre[:, None, None, :] + offsets * shrink, self.compute_dtype)

    def compute_output_shape(self, shapes):
        return shapes[0]

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


def _check_param_width(layer, params_shape):
    width = params_shape[-1]
    if width is not None and width < layer.offset + layer.param_size:
        raise ValueError(f"{layer.name}: needs parameter columns [{layer.offset}, "
                         f"{layer.offset + layer.param_size}) but the vector has {width}")


@register
class PadToMultiple(keras.layers.Layer):
    """Mirror-pads the bottom and right edges so height and width are multiples of `multiple`."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        shape = ops.shape(x)
        channels = x.shape[-1]
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        # A symmetric pad can add at most the current size, so tiny inputs (1 px to a multiple of 4)
        # are padded in stages, each at most doubling the size: as numpy's "symmetric" mode does.
        for _ in range(max(1, (self.multiple - 1).bit_length())):
            shape = ops.shape(x)
            step_h, step_w = ops.minimum(pad_h, shape[1]), ops.minimum(pad_w, shape[2])
            x = ops.pad(x, [[0, 0], [0, step_h], [0, step_w], [0, 0]], mode="symmetric")
            pad_h, pad_w = pad_h - step_h, pad_w - step_w
        return with_static_channels(x, channels)

    def compute_output_shape(self, shape):
        grow = lambda n: None if n is None else n + (-n) % self.multiple  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@register
class CropLike(keras.layers.Layer):
    """Crops `x` to the height and width of `reference` (undoes `PadToMultiple`)."""

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, shapes):
        x_shape, ref_shape = shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


@register
class VGGPreprocess(keras.layers.Layer):
    """RGB in [0, 255] to the BGR, mean-subtracted input the Caffe-trained VGG19 weights expect."""

    def call(self, x):
        mean = ops.convert_to_tensor(VGG_BGR_MEAN, dtype=self.compute_dtype)
        return ops.flip(x, axis=-1) - mean


@register
class MeanStd(keras.layers.Layer):
    """(B, H, W, C) -> (B, 2C): each channel's mean over positions, then its standard deviation.

    The MetaNet's summary of a style: unlike a Gram matrix its size grows linearly with C. Computed in
    float32 (with `losses.mean_std`'s epsilon, so flat images give a finite std and gradient).
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        mean, std = mean_std(x, self.epsilon)
        return ops.cast(ops.concatenate([mean, std], axis=-1), self.compute_dtype)

    def compute_output_shape(self, shape):
        return (shape[0], None if shape[-1] is None else 2 * shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@register
class Standardize(keras.layers.Layer):
    """(x - mean) / std per feature, with fixed (non-trainable) `mean` and `std` weights.

    Set them with `set_weights([mean, std])` from data, before training; they are saved with the
    model and its checkpoints like any weight. Until then it is the identity. Runs in float32
    whatever the policy (a difference of two large bfloat16 numbers keeps few significant bits).
    """

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})

    def build(self, shape):
        features = (shape[-1],)
        self.mean = self.add_weight(name="mean", shape=features, initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=features, initializer="ones", trainable=False)

    def call(self, x):
        return (ops.cast(x, "float32") - self.mean) / self.std


@register
class DynamicConv2D(keras.layers.Layer):
    """A 'valid' convolution whose kernel and bias come from an input, not from weights of its own.

    Called on `[x, params]`: `params` is (B, P) (or (1, P), one row for the whole batch), and this
    layer reads its kernel, (k, k, in_channels, filters) in row-major order, then its bias (filters)
    from columns [offset, offset + param_size). The MetaNet writes those columns, so each image may be
    convolved with its own style's kernel. Pad first (`ReflectionPad2D`); there is no padding here.

    One shared kernel is the common case (a batch of one style, or inference), so it takes a plain
    batched convolution; only a batch whose rows differ pays for the per-image loop.

    With `demodulate`, each filter's kernel is divided by its L2 norm (StyleGAN2's weight
    demodulation): for inputs of unit variance the output has unit variance whatever the kernel's
    scale, the job an instance norm after the convolution would do, but without measuring the
    image, so no few extreme pixels can steer it.
    """

    def __init__(self, filters, kernel_size, strides=1, offset=0, demodulate=False, **kwargs):
        super().__init__(**kwargs)
        self.demodulate = bool(demodulate)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.offset = int(offset)
        self.in_channels = None

    def build(self, shapes):
        x_shape, params_shape = shapes
        if x_shape[-1] is None:
            raise ValueError(f"{self.name}: the input's channel count must be known")
        self.in_channels = int(x_shape[-1])
        _check_param_width(self, params_shape)

    @property
    def kernel_shape(self):
        return (self.kernel_size, self.kernel_size, self.in_channels, self.filters)

    @property
    def param_parts(self):
        """What this layer reads from the parameter vector, in order: (name, shape) pairs."""
        return (("kernel", self.kernel_shape), ("bias", (self.filters,)))

    @property
    def param_size(self):
        """How many columns of the parameter vector this layer reads (kernel, then bias)."""
        return math.prod(self.kernel_shape) + self.filters

    def call(self, inputs):
        x, params = inputs
        block = params[:, self.offset:self.offset + self.param_size]
        kernels, biases = self._kernels_and_biases(block)
        if self.demodulate:
            kernels = _demodulated(kernels)
        shared = lambda: self._convolve(x, kernels[0], biases[0])  # noqa: E731
        if params.shape[0] == 1:
            return shared()
        # Equal rows (one style tiled over the batch) take the fast path; the result is the same.
        rows_equal = ops.all(ops.equal(block, block[:1]))
        return ops.cond(rows_equal, shared, lambda: self._per_image(x, kernels, biases))

    def _kernels_and_biases(self, block):
        """(B, k, k, in, filters) kernels and (B, filters) biases from the (B, param_size) columns."""
        kernel_size = math.prod(self.kernel_shape)
        return ops.reshape(block[:, :kernel_size], (-1,) + self.kernel_shape), block[:, kernel_size:]

    def _convolve(self, x, kernel, bias):
        return ops.conv(x, kernel, strides=self.strides, padding="valid") + bias

    def _per_image(self, x, kernels, biases):
        # A loop (tf.map_fn) over images: measured on CPU at 1-1.5x the shared-kernel time, where a
        # grouped convolution with the batch folded into channels took 20x (it needs XLA on CPU).
        return ops.map(lambda item: self._convolve(item[0][None], item[1], item[2])[0],
                       (x, kernels, biases))

    def compute_output_shape(self, shapes):
        x_shape = shapes[0]
        shrink = lambda n: None if n is None else (n - self.kernel_size) // self.strides + 1  # noqa: E731
        return (x_shape[0], shrink(x_shape[1]), shrink(x_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "offset": self.offset, "demodulate": self.demodulate}


def _demodulated(kernels, epsilon=1e-16):
    """(B, k, k, in, filters) kernels, each filter scaled to unit L2 norm (summed in float32: a
    bfloat16 sum of hundreds of squares would be off by percents)."""
    k32 = ops.cast(kernels, "float32")
    k32 = k32 * ops.rsqrt(ops.sum(ops.square(k32), axis=(1, 2, 3), keepdims=True) + epsilon)
    return ops.cast(k32, kernels.dtype)


@register
class StyleConv2D(DynamicConv2D):
    """A 'valid' convolution with a kernel and bias of its own, to which the style adds a change.

    Called on `[x, params]` like `DynamicConv2D`, it adds columns [offset, offset + param_size) to
    its own kernel and bias, per image: a learned network that every style shares, and that the
    MetaNet can bend for each style. (`StyleInstanceNormalization` does the same for a norm's
    scale and shift.) With all those columns zero it is a plain `Conv2D`.
    """

    def build(self, shapes):
        super().build(shapes)
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_shape, initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    @property
    def param_parts(self):
        """What this layer reads from the parameter vector: changes to its kernel, then its bias."""
        return (("kernel_change", self.kernel_shape), ("bias_change", (self.filters,)))

    def _kernels_and_biases(self, block):
        changes, bias_changes = super()._kernels_and_biases(block)
        return self.kernel[None] + changes, self.bias[None] + bias_changes


@register
class SpaceToDepthConv2D(keras.layers.Conv2D):
    """A stride-1, 'valid' `Conv2D` computed on blocks of `block` x `block` pixels: the same weights
    and, up to float rounding, the same result.

    A transform network's 9x9 stem and output convolutions, into and out of 3 channels, keep a
    CPU's vector units mostly idle: on 2 AVX2 cores in float32 they took 40-65 ms each at 512x512,
    a third of the whole network. Folding each block's pixels into the channels (space to depth)
    makes them convolutions of a few taps between block² times as many channels, with more
    multiply-adds in a shape the CPU runs several times faster; each block's outputs are unfolded
    after (depth to space). `block=None` picks the block from the channel counts and the arithmetic
    (`block_for`).
    """

    def __init__(self, *args, block=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.computes(self):
            raise ValueError(f"{self.name}: only stride-1, undilated, ungrouped 'valid' channels_last "
                             "convolutions")
        self.block = None if block is None else int(block)
        self._index = None

    @staticmethod
    def computes(conv):
        """Whether a `Conv2D`'s settings are ones this layer computes: stride 1, no dilation or
        groups, 'valid', channels last."""
        return (conv.strides == (1, 1) and conv.dilation_rate == (1, 1) and conv.padding == "valid"
                and conv.groups == 1 and conv.data_format == "channels_last")

    @staticmethod
    def block_for(in_channels, filters, dtype="float32"):
        """The block that ran fastest for these channel counts and arithmetic (9x9 kernels at
        512x512, 2 cores). float32 on an AMD EPYC Zen 3 with AVX2: 3->8 44 -> 24 ms at 4; 8->3 66 ->
        26 at 4; 3->16 54 -> 34 at 2; 16->3 128 -> 49 at 2; 32->3 213 -> 118 at 2; 3->32 66, slower
        in blocks: 1. bfloat16 on an AMD EPYC Zen 4 with AVX-512 BF16: 3->8 7.7 -> 5.4 ms at 2 (6.9
        at 4); 8->3 13.6 -> 6.0 at 2 (6.4 at 4); 16->3 25.6 -> 10.7 at 2; 32->3 50 -> 20 at 2; 3->16
        and 3->32 slower in blocks (7.9 and 14.2 ms plain, 9.1 and 16.9 at 2): 1."""
        if dtype == "bfloat16":
            return 2 if filters <= 8 else 1
        if in_channels * filters <= 24:
            return 4
        return 2 if filters <= 16 else 1

    def build(self, input_shape):
        super().build(input_shape)
        in_channels = int(input_shape[-1])
        self.block_size = self.block or self.block_for(in_channels, self.filters, self.compute_dtype)
        if self.block_size > 1:
            self._index = _blocked_kernel_index(self.kernel_size, in_channels, self.filters, self.block_size)

    def convolution_op(self, inputs, kernel):
        if self.block_size == 1:
            return super().convolution_op(inputs, kernel)
        r, taps = self.block_size, self._index.shape[0]
        batch, height, width = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(inputs)[2]
        out_height, out_width = height - self.kernel_size[0] + 1, width - self.kernel_size[1] + 1
        rows, cols = (out_height + r - 1) // r, (out_width + r - 1) // r  # output blocks
        in_rows, in_cols = rows + taps - 1, cols + taps - 1  # input blocks
        # Zeros below and right so the blocks tile the input; they reach only outputs cropped below.
        x = ops.pad(inputs, [[0, 0], [0, r * in_rows - height], [0, r * in_cols - width], [0, 0]])
        x = ops.reshape(x, (batch, in_rows, r, in_cols, r, inputs.shape[-1]))
        # The channel count spelled out: left unknown in a traced graph, Keras's TensorFlow conv
        # would compile itself with XLA (on a Zen 4 2-2.7x slower in bfloat16, 1.1x in float32).
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (batch, in_rows, in_cols, r * r * inputs.shape[-1]))
        flat = ops.concatenate([ops.reshape(kernel, (-1,)), ops.zeros((1,), kernel.dtype)])
        y = ops.conv(x, ops.take(flat, self._index), padding="valid")
        y = ops.reshape(y, (batch, rows, cols, r, r, self.filters))
        y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (batch, rows * r, cols * r, self.filters))
        return y[:, :out_height, :out_width, :]

    def get_config(self):
        return {**super().get_config(), "block": self.block}


def _blocked_kernel_index(kernel_size, in_channels, filters, r):
    """Where each weight of the blocked kernel comes from in the flat (kh, kw, in, filters) kernel:
    an int array (taps, taps, r * r * in, r * r * filters), the flat kernel's size meaning zero.

    Output pixel (oi, oj) of a block reads input pixel (oi + di, oj + dj) through kernel tap
    (di, dj); that pixel sits in input block ((oi + di) // r, (oj + dj) // r) at position
    ((oi + di) % r, (oj + dj) % r) within it.
    """
    kernel_height, kernel_width = kernel_size
    taps = (r + max(kernel_height, kernel_width) - 2) // r + 1
    flat = np.arange(kernel_height * kernel_width * in_channels * filters).reshape(
        kernel_height, kernel_width, in_channels, filters)
    index = np.full((taps, taps, r, r, in_channels, r, r, filters), flat.size)
    for oi in range(r):
        for oj in range(r):
            for di in range(kernel_height):
                for dj in range(kernel_width):
                    i, j = oi + di, oj + dj
                    index[i // r, j // r, i % r, j % r, :, oi, oj, :] = flat[di, dj]
    return index.reshape(taps, taps, r * r * in_channels, r * r * filters)


def _phase_taps():
    """(3, 3, 2, 2, 3, 3) of 0 and 1: for each output phase (rows, columns: axes 2, 3) of a 3x3
    convolution of an image upsampled 2x (nearest), which pixel of the 3x3 neighbourhood in the
    image before upsampling (axes 0, 1) each kernel tap (axes 4, 5) reads."""
    along = np.zeros((3, 2, 3), np.float32)  # (low-resolution offset, phase, tap) in one direction
    for phase in range(2):
        for tap in range(3):
            along[(phase + tap - 1) // 2 + 1, phase, tap] = 1
    return np.einsum("iat,jbu->ijabtu", along, along)


PHASE_TAPS = _phase_taps()


def upsampled_conv(x, kernel):
    """The 'valid' 3x3 convolution of `x` upsampled 2x (nearest), computed from `x` itself.

    `x` is padded by 1 with `SymmetricPad2D`: upsampled, that is the upsampled image reflection-padded
    by 1, what the convolution reads in the network. Each of the four output phases (even or odd row
    and column) reads at most 2x2 pixels of `x` through the kernel's taps summed where they land on
    the same pixel, so one 3x3 convolution at the low resolution with 4x the filters gives them all, and
    interleaving the phases (depth to space) the result: a quarter of the positions and no
    upsampled image in memory.
    """
    filters = kernel.shape[-1]
    phases = ops.einsum("ijabtu,tucf->ijcabf", ops.convert_to_tensor(PHASE_TAPS), ops.cast(kernel, "float32"))
    phases = ops.cast(ops.reshape(phases, (3, 3, kernel.shape[2], 4 * filters)), kernel.dtype)
    y = ops.conv(x, phases, padding="valid")
    batch, height, width = ops.shape(y)[0], ops.shape(y)[1], ops.shape(y)[2]
    y = ops.reshape(y, (batch, height, width, 2, 2, filters))
    return ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (batch, 2 * height, 2 * width, filters))


@register
class UpSamplingLater(keras.layers.UpSampling2D):
    """Stands in for a 2x nearest `UpSampling2D` whose output a `ReflectionPad2D` by 1 and a 3x3
    convolution read (see `upsampled_conv`): passes its input on unchanged, the convolution
    upsamples. Swapped in for inference by `stylize.in_precision`."""

    def call(self, x):
        return x

    def compute_output_shape(self, shape):
        return shape


@register
class SymmetricPad2D(ReflectionPad2D):
    """Pads by mirroring with the edge repeated (numpy's 'symmetric'). Padded by 1 this way and
    upsampled 2x, an image is the upsampled image reflection-padded by 1: in place of such a
    `ReflectionPad2D` after `UpSamplingLater`."""

    def call(self, x):
        p = self.padding
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="symmetric")


class _UpsampledInput:
    """A 3x3 stride-1 convolution that reads its input upsampled 2x: `upsampled_conv`."""

    def convolution_op(self, inputs, kernel):  # keras.layers.Conv2D's
        return upsampled_conv(inputs, kernel)

    def _convolve(self, x, kernel, bias):  # DynamicConv2D's
        return upsampled_conv(x, kernel) + bias

    def compute_output_shape(self, shapes):
        batch, height, width, channels = super().compute_output_shape(shapes)
        twice = lambda n: None if n is None else 2 * n  # noqa: E731
        return (batch, twice(height), twice(width), channels)


@register
class UpsampledConv2D(_UpsampledInput, keras.layers.Conv2D):
    """`Conv2D` after `UpSamplingLater` and `SymmetricPad2D` (see `upsampled_conv`)."""


@register
class UpsampledDynamicConv2D(_UpsampledInput, DynamicConv2D):
    """`DynamicConv2D` after `UpSamplingLater` and `SymmetricPad2D` (see `upsampled_conv`)."""


@register
class UpsampledStyleConv2D(_UpsampledInput, StyleConv2D):
    """`StyleConv2D` after `UpSamplingLater` and `SymmetricPad2D` (see `upsampled_conv`)."""


UPSAMPLED = {keras.layers.Conv2D: UpsampledConv2D, DynamicConv2D: UpsampledDynamicConv2D,
             StyleConv2D: UpsampledStyleConv2D}


def upsampling_later(up, pad, conv):
    """[(layer, class)] swapping a 2x nearest `up`sampling, a reflection `pad` by 1 and a 3x3 stride-1
    `conv` of a class in `UPSAMPLED`, one feeding the next, for the classes computing the same at the
    low resolution; [] if they are not that."""
    pair = lambda value: tuple(value) if isinstance(value, (tuple, list)) else (value, value)  # noqa: E731
    upsamples_2x = (type(up) is keras.layers.UpSampling2D and pair(up.size) == (2, 2)
                    and up.interpolation == "nearest" and up.data_format == "channels_last")
    pads_by_1 = type(pad) is ReflectionPad2D and pad.padding == 1
    plain_3x3 = (type(conv) in UPSAMPLED and pair(conv.kernel_size) == (3, 3) and pair(conv.strides) == (1, 1)
                 and (type(conv) is not keras.layers.Conv2D or SpaceToDepthConv2D.computes(conv)))
    if upsamples_2x and pads_by_1 and plain_3x3:
        return [(up, UpSamplingLater), (pad, SymmetricPad2D), (conv, UPSAMPLED[type(conv)])]
    return []
