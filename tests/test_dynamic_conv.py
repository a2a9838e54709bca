"""DynamicConv2D and StyleConv2D against keras.layers.Conv2D holding the same kernel and bias."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_style.layers import DynamicConv2D, StyleConv2D

OFFSET, TAIL = 5, 3  # unrelated columns before and after the layer's slice
IN, FILTERS, K = 3, 4, 3


def random_weights(rng, count):
    kernels = rng.normal(size=(count, K, K, IN, FILTERS)).astype("float32")
    biases = rng.normal(size=(count, FILTERS)).astype("float32")
    return kernels, biases


def pack(kernels, biases, rng):
    count = len(kernels)
    return np.concatenate([rng.normal(size=(count, OFFSET)), kernels.reshape(count, -1), biases,
                           rng.normal(size=(count, TAIL))], axis=1).astype("float32")


def conv2d(kernel, bias, strides):
    layer = keras.layers.Conv2D(FILTERS, K, strides=strides)
    layer.build((None, None, None, IN))
    layer.set_weights([kernel, bias])
    return layer


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("strides", [1, 2])
def test_one_params_row_is_an_ordinary_convolution(rng, strides):
    x = rng.normal(size=(3, 9, 8, IN)).astype("float32")
    kernels, biases = random_weights(rng, 1)
    params = pack(kernels, biases, rng)
    expected = conv2d(kernels[0], biases[0], strides)(x)
    layer = DynamicConv2D(FILTERS, K, strides=strides, offset=OFFSET)
    np.testing.assert_allclose(layer([x, params]), expected, rtol=1e-5, atol=1e-5)
    # The same row repeated for every image (runtime check) gives the same result.
    np.testing.assert_allclose(layer([x, np.repeat(params, 3, axis=0)]), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides", [1, 2])
def test_each_image_gets_its_own_kernel(rng, strides):
    x = rng.normal(size=(3, 9, 8, IN)).astype("float32")
    kernels, biases = random_weights(rng, 3)
    params = pack(kernels, biases, rng)
    layer = DynamicConv2D(FILTERS, K, strides=strides, offset=OFFSET)
    expected = [conv2d(kernels[i], biases[i], strides)(x[i:i + 1])[0] for i in range(3)]
    compiled = tf.function(lambda a, p: layer([a, p]))
    for got in (layer([x, params]), compiled(x, params)):
        np.testing.assert_allclose(got, np.stack(expected), rtol=1e-5, atol=1e-5)


def test_demodulate_divides_each_filter_by_its_norm(rng):
    """Each image's kernel, filter by filter, at unit L2 norm: the result is the ordinary convolution
    with that kernel, and scaling the generated kernel changes nothing."""
    x = rng.normal(size=(2, 8, 7, IN)).astype("float32")
    kernels, biases = random_weights(rng, 2)
    kernels[1] *= 1e-4  # the MetaNet's scale
    layer = DynamicConv2D(FILTERS, K, offset=OFFSET, demodulate=True)
    got = np.asarray(layer([x, pack(kernels, biases, rng)]))
    for i in range(2):
        unit = kernels[i] / np.sqrt((kernels[i] ** 2).sum(axis=(0, 1, 2)))
        np.testing.assert_allclose(got[i], conv2d(unit, biases[i], 1)(x[i:i + 1])[0], rtol=1e-4, atol=1e-4)
    scaled = np.asarray(layer([x, pack(kernels * 30.0, biases, rng)]))
    np.testing.assert_allclose(scaled, got, rtol=1e-4, atol=1e-4)
    plain = np.asarray(DynamicConv2D(FILTERS, K, offset=OFFSET)([x, pack(kernels, biases, rng)]))
    assert np.abs(plain - got).max() > 1.0


def test_gradients_match_per_image_reference(rng):
    x = tf.constant(rng.normal(size=(2, 6, 6, IN)).astype("float32"))
    kernels, biases = random_weights(rng, 2)
    params = tf.constant(pack(kernels, biases, rng))
    layer = DynamicConv2D(FILTERS, K, offset=OFFSET)

    def reference(x, params):
        block = params[:, OFFSET:OFFSET + K * K * IN * FILTERS + FILTERS]
        ks = tf.reshape(block[:, :-FILTERS], (2, K, K, IN, FILTERS))
        return tf.concat([tf.nn.conv2d(x[i:i + 1], ks[i], 1, "VALID") + block[i, -FILTERS:]
                          for i in range(2)], axis=0)

    def grads(fn, x, params):
        with tf.GradientTape() as tape:
            tape.watch([x, params])
            loss = tf.reduce_sum(tf.sin(fn(x, params)))
        return tape.gradient(loss, [x, params])

    got = tf.function(lambda a, p: grads(lambda a, p: layer([a, p]), a, p))(x, params)
    want = grads(reference, x, params)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_mixed_bfloat16_computes_in_bfloat16(rng):
    x = rng.normal(size=(2, 7, 7, IN)).astype("float32")
    kernels, biases = random_weights(rng, 2)
    params = pack(kernels * 0.2, biases, rng)
    exact = DynamicConv2D(FILTERS, K, offset=OFFSET)([x, params])
    layer = DynamicConv2D(FILTERS, K, offset=OFFSET, dtype="mixed_bfloat16")
    y = layer([x, params])
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    np.testing.assert_allclose(np.asarray(keras.ops.cast(y, "float32")), exact, rtol=0.05, atol=0.05)


def test_shapes_and_too_short_params():
    x = keras.Input((None, None, IN))
    params = keras.Input((OFFSET + 20,))
    y = DynamicConv2D(FILTERS, 1, offset=OFFSET)([x, params])  # 1*1*3*4 + 4 = 16 columns
    assert y.shape == (None, None, None, FILTERS)
    assert DynamicConv2D(2, 3, strides=2).compute_output_shape([(None, 9, 8, IN), (None, 99)]) == \
        (None, 4, 3, 2)
    with pytest.raises(ValueError, match="needs parameter columns"):
        DynamicConv2D(FILTERS, 3, offset=OFFSET)([x, params])


def test_config_and_keras_file_round_trip(rng, tmp_path):
    layer = DynamicConv2D(FILTERS, K, strides=2, offset=OFFSET, name="dyn")
    clone = DynamicConv2D.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.strides, clone.offset, clone.name) == \
        (FILTERS, K, 2, OFFSET, "dyn")
    assert not clone.demodulate and DynamicConv2D.from_config(
        DynamicConv2D(FILTERS, K, demodulate=True).get_config()).demodulate
    kernels, biases = random_weights(rng, 2)
    params = pack(kernels, biases, rng)
    x_in = keras.Input((None, None, IN))
    p_in = keras.Input((params.shape[1],))
    model = keras.Model([x_in, p_in], layer([x_in, p_in]))
    model.save(tmp_path / "dyn.keras")
    loaded = keras.saving.load_model(tmp_path / "dyn.keras")
    x = rng.normal(size=(2, 9, 9, IN)).astype("float32")
    np.testing.assert_allclose(loaded([x, params]), model([x, params]), rtol=1e-6, atol=1e-6)
    assert loaded.get_layer("dyn").param_size == K * K * IN * FILTERS + FILTERS


@pytest.mark.parametrize("strides", [1, 2])
def test_style_conv_adds_each_images_change_to_its_own_weights(rng, strides):
    x = rng.normal(size=(3, 9, 8, IN)).astype("float32")
    changes, bias_changes = random_weights(rng, 3)
    own_kernel, own_bias = random_weights(rng, 1)
    layer = StyleConv2D(FILTERS, K, strides=strides, offset=OFFSET)
    params = pack(changes, bias_changes, rng)
    layer([x, params])
    layer.set_weights([own_kernel[0], own_bias[0]])
    expected = [conv2d(own_kernel[0] + changes[i], own_bias[0] + bias_changes[i], strides)(x[i:i + 1])[0]
                for i in range(3)]
    np.testing.assert_allclose(layer([x, params]), np.stack(expected), rtol=1e-5, atol=1e-5)
    no_change = pack(0 * changes[:1], 0 * bias_changes[:1], rng)
    np.testing.assert_allclose(layer([x, no_change]), conv2d(own_kernel[0], own_bias[0], strides)(x),
                               rtol=1e-5, atol=1e-5)
    assert layer.param_parts == (("kernel_change", (K, K, IN, FILTERS)), ("bias_change", (FILTERS,)))


def test_style_conv_survives_a_keras_file(rng, tmp_path):
    x_in, p_in = keras.Input((None, None, IN)), keras.Input((OFFSET + K * K * IN * FILTERS + FILTERS,))
    model = keras.Model([x_in, p_in], StyleConv2D(FILTERS, K, offset=OFFSET, name="style_conv")([x_in, p_in]))
    x = rng.normal(size=(2, 7, 6, IN)).astype("float32")
    params = pack(*random_weights(rng, 2), rng)[:, :p_in.shape[1]]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.get_layer("style_conv")) is StyleConv2D
    np.testing.assert_array_equal(loaded([x, params]), model([x, params]))
