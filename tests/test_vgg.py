"""The VGG19 loss network: layer names, weight resolution, truncation, and real-weight features."""
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from keras_style import vgg
from keras_style.errors import UserError

BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


def real_weights_path():
    for candidate in (os.environ.get(vgg.WEIGHTS_ENV), "/work/shared/models/vgg19_notop.h5"):
        if candidate and candidate != vgg.RANDOM and Path(candidate).is_file():
            return candidate
    return None


def photo(height=32, width=40, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype(np.float32)


def numpy_features(outputs):
    return {name: ops.convert_to_numpy(ops.cast(t, "float32")) for name, t in outputs.items()}


# --- layer names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("relu4_2", "block4_conv2"), ("conv4_2", "block4_conv2"), ("block4_conv2", "block4_conv2"),
    ("relu1_1", "block1_conv1"), ("relu2_2", "block2_conv2"), ("conv3_4", "block3_conv4"),
    ("relu5_4", "block5_conv4"), ("block5_conv1", "block5_conv1"),
])
def test_keras_layer_name(name, expected):
    assert vgg.keras_layer_name(name) == expected


@pytest.mark.parametrize("name", ["relu1_3", "relu2_3", "conv6_1", "relu0_1", "block1_conv3",
                                  "block4_conv5", "fc7", "relu4_2 ", "RELU4_2", "block4_pool", ""])
def test_bad_layer_name_is_user_error(name):
    with pytest.raises(UserError, match="unknown VGG19 layer") as info:
        vgg.keras_layer_name(name)
    assert repr(name) in str(info.value)


def test_build_vgg_bad_name_is_user_error():
    with pytest.raises(UserError, match="fc7"):
        vgg.build_vgg(["relu1_1", "fc7"], weights=vgg.RANDOM)


# --- weight resolution ---------------------------------------------------------------------------

@pytest.fixture
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv(vgg.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(vgg, "PROJECT_ROOT", tmp_path / "project")  # no bundled weights


def test_resolve_explicit_path_beats_env(no_env, monkeypatch, tmp_path):
    explicit, from_env = tmp_path / "a.h5", tmp_path / "b.h5"
    explicit.write_bytes(b"x")
    from_env.write_bytes(b"x")
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(from_env))
    assert vgg.resolve_weights(str(explicit)) == str(explicit)
    assert vgg.resolve_weights() == str(from_env)


def test_resolve_expands_home(no_env, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "w.h5").write_bytes(b"x")
    assert vgg.resolve_weights("~/w.h5") == str(tmp_path / "w.h5")


def test_resolve_env_beats_bundled_beats_imagenet(no_env, monkeypatch, tmp_path):
    assert vgg.resolve_weights() == "imagenet"
    bundled = tmp_path / "project" / "pretrained" / vgg.WEIGHTS_FILENAME
    bundled.parent.mkdir(parents=True)
    bundled.write_bytes(b"x")
    assert vgg.resolve_weights() == str(bundled)
    (tmp_path / "env.h5").write_bytes(b"x")
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(tmp_path / "env.h5"))
    assert vgg.resolve_weights() == str(tmp_path / "env.h5")


def test_resolve_missing_explicit_path_is_user_error(no_env, monkeypatch, tmp_path):
    (tmp_path / "env.h5").write_bytes(b"x")
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(tmp_path / "env.h5"))  # no silent fallback to it
    with pytest.raises(UserError, match="not found") as info:
        vgg.resolve_weights(str(tmp_path / "missing.h5"))
    assert "missing.h5" in str(info.value) and "--vgg_weights" in str(info.value)


def test_resolve_missing_env_path_is_user_error(no_env, monkeypatch, tmp_path):
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(tmp_path / "gone.h5"))
    with pytest.raises(UserError, match=vgg.WEIGHTS_ENV) as info:
        vgg.resolve_weights()
    assert "gone.h5" in str(info.value)


def test_resolve_directory_is_user_error(no_env, tmp_path):
    with pytest.raises(UserError, match="not found"):
        vgg.resolve_weights(str(tmp_path))


def test_resolve_random(no_env, monkeypatch):
    assert vgg.resolve_weights("random") == vgg.RANDOM
    monkeypatch.setenv(vgg.WEIGHTS_ENV, "random")
    assert vgg.resolve_weights() == vgg.RANDOM


def test_build_vgg_with_garbage_weights_file_is_user_error(tmp_path):
    path = tmp_path / "bad.h5"
    path.write_bytes(b"this is not HDF5")
    with pytest.raises(UserError, match="not a VGG19") as info:
        vgg.build_vgg(["relu1_1"], weights=str(path))
    assert "bad.h5" in str(info.value)


# --- building (random weights) -------------------------------------------------------------------

def test_random_weights_are_the_same_whatever_ran_before(monkeypatch):
    """The random VGG is cached per process; its weights must not depend on the random state of
    whichever test happened to build it first."""
    built = []
    for seed in (1, 2):
        monkeypatch.setattr(vgg, "_base_models", {})
        keras.utils.set_random_seed(seed)
        built.append(vgg.build_vgg(["relu5_1"], weights=vgg.RANDOM).get_weights())
    for first, second in zip(*built):
        np.testing.assert_array_equal(first, second)
    kernel, bias = built[0][:2]  # block1_conv1: Glorot uniform over 3x3x(3 + 64)
    limit = np.sqrt(6 / (9 * (3 + 64)))
    assert np.abs(kernel).max() <= limit and np.std(kernel) == pytest.approx(limit / np.sqrt(3), rel=0.1)
    np.testing.assert_array_equal(bias, 0)


def test_build_vgg_dict_of_requested_names_with_channel_counts():
    names = ["relu1_1", "conv2_1", "block3_conv1", "relu4_2", "relu5_1"]
    model = vgg.build_vgg(names, weights=vgg.RANDOM)
    out = model(photo(32, 48))
    assert set(out) == set(names)
    for name in names:
        block = int(name[4] if name.startswith(("relu", "conv")) else name[5])
        stride = 2 ** (block - 1)
        assert tuple(out[name].shape) == (1, 32 // stride, 48 // stride, CHANNELS[block]), name
        assert out[name].dtype == "float32"
    assert not model.trainable and not model.trainable_weights


def layer_names(model):
    return [layer.name for layer in model.layers]


def test_build_vgg_is_truncated_at_deepest_requested_layer():
    names = layer_names(vgg.build_vgg(["relu2_1", "relu1_2"], weights=vgg.RANDOM))
    assert names[-1] == "block2_conv1"
    assert not [n for n in names if n.startswith(("block3", "block4", "block5"))]
    assert "block2_conv2" not in names
    names = layer_names(vgg.build_vgg(["relu4_2"], weights=vgg.RANDOM))
    assert names[-1] == "block4_conv2" and "block4_conv3" not in names


def test_build_vgg_aliases_share_one_output():
    out = vgg.build_vgg(["relu1_1", "conv1_1", "block1_conv1"], weights=vgg.RANDOM)(photo(8, 8))
    assert set(out) == {"relu1_1", "conv1_1", "block1_conv1"}
    np.testing.assert_array_equal(out["relu1_1"], out["block1_conv1"])
    np.testing.assert_array_equal(out["conv1_1"], out["block1_conv1"])


def test_build_vgg_preprocesses_and_copies_weights():
    """Equal to the base VGG19's layers applied to the Caffe-preprocessed image, by hand."""
    x = photo(16, 16)
    features = vgg.build_vgg(["relu2_1"], weights=vgg.RANDOM)(x)["relu2_1"]
    base = vgg._load_vgg19(vgg.RANDOM)
    reference = keras.Model(base.input, base.get_layer("block2_conv1").output)
    expected = reference(x[..., ::-1] - BGR_MEAN)
    np.testing.assert_allclose(ops.convert_to_numpy(features), ops.convert_to_numpy(expected),
                               rtol=1e-5, atol=1e-5)


def test_build_vgg_mixed_bfloat16_features():
    model = vgg.build_vgg(["relu1_2"], weights=vgg.RANDOM, dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is not touched
    x = photo(8, 8)
    out = model(x)["relu1_2"]
    assert out.dtype == "bfloat16"
    expected = vgg.build_vgg(["relu1_2"], weights=vgg.RANDOM)(x)["relu1_2"]
    expected = ops.convert_to_numpy(expected)
    np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(out, "float32")), expected,
                               rtol=5e-2, atol=5e-2 * np.abs(expected).max())


# --- real ImageNet weights -----------------------------------------------------------------------

@pytest.mark.real_vgg
def test_real_weights_match_keras_applications_vgg19():
    path = real_weights_path()
    if path is None:
        pytest.skip(f"no real VGG19 weights: set {vgg.WEIGHTS_ENV} or provide "
                    "/work/shared/models/vgg19_notop.h5")
    assert keras.config.dtype_policy().name == "float32"
    names = ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1"]
    x = photo(32, 32, seed=5)
    ours = numpy_features(vgg.build_vgg(names, weights=path)(x))
    reference = keras.applications.VGG19(include_top=False, weights=path,
                                         input_shape=(None, None, 3))
    probe = keras.Model(reference.input,
                        {n: reference.get_layer(vgg.keras_layer_name(n)).output for n in names})
    expected = numpy_features(probe(keras.applications.vgg19.preprocess_input(x.copy())))
    for name in names:
        scale = np.abs(expected[name]).max()
        assert scale > 0, name  # real weights give non-trivial activations
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-3, atol=1e-3 * scale,
                                   err_msg=name)
