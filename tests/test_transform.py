import numpy as np
import tensorflow as tf

from keras_style.transform import build_transform_net, widened


def _randomised(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.5, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _widened_copy(narrow, base, width, blocks):
    wide = build_transform_net(base, blocks, width)
    for layer in wide.layers:
        if layer.weights:
            layer.set_weights(widened(layer.get_weights(), narrow.get_layer(layer.name).get_weights()))
    return wide


def test_a_widened_network_computes_what_the_narrow_one_did():
    narrow = _randomised(build_transform_net(4, 2, 8), seed=0)
    wide = _widened_copy(narrow, base=6, width=12, blocks=2)
    photo = np.random.default_rng(1).uniform(0, 255, (2, 20, 28, 3)).astype(np.float32)
    assert wide.count_params() > narrow.count_params()
    np.testing.assert_allclose(wide(photo), narrow(photo), rtol=1e-5, atol=1e-3)


def test_the_new_channels_compute_and_their_zero_weights_learn():
    narrow = _randomised(build_transform_net(4, 1, 8), seed=2)
    wide = _widened_copy(narrow, base=6, width=12, blocks=1)
    photo = tf.constant(np.random.default_rng(3).uniform(0, 255, (1, 16, 16, 3)), tf.float32)
    out_kernel = wide.get_layer("out_conv").kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(wide(photo) - 100.0))
    gradient = tape.gradient(loss, out_kernel).numpy()
    assert np.all(out_kernel.numpy()[:, :, 4:, :] == 0)
    assert np.abs(gradient[:, :, 4:, :]).max() > 0  # the new base channels reach the output next step


def test_widened_keeps_same_shaped_weights_as_they_are():
    weights = [np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3), np.ones(3, np.float32)]
    for kept, given in zip(widened([np.zeros_like(w) for w in weights], weights), weights):
        np.testing.assert_array_equal(kept, given)
