"""The custom layers against NumPy, and their save/load round trip."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_style.layers import (PALETTE_DIRECTIONS, PALETTE_SIZE, ColourMatch, CropLike, DynamicConv2D,
                                InstanceNormalization, KeepPalette, spatial_moments, Palette, PadToMultiple, ReflectionPad2D, SpaceToDepthConv2D,
                                Standardize, StyleInstanceNormalization, SymmetricPad2D, UpsampledConv2D,
                                UpsampledDynamicConv2D, UpSamplingLater, VGGPreprocess, upsampled_conv,
                                upsampling_later)


def images(shape, seed=0, scale=10.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def run(layer, x):
    return ops.convert_to_numpy(layer(x))


@pytest.fixture
def bfloat16_policy():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("padding", [1, 2, 4])
def test_reflection_pad_matches_numpy(padding):
    x = images((2, 5, 6, 3))
    expected = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)], mode="reflect")
    out = run(ReflectionPad2D(padding), x)
    np.testing.assert_array_equal(out, expected)
    assert ReflectionPad2D(padding).compute_output_shape((2, 5, None, 3)) == (
        2, 5 + 2 * padding, None, 3)


def np_instance_norm(x, gamma, beta, epsilon=1e-5):
    x = x.astype(np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def test_instance_norm_matches_numpy_per_image_per_channel():
    # Channels and images on very different scales: statistics must not be shared.
    x = images((2, 4, 5, 3)) * np.array([1.0, 100.0, 0.01], np.float32) + np.array([0, 50, -3],
                                                                                     np.float32)
    x[1] *= 7.0
    layer = InstanceNormalization()
    layer.build(x.shape)
    gamma, beta = np.array([0.5, 2.0, -1.0], np.float32), np.array([1.0, -2.0, 0.25], np.float32)
    layer.set_weights([gamma, beta])
    np.testing.assert_allclose(run(layer, x), np_instance_norm(x, gamma, beta), rtol=1e-4, atol=1e-4)


def test_style_instance_norm_adds_each_images_columns_to_its_scale_and_shift():
    x = images((2, 5, 4, 3), seed=4)
    params = np.random.default_rng(1).normal(0, 1, (2, 10)).astype(np.float32)
    layer = StyleInstanceNormalization(epsilon=1e-3, offset=2)
    out = ops.convert_to_numpy(layer([x, params]))
    gamma, beta = np.array([0.5, 2.0, -1.0], np.float32), np.array([1.0, -2.0, 0.25], np.float32)
    layer.set_weights([gamma, beta])
    out = ops.convert_to_numpy(layer([x, params]))
    for i in range(2):
        scale, shift = gamma + params[i, 2:5], beta + params[i, 5:8]
        np.testing.assert_allclose(out[i], np_instance_norm(x[i:i + 1], scale, shift, 1e-3)[0], rtol=1e-4, atol=1e-4)
    one_row = ops.convert_to_numpy(layer([x, params[:1]]))  # one style for the whole batch
    np.testing.assert_allclose(one_row[1], np_instance_norm(x[1:], gamma + params[0, 2:5], beta + params[0, 5:8],
                                                            1e-3)[0], rtol=1e-4, atol=1e-4)
    assert layer.param_parts == (("scale", (3,)), ("shift", (3,))) and layer.param_size == 6
    with pytest.raises(ValueError, match=r"needs parameter columns \[2, 8\) but the vector has 7"):
        StyleInstanceNormalization(offset=2)([x, params[:, :7]])


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
def test_colour_match_takes_the_paintings_means_and_moves_the_spreads_that_far(strength):
    x = images((2, 6, 5, 3), seed=8, scale=60.0) + 100
    painting = np.array([[10, 1, 1, 0, 120, 200, 80, 20, 5, 40], [10, 1, 1, 0, 30, 90, 250, 1, 60, 3]], np.float32)
    layer = ColourMatch(strength, offset=4)
    out = ops.convert_to_numpy(layer([x, painting]))
    for i in range(2):
        mean, std = x[i].mean(axis=(0, 1)), np.sqrt(x[i].var(axis=(0, 1)) + 1.0)  # epsilon 1 (in levels squared)
        want = painting[i, 4:7] + (x[i] - mean) * ((1 - strength) + strength * painting[i, 7:10] / std)
        np.testing.assert_allclose(out[i], want, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(out[i].mean(axis=(0, 1)), painting[i, 4:7], atol=1e-3)
    assert layer.param_parts == (("mean", (3,)), ("std", (3,))) and not layer.weights
    with pytest.raises(ValueError, match=r"needs parameter columns \[4, 10\) but the vector has 9"):
        ColourMatch(strength, offset=4)([x, painting[:, :9]])


def test_spatial_moments_stay_exact_over_a_whole_photo():
    """The mean and variance of a 2048x1536 picture in float32, as float64 computes them: one long
    float32 sum drifts (0.8 of 255 off on a real result), which a colour match would add to every pixel."""
    ramp = np.linspace(50, 250, 1536)[None, :, None, None]  # like a sky, light to dark (ops.moments: 0.02 off)
    x = (ramp + np.random.default_rng(3).uniform(0, 20, (1, 1536, 2048, 3))).astype(np.float32)
    mean, variance = (ops.convert_to_numpy(m)[0, 0, 0] for m in spatial_moments(ops.convert_to_tensor(x)))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 1, 2)), atol=1e-3)
    np.testing.assert_allclose(variance, x64.var(axis=(0, 1, 2)), rtol=1e-5)


def np_palette(image):
    projected = image.reshape(-1, 3) @ PALETTE_DIRECTIONS
    return np.concatenate([image.reshape(-1, 3).mean(0), projected.min(0), projected.max(0)])


def np_keep_palette(x, photo, painting):
    """Each pixel outside the planes of both palettes' wider bounds, moved towards the midpoint of
    their means until the last plane it crossed: by bisection on the fraction of its offset kept."""
    own = np_palette(photo)
    count = PALETTE_DIRECTIONS.shape[1]
    lower = np.minimum(own[3:3 + count], painting[3:3 + count])
    upper = np.maximum(own[3 + count:], painting[3 + count:])
    centre = (own[:3] + painting[:3]) / 2

    def inside(pixel):
        projected = pixel @ PALETTE_DIRECTIONS
        return np.all((projected >= lower - 1e-3) & (projected <= upper + 1e-3))

    out = x.reshape(-1, 3).astype(np.float64).copy()
    for i, pixel in enumerate(out):
        if inside(pixel):
            continue
        low, high = 0.0, 1.0
        for _ in range(40):
            low, high = ((low + high) / 2, high) if inside(centre + (low + high) / 2 * (pixel - centre)) \
                else (low, (low + high) / 2)
        out[i] = centre + low * (pixel - centre)
    return out.reshape(x.shape)


def test_keep_palette_draws_colours_outside_both_palettes_back_to_their_border():
    rng = np.random.default_rng(9)
    photo = rng.uniform(60, 140, (2, 7, 6, 3)).astype(np.float32)
    paintings = [rng.uniform(0, 255, (9, 8, 3)) * [1.0, 0.3, 0.2], rng.uniform(100, 110, (9, 8, 3))]
    painting = np.stack([np_palette(p) for p in paintings]).astype(np.float32)
    x = rng.uniform(-40, 300, (2, 8, 8, 3)).astype(np.float32)
    x[:, :2] = photo[:, :2, :6].mean() + 0 * x[:, :2]  # some pixels inside: left as they are
    params = np.concatenate([np.zeros((2, 5), np.float32), painting], axis=1)
    layer = KeepPalette(offset=5)
    out = ops.convert_to_numpy(layer([x, photo, params]))
    for i in range(2):
        want = np_keep_palette(x[i], photo[i], painting[i])
        np.testing.assert_allclose(out[i], want, atol=1e-2)
    np.testing.assert_array_equal(out[:, :2], x[:, :2])
    assert np.abs(out - x).max() > 50  # most of x lies far outside
    np.testing.assert_allclose(ops.convert_to_numpy(Palette()(photo)), np.stack([np_palette(p) for p in photo]),
                               rtol=1e-5, atol=1e-3)
    assert layer.param_size == PALETTE_SIZE == 29 and not layer.weights
    with pytest.raises(ValueError, match=r"needs parameter columns \[5, 34\) but the vector has 33"):
        KeepPalette(offset=5)([x, photo, params[:, :33]])


def test_keep_palette_is_differentiable_and_finite_on_flat_colours():
    photo = np.full((1, 5, 5, 3), 128.0, np.float32)
    painting = np_palette(np.full((4, 4, 3), 128.0))[None].astype(np.float32)  # one colour in both
    x = tf.Variable(np.random.default_rng(1).uniform(0, 255, (1, 5, 5, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        out = KeepPalette()([x, photo, painting])
        loss = tf.reduce_sum(tf.square(out - 100.0))
    np.testing.assert_allclose(ops.convert_to_numpy(out), 128.0, atol=1e-3)  # the only colour there is
    assert np.isfinite(ops.convert_to_numpy(tape.gradient(loss, x))).all()


def test_style_norm_without_normalising_only_scales_and_shifts():
    """After a demodulated convolution: each image's own scale and shift, no statistics."""
    x = images((2, 5, 4, 3), seed=6)
    params = np.random.default_rng(3).normal(0, 1, (2, 8)).astype(np.float32)
    layer = StyleInstanceNormalization(offset=1, normalise=False)
    layer([x, params])
    gamma, beta = np.array([0.5, 2.0, -1.0], np.float32), np.array([1.0, -2.0, 0.25], np.float32)
    layer.set_weights([gamma, beta])
    out = ops.convert_to_numpy(layer([x, params]))
    for i in range(2):
        want = x[i] * (gamma + params[i, 1:4]) + beta + params[i, 4:7]
        np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-5)


def test_instance_norm_default_weights_give_zero_mean_unit_std():
    out = run(InstanceNormalization(), images((2, 6, 6, 4), scale=30.0))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, rtol=1e-3)


def test_instance_norm_under_mixed_bfloat16(bfloat16_policy):
    x = images((2, 16, 16, 3), scale=50.0) + 200.0  # large offset: bfloat16 stats would be poor
    layer = InstanceNormalization()
    assert layer.compute_dtype == "bfloat16"
    layer.build(x.shape)
    gamma, beta = np.array([0.5, 2.0, -1.0], np.float32), np.array([1.0, -2.0, 0.25], np.float32)
    layer.set_weights([gamma, beta])
    out = layer(ops.cast(x, "bfloat16"))
    assert out.dtype == "bfloat16"
    x_bf16 = ops.convert_to_numpy(ops.cast(ops.cast(x, "bfloat16"), "float32"))
    expected = np_instance_norm(x_bf16, gamma, beta)
    # bfloat16 has 8 bits of mantissa: ~0.4% relative, on outputs of magnitude up to ~6.
    np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(out, "float32")), expected,
                               rtol=1e-2, atol=3e-2)


@pytest.mark.parametrize("multiple, height, width", [(4, 5, 6), (4, 8, 4), (8, 5, 9), (4, 2, 3), (2, 1, 1)])
def test_pad_to_multiple_matches_numpy_symmetric(multiple, height, width):
    x = images((2, height, width, 3))
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    expected = np.pad(x, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)], mode="symmetric")
    out = run(PadToMultiple(multiple), x)
    assert out.shape[1] % multiple == 0 and out.shape[2] % multiple == 0
    np.testing.assert_array_equal(out, expected)
    assert PadToMultiple(multiple).compute_output_shape((None, height, None, 3))[1] == height + pad_h


@pytest.mark.parametrize("shape, multiple", [((1, 1, 3, 3), 4), ((1, 2, 1, 3), 4), ((2, 1, 2, 1), 8),
                                             ((1, 3, 5, 2), 16)])
def test_pad_to_multiple_side_shorter_than_padding(shape, multiple):
    x = images(shape)
    pads = [(0, 0), (0, -shape[1] % multiple), (0, -shape[2] % multiple), (0, 0)]
    np.testing.assert_array_equal(run(PadToMultiple(multiple), x), np.pad(x, pads, mode="symmetric"))


def test_crop_like_undoes_pad_to_multiple():
    x = images((2, 5, 7, 3))
    padded = run(PadToMultiple(4), x)
    assert padded.shape == (2, 8, 8, 3)
    out = run(CropLike(), [padded, x])
    np.testing.assert_array_equal(out, x)
    # Cropping keeps the top-left corner of a differently-channelled tensor.
    big = images((1, 6, 6, 8), seed=1)
    np.testing.assert_array_equal(run(CropLike(), [big, x[:1]]), big[:, :5, :6, :])


def test_vgg_preprocess_rgb_to_bgr_minus_means():
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    expected = x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_allclose(run(VGGPreprocess(), x), expected, rtol=1e-6, atol=1e-4)
    # A pure red pixel lands in the last (R) channel after the flip.
    red = np.zeros((1, 1, 1, 3), np.float32)
    red[..., 0] = 255.0
    np.testing.assert_allclose(run(VGGPreprocess(), red)[0, 0, 0], [-103.939, -116.779, 131.32],
                               atol=1e-3)


def test_standardize_is_the_identity_until_set_then_matches_numpy():
    x = images((4, 3), seed=5, scale=100.0)
    layer = Standardize()
    np.testing.assert_array_equal(run(layer, x), x)
    mean, std = np.array([10.0, -5.0, 300.0], np.float32), np.array([2.0, 0.5, 40.0], np.float32)
    layer.set_weights([mean, std])
    np.testing.assert_allclose(run(layer, x), (x - mean) / std, rtol=1e-6)


def test_standardize_stays_float32_under_mixed_bfloat16(bfloat16_policy):
    # 1000.5 - 1000 in bfloat16 would be 0 (8 significant bits)
    layer = Standardize()
    layer.build((None, 1))
    layer.set_weights([np.array([1000.0], np.float32), np.array([0.25], np.float32)])
    out = layer(np.array([[1000.5]], np.float32))
    assert layer.compute_dtype == "float32" and out.dtype == "float32"
    np.testing.assert_allclose(ops.convert_to_numpy(out), [[2.0]])


def np_valid_conv(x, kernel, bias):
    """A stride-1 'valid' convolution, one kernel tap at a time, in float64."""
    kh, kw = kernel.shape[:2]
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros(x.shape[:1] + (out_h, out_w, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cf->bhwf", x[:, i:i + out_h, j:j + out_w].astype(np.float64), kernel[i, j])
    return out + bias


@pytest.mark.parametrize("height, width, channels, filters, kernel_size, block, picked", [
    (9, 9, 3, 8, 9, None, 4),      # one output pixel
    (10, 13, 3, 8, 9, None, 4),    # outputs not a multiple of the block
    (23, 17, 8, 3, 9, None, 4),
    (30, 31, 16, 3, 9, None, 2),
    (21, 18, 3, 16, 9, None, 2),
    (14, 20, 3, 32, 9, None, 1),   # the plain convolution
    (12, 11, 3, 5, 3, 4, 4),       # a kernel smaller than the block
    (16, 19, 4, 6, 5, 3, 3),
])
def test_space_to_depth_conv_matches_numpy(height, width, channels, filters, kernel_size, block, picked):
    rng = np.random.default_rng(kernel_size + filters)
    x = images((2, height, width, channels), seed=filters)
    kernel = rng.normal(size=(kernel_size, kernel_size, channels, filters)).astype(np.float32)
    bias = rng.normal(size=filters).astype(np.float32)
    layer = SpaceToDepthConv2D(filters, kernel_size, activation="relu", block=block)
    layer.build(x.shape)
    layer.set_weights([kernel, bias])
    assert layer.block_size == picked
    expected = np.maximum(np_valid_conv(x, kernel, bias), 0)
    np.testing.assert_allclose(run(layer, x), expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())
    compiled = tf.function(lambda batch: layer(batch),
                           input_signature=[tf.TensorSpec((None, None, None, channels))])
    # (Compiled and eager may sum in another order: on AVX-512 CPUs a few outputs differ by 1e-5 relative.)
    np.testing.assert_allclose(compiled(x).numpy(), run(layer, x), rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("options", [{"strides": 2}, {"padding": "same"}, {"dilation_rate": 2}])
def test_space_to_depth_conv_takes_only_plain_convolutions(options):
    with pytest.raises(ValueError, match="only stride-1"):
        SpaceToDepthConv2D(4, 9, **options)


def _model_and_input(name):
    x = images((2, 6, 5, 3), seed=3)
    inp = keras.Input((None, None, 3))
    if name == "ReflectionPad2D":
        layer = ReflectionPad2D(2, name="layer")
        out = layer(inp)
    elif name == "InstanceNormalization":
        layer = InstanceNormalization(epsilon=1e-3, name="layer")
        out = layer(inp)
        layer.set_weights([np.array([0.5, 2.0, -1.0], np.float32), np.array([1.0, -2.0, 0.25],
                                                                           np.float32)])
    elif name == "StyleInstanceNormalization":
        params = keras.Input((8,))
        layer = StyleInstanceNormalization(epsilon=1e-3, offset=1, name="layer")
        out = layer([inp, params])
        layer.set_weights([np.array([0.5, 2.0, -1.0], np.float32), np.array([1.0, -2.0, 0.25], np.float32)])
        rows = np.random.default_rng(0).normal(0, 1, (2, 8)).astype(np.float32)
        return keras.Model([inp, params], out), layer, [x, rows]
    elif name == "ColourMatch":
        params = keras.Input((7,))
        layer = ColourMatch(0.5, offset=1, name="layer")
        out = layer([inp, params])
        rows = np.abs(np.random.default_rng(0).normal(50, 20, (2, 7))).astype(np.float32)
        return keras.Model([inp, params], out), layer, [x, rows]
    elif name == "KeepPalette":
        params = keras.Input((PALETTE_SIZE + 1,))
        layer = KeepPalette(offset=1, name="layer")
        out = layer([inp * 300.0 - 20.0, inp * 100.0 + 50.0, params])
        rows = np.concatenate([np.zeros((2, 1)), [np_palette(np.full((2, 2, 3), v)) for v in (30.0, 200.0)]], 1)
        return keras.Model([inp, params], out), layer, [x, rows.astype(np.float32)]
    elif name == "PadToMultiple":
        layer = PadToMultiple(4, name="layer")
        out = layer(inp)
    elif name == "Standardize":
        layer = Standardize(name="layer")
        out = layer(inp)
        layer.set_weights([np.array([1.0, -2.0, 3.0], np.float32), np.array([0.5, 2.0, 4.0], np.float32)])
    elif name == "SpaceToDepthConv2D":
        layer = SpaceToDepthConv2D(4, 3, block=2, name="layer")
        out = layer(inp)
    elif name == "CropLike":
        layer = CropLike(name="layer")
        out = layer([PadToMultiple(4)(inp), inp])
    else:
        layer = VGGPreprocess(name="layer")
        out = layer(inp)
    return keras.Model(inp, out), layer, x


@pytest.mark.parametrize("name", ["ReflectionPad2D", "InstanceNormalization", "StyleInstanceNormalization",
                                  "ColourMatch", "KeepPalette", "PadToMultiple", "SpaceToDepthConv2D",
                                  "CropLike", "VGGPreprocess", "Standardize"])
def test_layer_survives_keras_save_and_load(tmp_path, name):
    model, layer, x = _model_and_input(name)
    before = ops.convert_to_numpy(model(x))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    loaded_layer = loaded.get_layer("layer")
    assert type(loaded_layer) is type(layer)
    assert loaded_layer.get_config() == layer.get_config()
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), before)


@pytest.mark.parametrize("height, width, channels, filters", [(1, 1, 2, 3), (2, 5, 3, 4), (7, 4, 8, 16)])
def test_upsampled_conv_is_the_convolution_of_the_upsampled_reflection_padded_image(height, width, channels,
                                                                                    filters):
    x = images((2, height, width, channels), seed=height)
    kernel = np.random.default_rng(width).normal(size=(3, 3, channels, filters)).astype(np.float32)
    upsampled = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    padded = np.pad(upsampled, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    expected = np_valid_conv(padded, kernel, np.zeros(filters))
    got = ops.convert_to_numpy(upsampled_conv(run(SymmetricPad2D(1), x), kernel))
    assert got.shape == expected.shape == (2, 2 * height, 2 * width, filters)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _chain(x, params, classes, conv_options):
    """Upsampling, pad and 3x3 convolution of the given classes on a symbolic `x` (and `params`)."""
    up, pad, conv = classes
    y = pad(1, name="pad")(up(2, name="up")(x))
    layer = conv(**conv_options, name="conv")
    return layer(y) if params is None else layer([y, params])


@pytest.mark.parametrize("original, swapped, options", [
    (keras.layers.Conv2D, UpsampledConv2D, dict(filters=5, kernel_size=3)),
    (DynamicConv2D, UpsampledDynamicConv2D, dict(filters=5, kernel_size=3, offset=2)),
])
def test_the_upsampling_chain_computed_at_low_resolution_gives_the_same_result(original, swapped, options):
    x = keras.Input((None, None, 4))
    dynamic = original is DynamicConv2D
    params = keras.Input((2 + 3 * 3 * 4 * 5 + 5,)) if dynamic else None
    inputs = [x, params] if dynamic else x
    plain = keras.Model(inputs, _chain(x, params, (keras.layers.UpSampling2D, ReflectionPad2D, original), options))
    assert [swap for _, swap in upsampling_later(*map(plain.get_layer, ("up", "pad", "conv")))] == [UpSamplingLater, SymmetricPad2D, swapped]
    fast = keras.Model(inputs, _chain(x, params, (UpSamplingLater, SymmetricPad2D, swapped), options))
    fast.set_weights(plain.get_weights())
    batch = [images((1, 6, 9, 4), seed=5)]
    if dynamic:
        batch.append(np.random.default_rng(6).normal(0, 0.3, (1, params.shape[-1])).astype(np.float32))
    want = ops.convert_to_numpy(plain(batch if dynamic else batch[0]))
    got = ops.convert_to_numpy(fast(batch if dynamic else batch[0]))
    assert fast.outputs[0].shape[1:] == plain.outputs[0].shape[1:]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("channels, filters, picked", [(8, 3, 2), (3, 8, 2), (3, 16, 1)])
def test_space_to_depth_conv_in_bfloat16_picks_its_own_block(channels, filters, picked):
    x = images((1, 20, 23, channels), seed=channels, scale=1.0)
    layer = SpaceToDepthConv2D(filters, 9, dtype="mixed_bfloat16")
    layer.build(x.shape)
    assert layer.block_size == picked
    kernel, bias = (ops.convert_to_numpy(w) for w in layer.weights)
    got = run(layer, x).astype(np.float32)
    expected = np_valid_conv(x, kernel, bias)
    assert np.abs(got - expected).max() < 0.02 * np.abs(expected).max()  # bfloat16 has 8 significant bits


def _xla_nodes(function, *specs):
    """Nodes of `function`'s graph, traced for `specs`, that TensorFlow must compile with XLA."""
    graph = tf.function(function).get_concrete_function(*specs).graph.as_graph_def()
    nodes = list(graph.node) + [node for f in graph.library.function for node in f.node_def]
    return [node.name for node in nodes if "_XlaMustCompile" in node.attr]


def test_the_cpu_convolutions_traced_for_any_image_size_need_no_xla():
    # Keras's TensorFlow conv compiles itself with XLA when it cannot see the input's channel count:
    # the blocked 9x9 convolutions then ran 2-2.7x slower in bfloat16 (AMD EPYC Zen 4).
    blocked = SpaceToDepthConv2D(3, 9, block=4)
    blocked.build((None, None, None, 8))
    upsampled = UpsampledConv2D(4, 3)
    upsampled.build((None, None, None, 8))
    any_size = tf.TensorSpec((1, None, None, 8))
    assert _xla_nodes(blocked, any_size) == []
    assert _xla_nodes(lambda x: upsampled(SymmetricPad2D(1)(x)), any_size) == []


@pytest.mark.parametrize("up, pad, conv", [
    (dict(interpolation="bilinear"), 1, dict(kernel_size=3)),
    (dict(size=3), 1, dict(kernel_size=3)),
    ({}, 2, dict(kernel_size=5)),
    ({}, 1, dict(kernel_size=3, strides=2)),
    ({}, 1, dict(kernel_size=3, dilation_rate=2)),
])
def test_other_upsampling_chains_are_left_as_they_are(up, pad, conv):
    chain = (keras.layers.UpSampling2D(**{"size": 2, **up}), ReflectionPad2D(pad), keras.layers.Conv2D(4, **conv))
    assert upsampling_later(*chain) == []


@pytest.mark.parametrize("layer", [ReflectionPad2D(3), InstanceNormalization(epsilon=0.01),
                                   StyleInstanceNormalization(epsilon=0.1, offset=7),
                                   StyleInstanceNormalization(offset=3, normalise=False),
                                   ColourMatch(0.25, offset=11), KeepPalette(offset=12),
                                   PadToMultiple(8), CropLike(), VGGPreprocess(), Standardize(),
                                   SpaceToDepthConv2D(8, 9, block=4), UpSamplingLater(2), SymmetricPad2D(1),
                                   UpsampledConv2D(4, 3), UpsampledDynamicConv2D(4, 3, offset=5)])
def test_get_config_round_trips(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    for attr in ("padding", "epsilon", "multiple", "offset", "normalise", "block", "strength"):
        if hasattr(layer, attr):
            assert getattr(clone, attr) == getattr(layer, attr)
