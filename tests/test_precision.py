"""The precision chosen from the hardware: decided from fake CPU and GPU descriptions, so no test
depends on the CPU it runs on; and model files run in float32 when that is chosen."""
import io

import keras
import numpy as np
import pytest

from keras_style import precision, stylize
from keras_style.config import ConfigError, validate
from keras_style.errors import UserError
from keras_style.layers import ReflectionPad2D, SpaceToDepthConv2D
from keras_style.metanet import build_meta_transform

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n"
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 fma avx512f amx_tile amx_bf16 amx_int8\n"
ZEN3 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n"
SKYLAKE_SERVER = "flags\t\t: fpu avx2 fma avx512f avx512bw avx512_vnni\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd aes sha2 crc32 atomics asimddp sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd aes sha2 crc32 atomics asimddp\n"


def cpu(text, machine="x86_64"):
    return precision.describe_cpu(precision.cpu_features(text), machine)


@pytest.mark.parametrize("text, machine, native", [
    (ZEN4, "x86_64", True), (SAPPHIRE_RAPIDS, "x86_64", True), (ZEN3, "x86_64", False),
    (SKYLAKE_SERVER, "x86_64", False), (GRAVITON3, "aarch64", True), (GRAVITON2, "aarch64", False),
    ("", "x86_64", False)])
def test_native_bfloat16_is_read_from_the_cpu_flags(text, machine, native):
    assert cpu(text, machine).native_bfloat16 is native


def test_an_x86_flag_named_bf16_is_not_arm_bfloat16():
    assert not cpu("flags\t: avx2 bf16\n", "x86_64").native_bfloat16


@pytest.mark.parametrize("work", precision.WORK)
def test_auto_picks_bfloat16_only_where_it_is_native(work):
    assert precision.choose(work, "auto", cpu(ZEN4)).dtype == "bfloat16"
    assert precision.choose(work, "auto", cpu(SAPPHIRE_RAPIDS)).policy == "mixed_bfloat16"
    assert precision.choose(work, "auto", cpu(ZEN3)).dtype == "float32"
    assert precision.choose(work, "auto", cpu(SKYLAKE_SERVER)).policy == "float32"


def test_gpus_need_compute_capability_8():
    assert precision.choose("training", "auto", precision.describe_gpu((8, 6))).dtype == "bfloat16"
    assert precision.choose("training", "auto", precision.describe_gpu((8, 0))).dtype == "bfloat16"
    assert precision.choose("training", "auto", precision.describe_gpu((7, 5))).dtype == "float32"


def test_the_reason_names_what_was_found():
    assert "avx512_bf16" in precision.choose("training", "auto", cpu(ZEN4)).reason
    reason = precision.choose("stylising", "auto", cpu(ZEN3)).reason
    assert "no native bfloat16" in reason and "avx2" in reason


def test_forced_settings_ignore_the_hardware():
    assert precision.choose("optimisation", "bfloat16", cpu(ZEN3)).dtype == "bfloat16"
    assert precision.choose("optimisation", "float32", cpu(ZEN4)).dtype == "float32"


def test_settings_accept_config_booleans_and_refuse_the_rest():
    assert precision.normalise_setting(True) == "bfloat16"
    assert precision.normalise_setting("false") == "float32"
    assert precision.normalise_setting("AUTO") == "auto"
    with pytest.raises(UserError, match="precision must be one of auto, bfloat16, float32, got 'fp16'"):
        precision.normalise_setting("fp16")
    with pytest.raises(ValueError):
        precision.choose("dreaming", "auto", cpu(ZEN4))


def test_the_choice_is_announced_once_per_kind_of_work():
    stream = io.StringIO()
    chosen = precision.Precision("float32", "a test CPU")
    for _ in range(3):
        precision.announce("training", chosen, stream)
    precision.announce("stylising", chosen, stream)
    assert stream.getvalue().splitlines() == ["precision: float32 for training (a test CPU)",
                                              "precision: float32 for stylising (a test CPU)"]


def test_config_mixed_precision_is_auto_by_default(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "s.png").write_bytes(b"")
    raw = {"naming": "x", "style_image": str(tmp_path / "s.png"), "train_data": str(tmp_path / "photos")}
    assert validate(raw).mixed_precision == "auto"
    assert validate({**raw, "mixed_precision": True}).mixed_precision == "bfloat16"
    assert validate({**raw, "mixed_precision": "float32"}).mixed_precision == "float32"
    with pytest.raises(ConfigError, match="mixed_precision must be one of auto, bfloat16, float32"):
        validate({**raw, "mixed_precision": "half"})


def _layers(model):
    for layer in model.layers:
        yield from (_layers(layer) if isinstance(layer, keras.Model) else [layer])


@pytest.fixture
def bfloat16_transform():
    with precision.policy_scope("mixed_bfloat16"):
        keras.utils.set_random_seed(3)
        return build_meta_transform(4, 8, 1)


def test_a_bfloat16_model_runs_in_float32_when_chosen(bfloat16_transform):
    model = bfloat16_transform
    assert not precision.runs_in_float32(model)
    float32 = stylize.in_precision(model, precision.Precision("float32", "test"))
    assert precision.runs_in_float32(float32)
    for a, b in zip(model.weights, float32.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    rng = np.random.default_rng(0)
    photo = rng.uniform(0, 255, (1, 24, 20, 3)).astype(np.float32)
    params = rng.normal(0, 0.2, (1, model.inputs[1].shape[-1])).astype(np.float32)
    want = keras.ops.convert_to_numpy(model([photo, params]))
    got = keras.ops.convert_to_numpy(float32([photo, params]))
    # The same network: only bfloat16's rounding (8 significant bits) separates the two.
    assert np.abs(got - want).mean() < 0.02 * np.ptp(want)


def test_on_a_cpu_the_bfloat16_choice_keeps_the_saved_arithmetic_with_9x9_convolutions_in_blocks():
    from keras_style.transform import build_transform_net
    with precision.policy_scope("mixed_bfloat16"):
        keras.utils.set_random_seed(4)
        network = build_transform_net(4, 1)
    fast = stylize.in_precision(network, precision.Precision("bfloat16", "test"))
    policies = lambda model: [layer.dtype_policy.name for layer in _layers(model)  # noqa: E731
                              if not isinstance(layer, keras.layers.InputLayer)]
    assert policies(fast) == policies(network)
    blocked = {layer.name for layer in _layers(fast) if isinstance(layer, SpaceToDepthConv2D)}
    assert blocked == {"stem_conv", "out_conv"}
    for a, b in zip(network.weights, fast.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    photo = np.random.default_rng(2).uniform(0, 255, (1, 37, 29, 3)).astype(np.float32)
    want = keras.ops.convert_to_numpy(network(photo))
    got = keras.ops.convert_to_numpy(fast(photo))
    assert got.dtype == want.dtype
    # Only the order of bfloat16 roundings differs.
    assert np.abs(got - want).mean() < 0.01 * np.ptp(want)


def _classes(model):
    return {layer.name: type(layer).__name__ for layer in _layers(model)}


def test_on_a_cpu_the_float32_copy_computes_9x9_convolutions_in_blocks_and_upsamplings_at_low_resolution():
    from keras_style.transform import build_transform_net
    with precision.policy_scope("float32"):
        keras.utils.set_random_seed(5)
        network = build_transform_net(4, 1)
    fast = stylize.in_precision(network, precision.Precision("float32", "test"))
    blocked = {layer.name for layer in _layers(fast) if isinstance(layer, SpaceToDepthConv2D)}
    assert blocked == {"stem_conv", "out_conv"}
    for block in ("up1", "up2"):
        assert [_classes(fast)[f"{block}_{part}"] for part in ("up", "pad", "conv")] == [
            "UpSamplingLater", "SymmetricPad2D", "UpsampledConv2D"]
    photo = np.random.default_rng(2).uniform(0, 255, (1, 37, 29, 3)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fast(photo)),
                               keras.ops.convert_to_numpy(network(photo)), atol=1e-3)


def test_a_meta_transforms_dynamic_upsampling_convolutions_run_at_low_resolution_too():
    with precision.policy_scope("float32"):
        keras.utils.set_random_seed(6)
        transform = build_meta_transform(4, 8, 1)
    fast = stylize.in_precision(transform, precision.Precision("float32", "test"))
    assert _classes(fast)["up1_conv"] == "UpsampledDynamicConv2D"
    rng = np.random.default_rng(1)
    photo = rng.uniform(0, 255, (1, 23, 30, 3)).astype(np.float32)
    params = rng.normal(0, 0.2, (1, transform.inputs[1].shape[-1])).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fast([photo, params])),
                               keras.ops.convert_to_numpy(transform([photo, params])), atol=1e-3)


@pytest.mark.parametrize("also_an_output", [False, True])
def test_an_upsampling_read_by_another_layer_too_is_left_as_it_is(also_an_output):
    photo = keras.Input((None, None, 3))
    up = keras.layers.UpSampling2D(2)(photo)
    conv = keras.layers.Conv2D(3, 3)(ReflectionPad2D(1)(up))
    network = keras.Model(photo, [conv, up] if also_an_output else keras.layers.Add()([conv, up]))
    fast = stylize.in_precision(network, precision.Precision("float32", "test"))
    assert "UpSamplingLater" not in _classes(fast).values()
    x = np.random.default_rng(3).uniform(0, 255, (1, 5, 6, 3)).astype(np.float32)
    for got, want in zip(keras.tree.flatten(fast(x)), keras.tree.flatten(network(x))):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want), atol=1e-3)


def test_recast_reaches_nested_models_and_casts_stored_weights(bfloat16_transform):
    inner = precision.recast(bfloat16_transform, lambda layer: "bfloat16" if layer.weights else "float32")
    photo = keras.Input((None, None, 3))
    params = keras.Input((inner.inputs[1].shape[-1],))
    outer = keras.Model([photo, params], inner([photo, params]))
    assert {w.dtype for w in outer.weights} == {"bfloat16"}
    float32 = precision.recast(outer, lambda layer: "float32")
    assert {w.dtype for w in float32.weights} == {"float32"}
    assert all(layer.dtype_policy.name == "float32" for layer in _layers(float32))
    for a, b in zip(outer.get_weights(), float32.get_weights()):
        np.testing.assert_array_equal(a.astype(np.float32), b)


def test_a_float32_trained_network_is_saved_with_bfloat16_arithmetic(tmp_path):
    from keras_style.training import _for_export
    from keras_style.transform import build_transform_net
    with precision.policy_scope("float32"):
        trained = build_transform_net(4, 1)
    exported = _for_export(trained, lambda: build_transform_net(4, 1))
    assert precision.runs_in_float32(trained) and not precision.runs_in_float32(exported)
    for a, b in zip(trained.get_weights(), exported.get_weights()):
        np.testing.assert_array_equal(a, b)
    exported.save(tmp_path / "m.keras")
    loaded = stylize.load_model(tmp_path / "m.keras")
    back = stylize.in_precision(loaded, precision.Precision("float32", "test"))
    photo = np.random.default_rng(1).uniform(0, 255, (1, 20, 20, 3)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(photo)),
                               keras.ops.convert_to_numpy(trained(photo)), atol=1e-3)
