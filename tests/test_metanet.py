"""The MetaNet, the meta transform and the combined model, on tiny widths with random VGG weights."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_style import data, stylize
from keras_style import images as keras_images
from keras_style import metanet as mn
from keras_style.errors import UserError
from keras_style.layers import PALETTE_DIRECTIONS, PALETTE_SIZE, DynamicConv2D, palette_of
from keras_style.optimizers import Adagrad2
from keras_style.transform import build_transform_net, conv_block, residual_block
from keras_style.vgg import build_vgg

BASE, WIDTH, BLOCKS = 2, 4, 2
SMALL = dict(shared_units=(8, 4, 8), group_units=(4, 4, 4), cnn_filters=(4, 4, 8))


@pytest.fixture(scope="module")
def parts():
    keras.utils.set_random_seed(0)
    vgg = build_vgg(mn.STYLE_FEATURE_LAYERS, weights="random")
    transform = mn.build_meta_transform(BASE, WIDTH, BLOCKS)
    layout = mn.ParamLayout.of_model(transform)
    metanet = mn.build_metanet(layout, mn.style_feature_size(vgg), **SMALL)
    # training styles of different contrast, so the standardisation has a spread to work with
    styles = images(3, 24, 24, 1) * tf.constant([0.2, 0.6, 1.0])[:, None, None, None]
    mn.fit_statistics_normalization(metanet, mn.style_statistics(vgg(styles)))
    _make_style_dependent(metanet, layout)
    encoder = mn.build_style_encoder(metanet, vgg)
    return vgg, transform, layout, metanet, encoder


def _make_style_dependent(metanet, layout):
    """Untrained, the MetaNet gives every style the same parameters (its output weights start at
    zero); random output weights stand in for trained ones."""
    rng = np.random.default_rng(2)
    for layer in mn.output_layers(metanet, layout):
        weights, bias = layer.get_weights()
        layer.set_weights([rng.normal(0.0, 0.05, weights.shape).astype(np.float32), bias])


def test_untrained_metanet_gives_every_style_one_random_network():
    keras.utils.set_random_seed(1)  # it runs before `parts` is built, whose weights it would vary
    vgg = build_vgg(mn.STYLE_FEATURE_LAYERS, weights="random")
    layout = mn.transform_layout(BASE, WIDTH, BLOCKS)
    metanet = mn.build_metanet(layout, mn.style_feature_size(vgg), **SMALL)
    styles = images(2, 24, 24, 5)
    params = np.asarray(mn.build_style_encoder(metanet, vgg)(styles))
    np.testing.assert_array_equal(params[0], params[1])
    for slot in layout:
        for part, _ in slot.parts:
            start, end = slot.span(part)
            values = params[0, start:end]
            if part == "kernel":  # random shared kernels, small before the instance norms
                assert 1e-5 < values.std() < 1e-4 and abs(values.mean()) < values.std()
            else:  # biases, and the style norms' additions to their own scale and shift
                np.testing.assert_array_equal(values, 0.0)


def convolutions(layout):
    return [slot for slot in layout if slot.name.endswith("_conv")]


def _columns(slots):
    return np.concatenate([np.arange(slot.offset, slot.end) for slot in slots])


def images(count, height, width, seed):
    """Random pixels as a tensor (Keras refuses a list input mixing NumPy arrays and tensors)."""
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0, 255, (count, height, width, 3)), tf.float32)


@pytest.mark.parametrize("rank", [0, 2])
def test_kernel_rank_bounds_how_many_directions_the_styles_move_a_kernel(rank):
    keras.utils.set_random_seed(4)
    vgg = build_vgg(mn.STYLE_FEATURE_LAYERS, weights="random")
    layout = mn.transform_layout(BASE, WIDTH, BLOCKS)
    metanet = mn.build_metanet(layout, mn.style_feature_size(vgg), kernel_rank=rank, **SMALL)
    _make_style_dependent(metanet, layout)
    styles = images(5, 24, 24, 9) * tf.constant([0.2, 0.4, 0.6, 0.8, 1.0])[:, None, None, None]
    params = np.asarray(mn.build_style_encoder(metanet, vgg)(styles), np.float64)
    hidden_units = sum(SMALL["group_units"]) + sum(SMALL["shared_units"])
    for slot in convolutions(layout):
        layer = metanet.get_layer(f"{mn.PREFIX}{slot.name}_kernel")
        assert layer.kernel.shape == (rank or hidden_units, slot.kernel_size)
        kernels = params[:, slot.offset:slot.offset + slot.kernel_size]
        moves = kernels[1:] - kernels[0]  # four styles' differences from the first
        assert np.linalg.matrix_rank(moves, tol=1e-3 * np.abs(moves).max()) == (rank or 4)


def test_layout_is_contiguous_and_fills_the_vector(parts):
    vgg, transform, layout, metanet, encoder = parts
    assert layout == mn.transform_layout(BASE, WIDTH, BLOCKS)
    blocks = ["down2"] + [f"res{i}_{h}" for i in (1, 2) for h in "ab"] + ["up1"]
    assert [s.name for s in layout] == (["stem_norm", "down1_norm"] + [f"{b}_{kind}" for b in blocks
                                                                      for kind in ("conv", "norm")]
                                        + ["up2_norm"])
    assert layout["down2_conv"].kernel_shape == (3, 3, 2 * BASE, WIDTH)
    assert layout["down2_conv"].parts == (("kernel", (3, 3, 2 * BASE, WIDTH)), ("bias", (WIDTH,)))
    assert layout["stem_norm"].parts == (("scale", (BASE,)), ("shift", (BASE,)))
    ends = [0] + [s.end for s in layout]
    assert [s.offset for s in layout] == ends[:-1]
    assert all(s.size == 9 * s.kernel_shape[2] * s.kernel_shape[3] + s.kernel_shape[3]
               for s in convolutions(layout))
    plain = mn.transform_layout(BASE, WIDTH, BLOCKS, style_norms=False)
    assert [s.name for s in plain] == [s.name for s in convolutions(layout)]
    assert transform.inputs[1].shape[-1] == layout.size == metanet.output.shape[-1]
    assert encoder(images(1, 32, 32, 0)).shape == (1, layout.size)
    assert mn.style_feature_size(vgg) == 2 * (64 + 128 + 256 + 512)


def test_encoder_is_vgg_statistics_then_metanet(parts):
    vgg, transform, layout, metanet, encoder = parts
    style = images(2, 28, 36, 10)
    stats = mn.style_statistics(vgg(style))
    assert stats.shape == (2, mn.style_feature_size(vgg))
    np.testing.assert_allclose(metanet([stats, style]), encoder(style), rtol=1e-5, atol=1e-8)


def test_statistics_are_standardised_with_the_training_styles_spread():
    stats = np.array([[1.0, 5.0, 100.0, 7.0], [3.0, 5.0, 300.0, 7.0], [5.0, 5.0, 200.0, 7.000001]])
    model = mn.build_metanet(mn.transform_layout(BASE, WIDTH, 1), 4, **SMALL)
    mn.fit_statistics_normalization(model, stats, floor=0.01)
    mean, std = model.get_layer(mn.STANDARDISE_NAME).get_weights()
    np.testing.assert_allclose(mean, stats.mean(axis=0), rtol=1e-6)
    spread = stats.std(axis=0)
    # features with little or no spread get 1% of the median spread
    floor = 0.01 * np.median(spread)
    np.testing.assert_allclose(std, [spread[0], floor, spread[2], floor], rtol=1e-5)
    # one style has no spread at all: its statistics are only centred
    mn.fit_statistics_normalization(model, stats[:1])
    np.testing.assert_array_equal(model.get_layer(mn.STANDARDISE_NAME).get_weights()[1], np.ones(4))


def plain_network(transform, layout, params):
    """The same architecture with ordinary Conv2D layers, given the transform's weights and the
    dynamic layers' kernels cut out of `params` by hand."""
    photo = keras.Input((None, None, 3))
    x = transform.get_layer("pad_to_4")(photo)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = conv_block(x, BASE, 9, name="stem")
    x = conv_block(x, 2 * BASE, 3, strides=2, name="down1")
    x = conv_block(x, WIDTH, 3, strides=2, name="down2")
    for i in range(BLOCKS):
        x = residual_block(x, WIDTH, name=f"res{i + 1}")
    x = conv_block(x, WIDTH, 3, upsample=True, name="up1")
    x = conv_block(x, BASE, 3, upsample=True, name="up2")
    x = conv_block(x, 3, 9, norm=False, relu=False, name="out")
    x = keras.layers.Rescaling(127.5, offset=127.5)(x)
    model = keras.Model(photo, transform.get_layer("crop")([x, photo]))
    for slot in convolutions(layout):  # the norms after the dynamic convolutions have their own epsilon
        model.get_layer(slot.name.replace("_conv", "_norm")).epsilon = mn.DYNAMIC_NORM_EPSILON
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in [s.name for s in layout]:
            layer.set_weights(transform.get_layer(layer.name).get_weights())
            continue
        slot = layout[layer.name]
        cut = {part: params[slice(*slot.span(part))].reshape(shape) for part, shape in slot.parts}
        if "kernel" in cut:
            layer.set_weights([cut["kernel"], cut["bias"]])
        else:  # a style norm: its own scale and shift plus the generated ones
            scale, shift = transform.get_layer(layer.name).get_weights()
            layer.set_weights([scale + cut["scale"], shift + cut["shift"]])
    return model


def test_only_the_direction_of_the_generated_weights_matters(parts):
    """Instance norms follow every dynamic convolution: kernels and biases as small as an untrained
    MetaNet's (about 4e-5) give the same image as the same ones a thousand times larger."""
    vgg, transform, layout, metanet, encoder = parts
    photos = images(2, 20, 24, 4)
    params = tf.random.normal((1, layout.size), stddev=4e-5, seed=3)
    convolution = np.zeros(layout.size, np.float32)
    for slot in convolutions(layout):
        convolution[slot.offset:slot.end] = 1.0
    larger = params * (1.0 + 999.0 * convolution)  # the norms' scales and shifts as they were
    small, large = transform([photos, params]), transform([photos, larger])
    np.testing.assert_allclose(small, large, rtol=1e-3, atol=0.05)


@pytest.mark.parametrize("source", ["metanet", "random"])
def test_meta_transform_is_the_plain_network_with_generated_weights(parts, source):
    vgg, transform, layout, metanet, encoder = parts
    if source == "metanet":
        params = np.asarray(encoder(images(1, 40, 36, 1)))[0]
    else:  # kernels of a trained network's magnitude, so every dynamic layer visibly matters
        params = np.random.default_rng(2).normal(0, 0.3, layout.size).astype("float32")
    photo = images(2, 23, 18, 3)
    got = transform([photo, tf.constant(params[None])])
    want = plain_network(transform, layout, params)(photo)
    assert got.shape == (2, 23, 18, 3)
    assert_equal_up_to_summation_order(got, want)


@pytest.mark.parametrize("size", [4e-5, 0.3])
def test_a_style_becomes_a_plain_transform_network(parts, size):
    """The warm start of per-style training: kernels as small as an untrained MetaNet's (where the
    dynamic norms' epsilon of 1e-12 matters) and as large as a trained one's."""
    vgg, transform, layout, metanet, encoder = parts
    params = np.random.default_rng(4).normal(0, size, layout.size).astype("float32")
    base, width, blocks = mn.transform_shape(transform)
    assert (base, width, blocks) == (BASE, WIDTH, BLOCKS)
    plain = build_transform_net(base, blocks, width)
    for name, weights in mn.plain_transform_weights(transform, params).items():
        plain.get_layer(name).set_weights(weights)
    photo = images(2, 23, 18, 3)
    assert_equal_up_to_summation_order(plain(photo), transform([photo, tf.constant(params[None])]))


def assert_equal_up_to_summation_order(got, want):
    """The same float32 function evaluated with its sums in another order (another batch size,
    another CPU's oneDNN kernels, another thread split) differs by rounding, which ~20 layers keep
    below 2^-16 of the output's span; measured up to 0.0023 on a span of about 600 (Intel AVX-512
    without BF16) and 0.0009 in another run on the same CPU."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=0, atol=(want.max() - want.min()) * 2.0 ** -16)


def test_mixed_styles_in_one_batch_match_one_at_a_time(parts):
    vgg, transform, layout, metanet, encoder = parts
    styles = images(2, 32, 32, 4) * tf.constant([1.0, 0.3])[:, None, None, None]  # two palettes
    params = encoder(styles)
    photos = images(2, 20, 20, 5)
    together = np.asarray(transform([photos, params]))
    apart = [np.asarray(transform([photos[i:i + 1], params[i:i + 1]]))[0] for i in range(2)]
    assert_equal_up_to_summation_order(together, np.stack(apart))
    swapped = np.asarray(transform([photos, tf.reverse(params, [0])]))
    span = together.max() - together.min()
    assert np.abs(swapped - together).max() > span * 2.0 ** -8  # the style does reach the image
    # One style image for the whole batch, eagerly and compiled.
    combined = mn.build_metanet_model(encoder, transform)
    want = transform([photos, tf.repeat(params[:1], 2, axis=0)])
    assert_equal_up_to_summation_order(combined([photos, styles[:1]]), want)
    compiled = tf.function(lambda p, s: combined([p, s]))
    assert_equal_up_to_summation_order(compiled(photos, styles[:1]), want)


@pytest.mark.parametrize("value", [0.0, 128.0, 255.0])
def test_solid_colours_give_finite_parameters_images_and_gradients(parts, value):
    vgg, transform, layout, metanet, encoder = parts
    solid = tf.fill((2, 24, 24, 3), value)
    variables = encoder.trainable_variables + transform.trainable_variables
    with tf.GradientTape() as tape:
        params = encoder(solid, training=True)
        image = transform([solid, params], training=True)
        loss = tf.reduce_mean(tf.square(image - 100.0))
    grads = tape.gradient(loss, variables)
    assert np.isfinite(params).all() and np.isfinite(image).all()
    assert all(np.isfinite(g).all() for g in grads if g is not None)


def test_optimizer_groups_are_the_metanet_variables(parts):
    vgg, transform, layout, metanet, encoder = parts
    names = mn.metanet_variable_names(metanet)
    assert names and all(n.startswith(mn.PREFIX) for n in names)
    opt = Adagrad2(norm_val=names)
    assert all(opt.in_norm_group(v) for v in encoder.trainable_variables)
    assert not any(opt.in_norm_group(v) for v in transform.trainable_variables)
    assert len(encoder.trainable_variables) == len(metanet.trainable_variables)  # VGG frozen


def test_keras_file_holds_both_halves(parts, tmp_path):
    vgg, transform, layout, metanet, encoder = parts
    photos, style = images(2, 21, 19, 6), images(1, 30, 34, 7)
    full = mn.build_metanet_model(encoder, transform)
    exported = mn.build_export_model(metanet, transform, vgg)
    full.save(tmp_path / "full.keras")
    exported.save(tmp_path / "half.keras")
    expected = np.asarray(full([photos, style]))
    loaded_encoder, loaded_transform = mn.metanet_halves(keras.saving.load_model(tmp_path / "full.keras"))
    again = loaded_transform([photos, loaded_encoder(style)])
    np.testing.assert_allclose(again, expected, rtol=1e-5, atol=1e-4)

    small = keras.saving.load_model(tmp_path / "half.keras")
    dtypes = {v.path: v.dtype for v in small.weights}
    assert dtypes["block1_conv1/kernel"] == "bfloat16"
    assert dtypes[f"{mn.PREFIX}shared_stats_relu/kernel"] == "bfloat16"
    assert dtypes["stem_conv/kernel"] == "float32"
    assert dtypes[f"{mn.STANDARDISE_NAME}/mean"] == "float32"
    assert (tmp_path / "half.keras").stat().st_size < 0.6 * (tmp_path / "full.keras").stat().st_size
    small_encoder, _ = mn.metanet_halves(small)
    params, want = np.asarray(small_encoder(style)), np.asarray(encoder(style))
    for columns in (_columns(convolutions(layout)), _columns([s for s in layout if s.name.endswith("_norm")])):
        # Relative to the scale of their kind (kernels ~1e-4, norms ~0.1), since single sums of these
        # random output weights cancel: over six seeds of these networks 2.5-12% on average and
        # 2.2-19% at most (another style's vector is 100% off).
        error = np.abs(params[:, columns] - want[:, columns])
        scale = np.abs(want[:, columns])
        assert error.mean() < 0.25 * scale.mean() and error.max() < 0.4 * scale.max()
    # How much bfloat16 storage moves the images depends on the random networks: over six seeds,
    # 0.9-1.5% of their range on average and 4.7-9.9% at most; an earlier trained MetaNet's, at
    # step 1000 on real styles and photos: 0.25-0.5 levels of 255 on average.
    difference = np.abs(np.asarray(small([photos, style])) - expected)
    assert difference.mean() < 0.03 * np.ptp(expected) and difference.max() < 0.16 * np.ptp(expected)


def test_builds_and_runs_under_mixed_bfloat16():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        transform = mn.build_meta_transform(BASE, WIDTH, 1)
        layout = mn.ParamLayout.of_model(transform)
        params = tf.random.normal((2, layout.size), stddev=0.3, seed=8)
        image = transform([images(2, 12, 12, 9), params])
        dynamic = [layer for layer in transform.layers if isinstance(layer, DynamicConv2D)]
        assert all(layer.compute_dtype == "bfloat16" for layer in dynamic)
    finally:
        keras.config.set_dtype_policy("float32")
    assert image.dtype == "float32" and np.isfinite(image).all()


@pytest.fixture(scope="module")
def styled_transform(parts):
    """The fixture's transform with style output convolutions, holding the same weights."""
    transform = parts[1]
    styled = mn.build_meta_transform(BASE, WIDTH, BLOCKS, style_output_convs=True)
    for layer in transform.layers:
        if layer.weights:
            styled.get_layer(layer.name).set_weights(layer.get_weights())
    return styled


def _moved(params, layout, styled_layout):
    """`params` of `layout` placed in a vector of `styled_layout`, zero where only it has columns."""
    moved = np.zeros(styled_layout.size, np.float32)
    for slot in layout:
        moved[styled_layout[slot.name].offset:styled_layout[slot.name].end] = params[slot.offset:slot.end]
    return moved


def test_style_output_convs_without_change_are_the_network_without_them(parts, styled_transform):
    vgg, transform, layout, metanet, encoder = parts
    styled_layout = mn.ParamLayout.of_model(styled_transform)
    added = {slot.name for slot in styled_layout} - {slot.name for slot in layout}
    assert added == {"up2_conv", "out_conv"}
    assert styled_layout["out_conv"].parts == (("kernel_change", (9, 9, BASE, 3)), ("bias_change", (3,)))
    params = np.asarray(encoder(images(1, 40, 36, 1)))[0]
    photo = images(2, 23, 18, 3)
    moved = _moved(params, layout, styled_layout)
    want = transform([photo, tf.constant(params[None])])
    assert_equal_up_to_summation_order(styled_transform([photo, tf.constant(moved[None])]), want)
    out = styled_layout["out_conv"]
    moved[out.offset:out.end] = np.random.default_rng(5).normal(0, 0.05, out.size)
    assert np.abs(styled_transform([photo, tf.constant(moved[None])]) - want).mean() > 1.0


def test_a_style_with_style_output_convs_becomes_a_plain_network(styled_transform):
    layout = mn.ParamLayout.of_model(styled_transform)
    params = np.random.default_rng(6).normal(0, 0.3, layout.size).astype("float32")
    plain = build_transform_net(BASE, BLOCKS, WIDTH)
    for name, weights in mn.plain_transform_weights(styled_transform, params).items():
        plain.get_layer(name).set_weights(weights)
    photo = images(2, 23, 18, 3)
    assert_equal_up_to_summation_order(plain(photo), styled_transform([photo, tf.constant(params[None])]))


def test_metanet_starts_style_convolution_changes_at_zero(parts):
    vgg = parts[0]
    styled = mn.build_meta_transform(BASE, WIDTH, BLOCKS, style_output_convs=True)
    layout = mn.ParamLayout.of_model(styled)
    metanet = mn.build_metanet(layout, mn.style_feature_size(vgg), **SMALL)
    encoder = mn.build_style_encoder(metanet, vgg)
    params = np.asarray(encoder(images(2, 30, 30, 7)))
    for name in ("up2_conv", "out_conv"):
        assert not params[:, layout[name].offset:layout[name].end].any()
    assert params[:, layout["down2_conv"].offset:layout["down2_conv"].end].any()


def test_a_style_is_encoded_for_use_from_the_view_training_reads(parts):
    """eval.py's encoding sees a square style exactly as training's view (the same resampling)."""
    vgg, transform, layout, metanet, encoder = parts
    stylizer = stylize.MetaNetStylizer(mn.build_metanet_model(encoder, transform), "tiny.keras")
    style = np.asarray(images(1, 300, 300, 4))[0]
    view = data.centre_square(tf.constant(style), mn.ENCODE_SIDE)
    np.testing.assert_allclose(stylizer.encode(style), np.asarray(encoder(view[None]))[0], rtol=1e-4, atol=1e-9)
    lanczos = np.asarray(encoder(keras_images.resize_shorter_to(style, mn.ENCODE_SIDE)[None]))[0]
    assert not np.allclose(stylizer.encode(style), lanczos, rtol=1e-4, atol=1e-9)  # the filter matters


def test_without_relu_before_output_no_region_collapses_to_the_bias(parts, tmp_path, monkeypatch):
    """Where every channel of up2's norm is negative, the ReLU leaves the output convolution only
    its bias: one flat colour whatever the photo. Without the ReLU the photo still shows. Such a
    MetaNet cannot warm-start a per-style network, which always has the ReLU."""
    vgg, _, layout, metanet, _ = parts
    with_relu = mn.build_meta_transform(BASE, WIDTH, BLOCKS)
    bare = mn.build_meta_transform(BASE, WIDTH, BLOCKS, relu_before_output=False)
    assert mn.has_relu_before_output(with_relu) and not mn.has_relu_before_output(bare)
    gamma, beta = with_relu.get_layer("up2_norm").get_weights()
    with_relu.get_layer("up2_norm").set_weights([gamma, beta - 50.0])  # every channel far below 0
    for layer in with_relu.layers:
        if layer.weights:
            bare.get_layer(layer.name).set_weights(layer.get_weights())
    photos, params = images(2, 20, 24, 3), tf.random.normal((1, layout.size), stddev=0.3, seed=4)
    flat, shown = (np.asarray(network([photos, params])) for network in (with_relu, bare))
    bias = 127.5 * (with_relu.get_layer("out_conv").get_weights()[1] + 1.0)
    np.testing.assert_allclose(flat, np.broadcast_to(bias, flat.shape), atol=1e-3)
    assert shown.std(axis=(1, 2)).min() > 1.0
    with pytest.raises(UserError, match="mn.keras: its transform has no ReLU before the output convolution"):
        _warm_start_from(parts, bare, tmp_path, monkeypatch)


def _warm_start_from(parts, transform, tmp_path, monkeypatch):
    """`training.warm_start` of a per-style config from a MetaNet file holding `transform`."""
    from keras_style import training
    from keras_style.config import load_config
    from test_cli import photo
    vgg, _, _, metanet, _ = parts
    monkeypatch.chdir(tmp_path)
    mn.build_export_model(metanet, transform, vgg).save(tmp_path / "mn.keras")
    photo(tmp_path / "s.jpg")
    photo(tmp_path / "photos" / "a.jpg")
    (tmp_path / "c.yml").write_text("naming: x\nstyle_image: s.jpg\ntrain_data: photos\n")
    return training.warm_start(load_config(tmp_path / "c.yml", ["init_from=mn.keras"]))


@pytest.mark.parametrize("demodulate", [False, True])
def test_demodulated_residual_stream_reads_no_statistics_of_the_image(demodulate):
    """With instance norms, a spike in one corner of the features rescales the whole residual
    stream (how a network grows droplets); with demodulated kernels a region beyond the corner's
    reach is untouched."""
    keras.utils.set_random_seed(3)
    transform = mn.build_meta_transform(BASE, WIDTH, BLOCKS, demodulate=demodulate)
    assert mn.is_demodulated(transform) == demodulate
    stream = keras.Model([transform.get_layer("down2_pad").input, transform.inputs[1]],
                         transform.get_layer("up1_norm").output)
    features = np.random.default_rng(0).normal(size=(1, 48, 48, 2 * BASE)).astype(np.float32)
    spiked = features.copy()
    spiked[:, :8, :8] += 50.0
    params = tf.random.normal((1, transform.inputs[1].shape[-1]), stddev=0.3, seed=6)
    before, after = (np.asarray(stream([tf.constant(x), params]))[0, 32:, 32:] for x in (features, spiked))
    changed = np.abs(after - before).max()
    assert changed < 1e-5 if demodulate else changed > 1e-2


def test_a_demodulated_metanet_cannot_warm_start_a_per_style_network(parts, tmp_path, monkeypatch):
    demodulated = mn.build_meta_transform(BASE, WIDTH, BLOCKS, demodulate=True)
    with pytest.raises(UserError, match="mn.keras: its transform demodulates its kernels"):
        _warm_start_from(parts, demodulated, tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="demodulates its kernels"):
        mn.plain_transform_weights(demodulated, np.zeros(mn.ParamLayout.of_model(demodulated).size))
    with pytest.raises(ValueError, match="demodulate needs style_norms"):
        mn.build_meta_transform(BASE, WIDTH, BLOCKS, style_norms=False, demodulate=True)


def test_color_match_gives_the_result_the_paintings_measured_colours(parts):
    """The MetaNet measures the painting's colours (the last 6 columns: per-channel mean and std of
    its pixels, not a learned guess) and the transform's last layer imposes them."""
    vgg = parts[0]
    transform = mn.build_meta_transform(BASE, WIDTH, BLOCKS, color_match=0.5)
    layout = mn.ParamLayout.of_model(transform)
    assert layout[mn.COLOUR_NAME].offset == layout.size - 6
    metanet = mn.build_metanet(layout, mn.style_feature_size(vgg), **SMALL)
    encoder = mn.build_style_encoder(metanet, vgg)
    style = images(2, 30, 34, 7) * tf.constant([1.0, 0.5, 0.25])
    colours = np.asarray(encoder(style))[:, -6:]
    np.testing.assert_allclose(colours[:, :3], np.mean(style, axis=(1, 2)), rtol=1e-4)
    np.testing.assert_allclose(colours[:, 3:], np.std(style, axis=(1, 2)), rtol=1e-3)
    result = np.asarray(mn.build_metanet_model(encoder, transform)([images(1, 32, 28, 8), style[1:]]))
    np.testing.assert_allclose(result[0].mean(axis=(0, 1)), colours[1, :3], rtol=1e-4, atol=1e-2)


def test_keep_palette_keeps_the_result_within_the_photos_and_the_paintings_colours(parts):
    """The MetaNet measures the painting's palette (the last columns, after the colour match's) and
    the transform's last layer keeps every pixel inside its and the photo's bounds."""
    vgg = parts[0]
    transform = mn.build_meta_transform(BASE, WIDTH, BLOCKS, color_match=1.0, keep_palette=True)
    layout = mn.ParamLayout.of_model(transform)
    assert layout[mn.PALETTE_NAME].offset == layout.size - PALETTE_SIZE == layout[mn.COLOUR_NAME].end
    metanet = mn.build_metanet(layout, mn.style_feature_size(vgg), **SMALL)
    encoder = mn.build_style_encoder(metanet, vgg)
    style = images(2, 30, 34, 7) * tf.constant([1.0, 0.2, 0.1]) + tf.constant([0.0, 150.0, 20.0])
    measured = np.asarray(encoder(style))[:, -PALETTE_SIZE:]
    np.testing.assert_allclose(measured, np.asarray(palette_of(style)), rtol=1e-5, atol=1e-3)
    photo = images(1, 32, 28, 8) * 0.3 + 60.0
    result = np.asarray(mn.build_metanet_model(encoder, transform)([photo, style[1:]]))[0]
    count = PALETTE_DIRECTIONS.shape[1]
    projected = result.reshape(-1, 3) @ PALETTE_DIRECTIONS
    bounds = np.stack([np.asarray(palette_of(photo))[0], measured[1]])
    assert (projected >= bounds[:, 3:3 + count].min(0) - 1e-2).all()
    assert (projected <= bounds[:, 3 + count:].max(0) + 1e-2).all()
    unbounded = keras.Model(transform.inputs, transform.get_layer(mn.COLOUR_NAME).output)
    params = np.asarray(encoder(style[1:]))
    before = np.asarray(unbounded([photo, tf.constant(params)]))[0].reshape(-1, 3) @ PALETTE_DIRECTIONS
    assert (before > bounds[:, 3 + count:].max(0) + 5).any()  # the colour match alone leaves them
