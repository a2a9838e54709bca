"""Adagrad2 against Adagrad written out in NumPy; MetaAdam against Adam."""
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_style.optimizers import Adagrad2, MetaAdam, adagrad2_for, meta_adam_for

LR, ACC0, EPS = 0.1, 0.1, 1e-7  # Keras Adagrad's initial accumulator and epsilon


def numpy_adagrad(value, grads):
    """Keras 3's Adagrad: accumulate g^2 onto 0.1, step lr * g / sqrt(acc + eps)."""
    value, acc = value.copy(), np.full_like(value, ACC0)
    for g in grads:
        acc += g * g
        value -= LR * g / np.sqrt(acc + EPS)
    return value


def clip_norm(g, limit):
    norm = np.sqrt(np.sum(g * g))
    return g * limit / max(norm, limit)


def variables():
    meta = keras.Variable(np.array([[1.0, -2.0], [0.5, 3.0]], "float32"), name="metanet_w")
    other = keras.Variable(np.array([1.0, 2.0, -1.0], "float32"), name="stem_w")
    return meta, other


GRADS = [np.array([[3.0, -4.0], [0.0, 12.0]], "float32"), np.array([5.0, -0.5, -7.0], "float32")]


def test_each_group_gets_its_own_clip():
    meta, other = variables()
    start = [meta.numpy(), other.numpy()]
    opt = Adagrad2(learning_rate=LR, norm_val=["metanet_"], clipnorm=6.5, clipvalue=2.0, clipvalue2=1.0)
    opt.apply(GRADS, [meta, other])
    # MetaNet group: norm 13 -> scaled to 6.5, then elementwise to [-2, 2]; the rest: to [-1, 1].
    expect_meta = numpy_adagrad(start[0], [np.clip(clip_norm(GRADS[0], 6.5), -2.0, 2.0)])
    expect_other = numpy_adagrad(start[1], [np.clip(GRADS[1], -1.0, 1.0)])
    np.testing.assert_allclose(meta.numpy(), expect_meta, rtol=1e-6)
    np.testing.assert_allclose(other.numpy(), expect_other, rtol=1e-6)


def test_no_biting_clip_is_plain_adagrad():
    meta, other = variables()
    twin_meta, twin_other = variables()
    opt = Adagrad2(learning_rate=LR, norm_val=[meta], clipnorm=100.0, clipvalue=50.0, clipvalue2=50.0)
    plain = keras.optimizers.Adagrad(learning_rate=LR)
    for step in range(3):
        grads = [g * (step + 1) for g in GRADS]
        opt.apply(grads, [meta, other])
        plain.apply(grads, [twin_meta, twin_other])
    np.testing.assert_allclose(meta.numpy(), twin_meta.numpy(), rtol=1e-6)
    np.testing.assert_allclose(other.numpy(), twin_other.numpy(), rtol=1e-6)
    assert opt.norm_val == ["metanet_w"]  # variables are kept as their paths


def test_works_inside_tf_function_on_a_model():
    keras.utils.set_random_seed(1)  # gradients large enough for every clip to bite
    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(3, name="metanet_fc")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))
    names = [v.path for v in model.get_layer("metanet_fc").trainable_variables]
    opt = Adagrad2(learning_rate=LR, norm_val=names, clipnorm=0.5, clipvalue=0.2, clipvalue2=0.3)
    start = [v.numpy() for v in model.trainable_variables]
    x = tf.constant([[1.0, 2.0], [-3.0, 0.5]])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return grads

    history = [[g.numpy() for g in step()] for _ in range(2)]
    for i, v in enumerate(model.trainable_variables):
        in_group = v.path.startswith("metanet_fc/")
        assert opt.in_norm_group(v) == in_group
        clip = ((lambda g: np.clip(clip_norm(g, 0.5), -0.2, 0.2)) if in_group
                else (lambda g: np.clip(g, -0.3, 0.3)))
        expected = numpy_adagrad(start[i], [clip(h[i]) for h in history])
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_group_learning_rate_scale():
    """Each group steps like its own optimiser at its own rate (Adagrad2 with no clip biting, and
    MetaAdam), eagerly and inside a tf.function."""
    for make, plain in ((lambda scale: Adagrad2(LR, ["metanet_"], clipvalue2=None, norm_learning_rate_scale=scale),
                         keras.optimizers.Adagrad),
                        (lambda scale: MetaAdam(LR, ["metanet_"], norm_learning_rate_scale=scale),
                         keras.optimizers.Adam)):
        for compiled in (False, True):
            meta, other = variables()
            twin_meta, twin_other = variables()
            opt, slow, fast = make(0.25), plain(learning_rate=LR * 0.25), plain(learning_rate=LR)
            opt.build([meta, other])
            apply = (lambda grads: opt.apply(grads, [meta, other]))
            apply = tf.function(apply) if compiled else apply
            for step in range(3):
                grads = [g * (step + 1) for g in GRADS]
                apply(grads)
                slow.apply(grads[:1], [twin_meta])
                fast.apply(grads[1:], [twin_other])
            np.testing.assert_allclose(meta.numpy(), twin_meta.numpy(), rtol=1e-6)
            np.testing.assert_allclose(other.numpy(), twin_other.numpy(), rtol=1e-6)


def test_config_round_trip():
    for opt in (Adagrad2(learning_rate=0.01, norm_val=["metanet_a/kernel", "metanet_b"], clipnorm=2.0,
                         clipvalue=5.0, clipvalue2=3.0, norm_learning_rate_scale=0.5, name="ada2"),
                MetaAdam(learning_rate=0.01, norm_val=["metanet_a/kernel"], norm_learning_rate_scale=0.1)):
        config = opt.get_config()
        assert config["norm_val"] == list(opt.norm_val)
        clone = opt.__class__.from_config(config)
        assert clone.get_config() == config
        restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        assert isinstance(restored, opt.__class__) and restored.get_config() == config


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="global_clipnorm"):
        Adagrad2(global_clipnorm=1.0)
    with pytest.raises(ValueError, match="gradient_accumulation"):
        Adagrad2(gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="norm_learning_rate_scale"):
        MetaAdam(norm_learning_rate_scale=0.0)


def test_adagrad2_for_a_task():
    task = SimpleNamespace(metanet_variable_names=lambda: ("metanet_x/kernel", "metanet_x/bias"))
    config = SimpleNamespace(learning_rate=3e-4, metanet_learning_rate_scale=0.1)
    opt = adagrad2_for(config, task)
    assert opt.norm_val == ["metanet_x/kernel", "metanet_x/bias"]
    assert float(opt.learning_rate) == pytest.approx(3e-4)
    assert (opt.clipnorm, opt.clipvalue, opt.clipvalue2) == (2.0, 5.0, 2.0)
    assert opt.norm_learning_rate_scale == 0.1
    adam = meta_adam_for(config, task)
    assert isinstance(adam, MetaAdam) and adam.norm_val == opt.norm_val and adam.norm_learning_rate_scale == 0.1
