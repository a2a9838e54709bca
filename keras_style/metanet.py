"""MetaNet style transfer (Shen et al. 2018): a network that turns a style image into the weights of
a transform network, so one model stylises with styles it has never seen, in one forward pass.

The pieces, all functional Keras models:
- the meta transform, [photo, params] -> image: the Johnson network of `transform.py` whose middle
  convolutions (down-sampling into the residual width, the residual blocks, the first up-sampling)
  are `DynamicConv2D` layers reading kernel and bias from `params`, and whose instance norms are
  `StyleInstanceNormalization` layers reading a scale and shift from `params` (added to their own);
  the stem, the first down-sampling, the last up-sampling and the output convolution keep weights
  of their own (they mostly resample);
- the MetaNet, [VGG mean/std statistics of the style, style image] -> params (all its layers are
  named `metanet_...`, which is how `Adagrad2` finds them);
- the style encoder, style image -> params: VGG + `MeanStd` + the MetaNet;
- the combined model, [photo, style] -> image, nesting the encoder and the transform, which is what
  a MetaNet `.keras` file holds.
`ParamLayout` says where each dynamic layer's parts sit in the flat parameter vector.
"""
import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from keras_style import precision
from keras_style.layers import (PALETTE_SIZE, ColourMatch, CropLike, DynamicConv2D, InstanceNormalization,
                                KeepPalette, MeanStd, PadToMultiple, Palette, ReflectionPad2D, Standardize,
                                StyleConv2D, StyleInstanceNormalization)
from keras_style.losses import mean_std
from keras_style.transform import conv_block

# VGG layers whose per-channel mean and std describe a style to the MetaNet (the paper's choice:
# 2 * (64 + 128 + 256 + 512) = 1920 numbers, and the VGG stops at block 4).
STYLE_FEATURE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
# The MetaNet reads a style image scaled so its shorter side is this (in training: the whole style
# image as a centre square). Small, because a VGG pass at 256 px would take 0.10 s of the 0.15 s
# budget for encoding and stylising; the style loss still sees the style at full training scale.
ENCODE_SIDE = 128
# Shrinks the MetaNet's outputs so the generated kernels start small and move slowly (Keras port).
OUTPUT_SCALE = 1e-4
# The instance norms after the dynamic convolutions. The usual 1e-5 would dwarf the variance of
# their input while the generated kernels are small (about 4e-5 each at initialisation: a variance
# near 1e-7), leaving the residual blocks near the identity and the kernels' scale far from
# irrelevant; 1e-12 keeps the norms scale-free from the first step.
DYNAMIC_NORM_EPSILON = 1e-12
PLAIN_NORM_EPSILON = 1e-5  # the norms of transform.conv_block (InstanceNormalization's default)
# Scales the MetaNet's outputs that the style adds to a layer's own (learned, shared) weights: the
# style norms' scale and shift, the style convolutions' kernel and bias changes. One Adam step
# moves an output weight by about the MetaNet's rate (4e-5 in conf/metanet.yml) and an output by
# that times the sum of the ~270 non-negative shared hidden units: x 0.1 makes it ~1e-3 a step,
# the rate of the shared weights themselves.
NORM_OUTPUT_SCALE = 0.1
PREFIX = "metanet_"
STANDARDISE_NAME = f"{PREFIX}stats_standardise"
ENCODER_NAME = "style_encoder"
TRANSFORM_NAME = "meta_transform"
# The transform's last layer with `color_match`: its columns are the painting's measured colours.
COLOUR_NAME = "colour_match"
# With `keep_palette`, after it: its columns are the painting's measured palette.
PALETTE_NAME = "keep_palette"


@dataclass(frozen=True)
class ParamSlot:
    """One dynamic layer's columns in the parameter vector: its parts, end to end, from `offset`.

    A dynamic convolution reads ("kernel", (k, k, in_channels, filters)) then ("bias", (filters,));
    a style instance norm ("scale", (channels,)) then ("shift", (channels,)).
    """
    name: str
    parts: tuple  # ((part name, shape), ...) in vector order
    offset: int

    @property
    def size(self):
        return sum(math.prod(shape) for _, shape in self.parts)

    @property
    def end(self):
        return self.offset + self.size

    def span(self, part):
        """(start, end) columns of `part` in the vector."""
        start = self.offset
        for name, shape in self.parts:
            if name == part:
                return start, start + math.prod(shape)
            start += math.prod(shape)
        raise KeyError(f"{self.name} has no part {part!r}")

    def shape(self, part):
        return dict(self.parts)[part]

    @property
    def kernel_shape(self):
        return self.shape("kernel")

    @property
    def kernel_size(self):
        return math.prod(self.kernel_shape)


@dataclass(frozen=True)
class ParamLayout:
    """The table of dynamic layers, in vector order; the MetaNet writes it, the transform reads it."""
    slots: tuple

    @classmethod
    def packed(cls, layers):
        """Slots for `[(name, parts), ...]`, laid end to end from column 0."""
        slots, offset = [], 0
        for name, parts in layers:
            parts = tuple((part, tuple(int(n) for n in shape)) for part, shape in parts)
            slots.append(ParamSlot(name, parts, offset))
            offset = slots[-1].end
        return cls(tuple(slots))

    @classmethod
    def of_model(cls, model):
        """The layout a built meta transform actually reads, checked to be contiguous."""
        dynamic = sorted((layer for layer in _all_layers(model) if hasattr(layer, "param_parts")),
                         key=lambda layer: layer.offset)
        layout = cls.packed([(layer.name, layer.param_parts) for layer in dynamic])
        found = [layer.offset for layer in dynamic]
        if found != [slot.offset for slot in layout]:
            raise ValueError(f"{model.name}: dynamic layers are not packed end to end ({found})")
        return layout

    @property
    def size(self):
        return self.slots[-1].end if self.slots else 0

    def __iter__(self):
        return iter(self.slots)

    def __len__(self):
        return len(self.slots)

    def __getitem__(self, name):
        for slot in self.slots:
            if slot.name == name:
                return slot
        raise KeyError(name)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


class _Columns:
    """Hands out the parameter vector's columns to dynamic layers as the network is built."""

    def __init__(self):
        self.used = 0

    def take(self, size):
        offset, self.used = self.used, self.used + size
        return offset


def transform_layout(base=16, residual_width=48, residual_blocks=6, style_norms=True, style_output_convs=False,
                     color_match=None, keep_palette=False):
    """The `ParamLayout` of `build_meta_transform` with the same arguments."""
    return ParamLayout.of_model(build_meta_transform(base, residual_width, residual_blocks, style_norms=style_norms,
                                                     style_output_convs=style_output_convs,
                                                     color_match=color_match, keep_palette=keep_palette))


def _norm(x, params, columns, name, epsilon=1e-5, style=True, normalise=True):
    """An instance norm: with `style`, one whose scale and shift the MetaNet also sets; without
    `normalise` (after a demodulated convolution), only that scale and shift."""
    if not style:
        return InstanceNormalization(epsilon=epsilon, name=name)(x)
    layer = StyleInstanceNormalization(epsilon=epsilon, offset=columns.take(2 * x.shape[-1]), normalise=normalise,
                                       name=name)
    return layer([x, params])


def _static_block(x, params, columns, filters, size, name, style_norms, strides=1, upsample=False,
                  style_conv=False, relu=True):
    """`transform.conv_block` (weights of its own), its norm a style norm when `style_norms`, its
    convolution a `StyleConv2D` when `style_conv`, without the ReLU unless `relu`."""
    x = _conv(x, params, columns, filters, size, name, strides, upsample, style_conv)
    x = _norm(x, params, columns, f"{name}_norm", style=style_norms)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _conv(x, params, columns, filters, size, name, strides=1, upsample=False, style=False):
    """[upsample] -> reflection pad -> convolution of its own weights, bent by the style if `style`."""
    if not style:
        return conv_block(x, filters, size, strides=strides, upsample=upsample, norm=False, relu=False, name=name)
    return _params_conv(StyleConv2D, x, params, columns, filters, size, name, strides, upsample)


def _params_conv(layer_class, x, params, columns, filters, size, name, strides, upsample, **options):
    """[upsample] -> reflection pad -> a `layer_class` convolution reading its columns of `params`."""
    if upsample:
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    x = ReflectionPad2D(size // 2, name=f"{name}_pad")(x)
    offset = columns.take(size * size * x.shape[-1] * filters + filters)
    return layer_class(filters, size, strides=strides, offset=offset, name=f"{name}_conv", **options)([x, params])


def _dynamic_block(x, params, columns, filters, name, style_norms, strides=1, upsample=False, relu=True,
                   demodulate=False):
    """[upsample] -> reflection pad -> dynamic 3x3 conv -> instance norm -> [ReLU], as `conv_block`;
    with `demodulate`, a demodulated conv and the norm's scale and shift alone."""
    x = _params_conv(DynamicConv2D, x, params, columns, filters, 3, name, strides, upsample, demodulate=demodulate)
    x = _norm(x, params, columns, f"{name}_norm", DYNAMIC_NORM_EPSILON, style_norms, normalise=not demodulate)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def build_meta_transform(base=16, residual_width=48, residual_blocks=6, style_norms=True,
                         style_output_convs=False, relu_before_output=True, demodulate=False, color_match=None,
                         keep_palette=False, name=TRANSFORM_NAME):
    """[photo (B, H, W, 3) in [0, 255], params (B or 1, P)] -> image (B, H, W, 3) in [0, 255], float32.

    The Johnson network of `transform.py`. Widths: stem `base`, first down-sampling `2 * base`, then
    `residual_width` through the dynamic part, last up-sampling `base`; the Keras port used 16, 48
    and 6 blocks. The middle convolutions (the second down-sampling, the residual blocks, the first
    up-sampling) are `DynamicConv2D` layers reading their kernels from `params`; the stem, the
    first down-sampling, the last up-sampling and the output convolution keep weights of their own
    (they mostly resample). Every convolution but the output is followed by instance
    normalisation (which also makes the generated kernels' overall scale irrelevant; the Keras port
    had none), and with `style_norms` every one of those norms is a `StyleInstanceNormalization`
    whose scale and shift `params` also sets, so the style reaches every layer's statistics. With
    `style_output_convs` the last up-sampling and the output convolution, which draw the result's
    fine texture at full resolution, are `StyleConv2D` layers: their own weights plus a change
    that `params` sets. Without `relu_before_output` the output convolution reads the last
    up-sampling's norm as it is: with the ReLU, wherever all `base` channels are negative the
    result is the output convolution's bias, the same grey for every style. With `demodulate` (and
    `style_norms`) the dynamic convolutions demodulate their kernels and their norms only scale and
    shift: no statistics of the image in the residual stream, where instance norms let the network
    grow droplets (a few extreme pixels that set a norm's statistics for the whole picture). With
    `color_match` (0 to 1) a `ColourMatch` layer ends the network: the result's colour channels take
    the painting's means, and their spreads move that far to the painting's (the last 6 columns of
    `params`, which the MetaNet measures on the style image). With `keep_palette` a `KeepPalette`
    layer comes last: every colour outside both the photo's and the painting's palettes is drawn
    back to their border (a mean shift can carry a colour out of both).

    The MetaNet grows with the vector length P (one Dense of ~385 x kernel size per dynamic
    convolution): at 48 wide and 6 blocks it has 112M weights (224 MB even in 16 bits); 16 wide and
    5 blocks, 14M.
    """
    if demodulate and not style_norms:
        raise ValueError("demodulate needs style_norms: the scale and shift after a demodulated convolution")

    def graph(params_width):
        columns = _Columns()
        photo = keras.Input((None, None, 3), name="photo")
        params = keras.Input((params_width,), name="params")
        x = PadToMultiple(4, name="pad_to_4")(photo)
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit")(x)
        x = _static_block(x, params, columns, base, 9, "stem", style_norms)
        x = _static_block(x, params, columns, 2 * base, 3, "down1", style_norms, strides=2)
        dynamic = dict(style_norms=style_norms, demodulate=demodulate)
        x = _dynamic_block(x, params, columns, residual_width, "down2", strides=2, **dynamic)
        for i in range(1, residual_blocks + 1):
            y = _dynamic_block(x, params, columns, residual_width, f"res{i}_a", **dynamic)
            y = _dynamic_block(y, params, columns, residual_width, f"res{i}_b", relu=False, **dynamic)
            x = layers.Add(name=f"res{i}_add")([x, y])
        x = _dynamic_block(x, params, columns, residual_width, "up1", upsample=True, **dynamic)
        x = _static_block(x, params, columns, base, 3, "up2", style_norms, upsample=True,
                          style_conv=style_output_convs, relu=relu_before_output)
        x = _conv(x, params, columns, 3, 9, "out", style=style_output_convs)
        x = layers.Rescaling(127.5, offset=127.5, dtype="float32", name="to_pixels")(x)
        if color_match is not None:
            x = ColourMatch(color_match, offset=columns.take(6), dtype="float32", name=COLOUR_NAME)([x, params])
        if keep_palette:
            keep = KeepPalette(offset=columns.take(PALETTE_SIZE), dtype="float32", name=PALETTE_NAME)
            x = keep([x, photo, params])
        image = CropLike(dtype="float32", name="crop")([x, photo])
        return keras.Model([photo, params], image, name=name), columns.used

    # The vector's width is known once every dynamic layer has taken its columns: count, then build.
    return graph(graph(None)[1])[0]


def style_feature_size(vgg, style_layers=STYLE_FEATURE_LAYERS):
    """Length of the VGG statistics vector: 2 * the channels of each style layer."""
    return sum(2 * vgg.output[name].shape[-1] for name in style_layers)


def style_statistics(features, style_layers=STYLE_FEATURE_LAYERS):
    """The MetaNet's first input from a dict of VGG features: per layer, the channel means then the
    standard deviations, in float32 — what the style encoder computes, for a trainer that already
    has the style's VGG features and would rather not run the VGG twice.
    """
    return ops.concatenate([ops.concatenate(mean_std(features[n]), axis=-1) for n in style_layers], axis=-1)


def build_metanet(layout, style_features, shared_units=(128, 16, 128), group_units=(64, 32, 16),
                  cnn_filters=(64, 64, 256), dropout=(0.05, 0.1), kernel_rank=0, name="metanet"):
    """[style statistics (B, style_features), style image (B, H, W, 3) in [0, 255]] -> params (B, P).

    Two views of the style: the VGG mean/std statistics (input 1), standardised per feature with
    fixed statistics of the training styles (see `fit_statistics_normalization`), and the mean/std
    of a small CNN of its own on the image scaled by 1/15 (input 2; no normalisation inside, which
    would erase the statistics it is there to measure). Hidden units shared by all layers (relu on
    input 1, sigmoid and relu on input 2) join each dynamic convolution's own group of the same
    three kinds, and a linear Dense per kernel and per bias reads both (a style norm's scale and
    shift read the shared units only); outputs are scaled (`_output_scale`) and concatenated in
    layout order. A `ColourMatch` layer's columns are the style image's per-channel pixel mean
    and standard deviation, measured; a `KeepPalette` layer's, its `layers.palette_of`. Defaults
    follow the Keras port.

    `kernel_rank` > 0 makes each kernel's linear map low-rank: a linear Dense to that many units,
    then the output Dense. The kernels' Denses are nearly all of a MetaNet's weights (hidden units x
    kernel sizes): this keeps a wide transform's MetaNet small, and a few dozen training styles
    span fewer directions than that anyway.
    """
    stats = keras.Input((style_features,), name="style_stats")
    style = keras.Input((None, None, 3), name="style")
    standardised = Standardize(name=STANDARDISE_NAME)(stats)
    x = layers.Rescaling(1 / 15, name=f"{PREFIX}scale")(style)
    for i, (filters, size) in enumerate(zip(cnn_filters, (9, 3, 3))):
        x = conv_block(x, filters, size, strides=1 if i == 0 else 2, norm=False, name=f"{PREFIX}cnn{i + 1}")
    cnn = MeanStd(name=f"{PREFIX}cnn_stats")(x)
    shared = _hidden(standardised, cnn, shared_units, dropout[0], f"{PREFIX}shared")
    outputs = []
    for slot in layout:
        if slot.name == COLOUR_NAME:  # measured, not generated: the exact colours of any painting
            outputs.append(MeanStd(dtype="float32", name=f"{PREFIX}colours")(style))
            continue
        if slot.name == PALETTE_NAME:
            outputs.append(Palette(dtype="float32", name=f"{PREFIX}palette")(style))
            continue
        reads = shared
        if _is_convolution(slot):  # a convolution's own group of hidden units beside the shared
            own = _hidden(standardised, cnn, group_units, dropout[1], f"{PREFIX}{slot.name}")
            reads = layers.Concatenate(name=f"{PREFIX}{slot.name}_hidden")([own, shared])
        for part, shape in slot.parts:
            x = reads
            if part == "kernel" and kernel_rank:
                x = layers.Dense(kernel_rank, use_bias=False, name=f"{_output_name(slot, part)}_low")(x)
            y = layers.Dense(math.prod(shape), kernel_initializer="zeros", bias_initializer=_start_value(part),
                             name=_output_name(slot, part))(x)
            outputs.append(layers.Rescaling(_output_scale(part), dtype="float32",
                                            name=f"{_output_name(slot, part)}_scale")(y))
    params = layers.Concatenate(dtype="float32", name=f"{PREFIX}params")(outputs)
    return keras.Model([stats, style], params, name=name)


def output_layers(metanet, layout):
    """The MetaNet's linear output layers, one per part of each dynamic layer, in layout order."""
    return [metanet.get_layer(_output_name(slot, part)) for slot in layout for part, _ in slot.parts]


def _output_name(slot, part):
    return f"{PREFIX}{slot.name}_{part}"


def _is_convolution(slot):
    return any(part in ("kernel", "kernel_change") for part, _ in slot.parts)


def _output_scale(part):
    """Kernels and biases are scaled by the port's 1e-4 (instance norms follow them, so only their
    direction matters); what the style adds to a layer's own weights (a norm's scale and shift, a
    style convolution's kernel and bias changes) by `NORM_OUTPUT_SCALE`: their size is what counts."""
    return OUTPUT_SCALE if part in ("kernel", "bias") else NORM_OUTPUT_SCALE


def _start_value(part):
    """Initial biases of the MetaNet's output layers, whose weights start at zero: every style
    begins with one shared transform network, random kernels and zero conv biases, and the MetaNet
    learns what varies with the style as those weights grow. (Random weights gave each style its own
    random perturbation, as large as the shared part, to unlearn.) The scale is before the 1e-4:
    a kernel starts near 3e-5, large beside `DYNAMIC_NORM_EPSILON`; an Adam step on a weight moves it
    by the rate times the sum of the ~190 non-negative hidden units, ~2% of it at 4e-5.
    """
    return keras.initializers.RandomNormal(stddev=0.3) if part == "kernel" else "zeros"


def fit_statistics_normalization(metanet, statistics, floor=0.01):
    """Set the MetaNet's input standardisation from `statistics`, (N, style_features): the VGG
    statistics of the training styles. Raw, they are all positive and of very different sizes (a
    relu4_3 mean is hundreds of times a relu1_2 std), so every style looked alike to the first Dense
    layers: the generated kernels of any two styles differed by 15-20% and the MetaNet learned one
    network for all. Standard deviations are floored at `floor` x their median, so a feature that
    barely varies over the training styles does not blow up an unseen style's small difference.
    """
    statistics = np.asarray(statistics, np.float64)
    std = statistics.std(axis=0)
    std = np.maximum(std, floor * np.median(std))
    std[std == 0] = 1.0  # nothing varies (a single style): only centred
    metanet.get_layer(STANDARDISE_NAME).set_weights([statistics.mean(axis=0), std])


def _hidden(stats, cnn, units, rate, name):
    relu1, sigmoid2, relu2 = units
    parts = [layers.Dense(relu1, activation="relu", name=f"{name}_stats_relu")(stats),
             layers.Dense(sigmoid2, activation="sigmoid", name=f"{name}_cnn_sigmoid")(cnn),
             layers.Dense(relu2, activation="relu", name=f"{name}_cnn_relu")(cnn)]
    return layers.Dropout(rate, name=f"{name}_dropout")(layers.Concatenate(name=f"{name}_units")(parts))


def metanet_variable_names(metanet):
    """The paths of the MetaNet's trainable variables: `Adagrad2`'s `norm_val`."""
    return [v.path for v in metanet.trainable_variables]


def build_style_encoder(metanet, vgg, style_layers=STYLE_FEATURE_LAYERS, name=ENCODER_NAME):
    """style image (B, H, W, 3) in [0, 255] -> params (B, P): VGG statistics, then the MetaNet.

    `vgg` is a `vgg.build_vgg` model with (at least) `style_layers` among its outputs; only the part
    of it those layers need goes into the encoder (and so into a saved file).
    """
    features = keras.Model(vgg.input, {n: vgg.output[n] for n in style_layers}, name="vgg19_style")
    features.trainable = False
    style = keras.Input((None, None, 3), name="style")
    computed = features(style)
    stats = layers.Concatenate(dtype="float32", name="style_stats")(
        [MeanStd(dtype="float32", name=f"{n}_stats")(computed[n]) for n in style_layers])
    return keras.Model(style, metanet([stats, style]), name=name)


def build_metanet_model(encoder, transform, name="metanet_style_transfer"):
    """[photo (B, H, W, 3), style (B or 1, h, w, 3)] -> image: both halves in one model (one file).

    A single style image is applied to every photo of the batch.
    """
    photo = keras.Input((None, None, 3), name="photo")
    style = keras.Input((None, None, 3), name="style")
    image = transform([photo, encoder(style)])
    return keras.Model([photo, style], image, name=name)


def metanet_halves(model):
    """(style encoder, meta transform) of a combined model, e.g. one loaded from a `.keras` file.

    Encode a style once with the first, then stylise any number of photos with the second.
    """
    return model.get_layer(ENCODER_NAME), model.get_layer(TRANSFORM_NAME)


def build_export_model(metanet, transform, vgg, style_layers=STYLE_FEATURE_LAYERS,
                       storage_dtype="bfloat16", name="metanet_style_transfer"):
    """The combined model to save, with the VGG and MetaNet layers that hold weights stored (and
    run) in `storage_dtype`, halving the file; everything else runs in float32. The transform is
    used as is. Use `storage_dtype="float32"` for a full-precision file.

    bfloat16 rather than float16: CPUs without float16 arithmetic (AVX-512 BF16 but no FP16) run
    float16 layers 2.4x slower than bfloat16 ones (encoding a 256 px style: VGG part 0.24 s vs
    0.10 s, MetaNet part 0.049 s vs 0.025 s, here).
    """
    features = keras.Model(vgg.input, {n: vgg.output[n] for n in style_layers})
    encoder = build_style_encoder(_recast(metanet, storage_dtype), _recast(features, storage_dtype),
                                  style_layers)
    return build_metanet_model(encoder, transform, name=name)


def _recast(model, storage_dtype):
    """A copy of a flat functional model whose weighted layers use `storage_dtype`, others float32."""
    return precision.recast(model, lambda layer: storage_dtype if layer.weights else "float32")


def transform_shape(model):
    """(base, residual_width, residual_blocks) of a transform network, plain or meta; a ValueError
    for any other model, or a meta transform no plain one matches (its first up-sampling's width
    is the residual width, a plain network's twice the base)."""
    blocks = residual_block_count(model)
    base, width = model.get_layer("stem_conv").filters, model.get_layer("down2_conv").filters
    if model.get_layer("up1_conv").filters != 2 * base:
        raise ValueError(f"{model.name}: up1 is {model.get_layer('up1_conv').filters} wide, not 2 x {base}")
    return base, width, blocks


def has_relu_before_output(model):
    """Whether a transform network, plain or meta, has a ReLU between its last up-sampling and its
    output convolution (plain networks always do)."""
    return any(layer.name == "up2_relu" for layer in model.layers)


def is_demodulated(model):
    """Whether a meta transform's dynamic convolutions demodulate their kernels."""
    return any(getattr(layer, "demodulate", False) for layer in model.layers)


def why_not_plain(transform):
    """Why no plain `transform.build_transform_net` network computes what the meta transform
    `transform` does ("its transform ..."), or None when one does."""
    if not has_relu_before_output(transform):
        return ("has no ReLU before the output convolution (relu_before_output: false), which a "
                "per-style network always has")
    if is_demodulated(transform):
        return "demodulates its kernels (demodulate: true); a per-style network normalises with instance norms instead"
    return None


def residual_block_count(model):
    """How many residual blocks a transform network, plain or meta, has."""
    return sum(1 for layer in model.layers if layer.name.startswith("res") and layer.name.endswith("_add"))


def plain_transform_weights(transform, params):
    """{layer name: weights} that make a plain `transform.build_transform_net` network of the same
    shape compute what the meta transform `transform` computes with the parameter vector `params`
    (P,): the style's kernels and biases become the dynamic convolutions' own weights, and its
    scales and shifts and kernel and bias changes are added into the norms' and style
    convolutions' own. Such a network is a warm start for training that
    style alone (it fine-tunes from the MetaNet's guess instead of from random weights).

    A dynamic convolution is followed by a norm of epsilon 1e-12 (`DYNAMIC_NORM_EPSILON`), a plain
    one by a norm of 1e-5; scaling the convolution's kernel and bias by the square root of their
    ratio makes the plain norm compute exactly what the dynamic one did, and leaves the copied
    kernels at a size plain training can move. A `ColourMatch` (`color_match`) or `KeepPalette`
    has no counterpart in a plain network, which starts from what the transform computes before
    them: the painting's colours are for its training to find.
    """
    reason = why_not_plain(transform)
    if reason:
        raise ValueError(f"{transform.name} {reason}")
    params = np.asarray(params, np.float32).reshape(-1)
    weights = {}
    for layer in transform.layers:
        if isinstance(layer, StyleConv2D):
            kernel, bias = layer.get_weights()
            change = params[layer.offset:layer.offset + layer.param_size]
            weights[layer.name] = [kernel + change[:kernel.size].reshape(kernel.shape), bias + change[kernel.size:]]
        elif isinstance(layer, DynamicConv2D):
            norm = transform.get_layer(layer.name.removesuffix("_conv") + "_norm")
            scale = math.sqrt(PLAIN_NORM_EPSILON / norm.epsilon)
            start, middle = layer.offset, layer.offset + math.prod(layer.kernel_shape)
            end = layer.offset + layer.param_size
            weights[layer.name] = [scale * params[start:middle].reshape(layer.kernel_shape),
                                   scale * params[middle:end]]
        elif isinstance(layer, StyleInstanceNormalization):
            gamma, beta = layer.get_weights()
            start, end = layer.offset, layer.offset + layer.param_size
            scale, shift = np.split(params[start:end], 2)
            weights[layer.name] = [gamma + scale, beta + shift]
        elif layer.weights:
            weights[layer.name] = layer.get_weights()
    return weights

