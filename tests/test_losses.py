"""The perceptual losses, each checked against a direct NumPy computation."""
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_style import losses

RTOL = 1e-5


def feats(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def np_gram(f):
    b, h, w, c = f.shape
    flat = f.astype(np.float64).reshape(b, h * w, c)
    return np.einsum("bpi,bpj->bij", flat, flat) / (c * h * w)


def value(x):
    return np.asarray(ops.convert_to_numpy(x))


def grad_of(fn, x):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = fn(x)
    return value(y), value(tape.gradient(y, x))


def test_content_loss_is_mean_squared_difference():
    a, b = feats((2, 3, 4, 5), 1), feats((2, 3, 4, 5), 2)
    expected = np.mean((a.astype(np.float64) - b) ** 2)
    assert value(losses.content_loss(a, b)) == pytest.approx(expected, rel=RTOL)


def test_gram_matrix_normalised_by_chw():
    f = feats((2, 3, 4, 5))
    g = value(losses.gram_matrix(f))
    assert g.shape == (2, 5, 5)
    np.testing.assert_allclose(g, np_gram(f), rtol=1e-5, atol=1e-6)
    # Normalisation, spelled out for one entry.
    assert g[1, 2, 3] == pytest.approx(np.sum(f[1, :, :, 2] * f[1, :, :, 3]) / (5 * 3 * 4), rel=1e-5)


def test_gram_style_loss_per_image_batch_averaged():
    f = feats((3, 4, 4, 2), 1)
    target = np_gram(feats((3, 4, 4, 2), 2)).astype(np.float32)
    per_image = np.sum((np_gram(f) - target) ** 2, axis=(1, 2))
    assert value(losses.gram_style_loss(f, target)) == pytest.approx(per_image.mean(), rel=1e-5)


def test_gram_style_loss_single_target_broadcasts_over_batch():
    f = feats((3, 4, 4, 2), 1)
    target = np_gram(feats((1, 4, 4, 2), 2)).astype(np.float32)  # (1, C, C)
    expected = np.mean(np.sum((np_gram(f) - target) ** 2, axis=(1, 2)))
    assert value(losses.gram_style_loss(f, target)) == pytest.approx(expected, rel=1e-5)
    # Each image compared with its own target, not with an average one.
    own = np_gram(f).astype(np.float32)
    assert value(losses.gram_style_loss(f, own)) == pytest.approx(0.0, abs=1e-10)


def test_relative_gram_style_loss_divides_each_image_by_its_target_norm():
    f = feats((2, 4, 4, 3), 1)
    target = np_gram(feats((2, 4, 4, 3), 2, scale=5.0)).astype(np.float32)
    expected = np.mean(np.sum((np_gram(f) - target) ** 2, axis=(1, 2)) / np.sum(target ** 2, axis=(1, 2)))
    assert value(losses.relative_gram_style_loss(f, target)) == pytest.approx(expected, rel=1e-5)
    # Scale-free: features 10x larger against a target 100x larger give the same loss.
    scaled = value(losses.relative_gram_style_loss(f * 10, target * 100))
    assert scaled == pytest.approx(expected, rel=1e-4)


def test_mean_std_matches_numpy_with_epsilon():
    f = feats((2, 3, 4, 5), scale=3.0)
    mean, std = map(value, losses.mean_std(f, epsilon=1e-3))
    np.testing.assert_allclose(mean, f.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.sqrt(f.var(axis=(1, 2)) + 1e-3), rtol=1e-5)


def test_mean_std_of_solid_colour_is_finite_with_finite_gradient():
    solid = np.full((1, 4, 4, 3), 7.0, np.float32)
    std, grad = grad_of(lambda x: ops.sum(losses.mean_std(x)[1]), solid)
    assert np.all(np.isfinite(std)) and std == pytest.approx(3 * np.sqrt(1e-5), rel=1e-4)
    assert np.all(np.isfinite(grad))


def test_mean_std_style_loss_matches_numpy():
    f = feats((2, 3, 4, 5), 1)
    t_mean, t_std = feats((2, 5), 2), np.abs(feats((1, 5), 3))  # std target broadcast over batch
    mean, std = f.mean(axis=(1, 2)), np.sqrt(f.var(axis=(1, 2)) + 1e-5)
    expected = np.mean(np.sum((mean - t_mean) ** 2, -1) + np.sum((std - t_std) ** 2, -1))
    assert value(losses.mean_std_style_loss(f, t_mean, t_std)) == pytest.approx(expected, rel=1e-5)


def np_diffs(x):
    x = x.astype(np.float64)
    return x[:, 1:, :-1] - x[:, :-1, :-1], x[:, :-1, 1:] - x[:, :-1, :-1]


def test_total_variation_anisotropic_l1_over_pixels():
    x = feats((2, 5, 6, 3), scale=50.0)
    dy, dx = np_diffs(x)
    expected = np.mean(np.sum(np.abs(dy) + np.abs(dx), axis=(1, 2, 3))) / (5 * 6)
    assert value(losses.total_variation(x)) == pytest.approx(expected, rel=1e-5)


def test_total_variation_of_hand_example():
    x = np.zeros((1, 2, 2, 1), np.float32)
    x[0, 1, 0, 0] = 3.0  # |dy| = 3 at the single top-left position, dx = 0
    x[0, 0, 1, 0] = -2.0  # |dx| = 2
    assert value(losses.total_variation(x)) == pytest.approx(5.0 / 4)


def test_total_variation_squared_exponent_125():
    x = feats((2, 5, 6, 3), scale=10.0)
    dy, dx = np_diffs(x)
    expected = np.mean(np.sum((dy ** 2 + dx ** 2 + 1e-8) ** 1.25, axis=(1, 2, 3))) / 30
    assert value(losses.total_variation_squared(x)) == pytest.approx(expected, rel=1e-5)


def test_total_variation_squared_flat_image_has_finite_gradient():
    flat = np.full((1, 4, 4, 3), 100.0, np.float32)
    loss, grad = grad_of(losses.total_variation_squared, flat)
    assert np.isfinite(loss) and loss == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.isfinite(grad))


def test_perceptual_loss_applies_weights_and_sums():
    image = feats((2, 6, 6, 3), 0, scale=20.0)
    gen = {"relu2_2": feats((2, 3, 3, 4), 1), "relu3_1": feats((2, 2, 2, 8), 2)}
    content = {"relu2_2": feats((2, 3, 3, 4), 3)}
    grams = {name: np_gram(feats(f.shape, 4 + i)).astype(np.float32)
             for i, (name, f) in enumerate(gen.items())}
    weights = losses.LossWeights(content=2.0, style=10.0, tv=0.5)
    parts = {k: float(value(v)) for k, v in
             losses.perceptual_loss(image, gen, content, grams, weights).items()}

    c = np.mean((gen["relu2_2"] - content["relu2_2"].astype(np.float64)) ** 2)
    s = sum(np.mean(np.sum((np_gram(gen[n]) - g) ** 2, axis=(1, 2)) / np.sum(g ** 2, axis=(1, 2)))
            for n, g in grams.items())
    dy, dx = np_diffs(image)
    tv = np.mean(np.sum(np.abs(dy) + np.abs(dx), axis=(1, 2, 3))) / 36
    assert parts["content"] == pytest.approx(2.0 * c, rel=1e-5)
    assert parts["style"] == pytest.approx(10.0 * s, rel=1e-5)
    assert parts["tv"] == pytest.approx(0.5 * tv, rel=1e-5)
    assert parts["total"] == pytest.approx(parts["content"] + parts["style"] + parts["tv"], rel=1e-6)


@pytest.mark.parametrize("fn, args", [
    (losses.content_loss, 2),
    (losses.total_variation, 1),
    (losses.total_variation_squared, 1),
    (lambda f: losses.mean_std(f)[1], 1),
])
def test_bfloat16_features_computed_in_float32(fn, args):
    inputs = [feats((2, 4, 4, 3), seed, scale=5.0) for seed in range(args)]
    # Values exactly representable in bfloat16, so only the arithmetic precision differs.
    exact = [ops.cast(ops.cast(x, "bfloat16"), "float32") for x in inputs]
    out_bf16 = fn(*[ops.cast(x, "bfloat16") for x in inputs])
    assert out_bf16.dtype == "float32"
    np.testing.assert_allclose(value(out_bf16), value(fn(*exact)), rtol=1e-6, atol=1e-6)


def test_bfloat16_gram_does_not_accumulate_in_bfloat16():
    """bfloat16 features are multiplied in bfloat16 with wider accumulation. How wide depends on the
    CPU's kernels: native bfloat16 (AVX-512 BF16, AMX) accumulates in float32 and rounds only the
    result (2^-9); an AVX2 CPU's emulation rounds partial sums to bfloat16 (0.67% measured on an
    AMD EPYC with AVX2; rounding every partial sum of 64 positions gives 0.96%). Summing the 4096
    positions one by one in bfloat16 would be 54% off: the bound separates the two, on any CPU."""
    f = np.abs(feats((1, 64, 64, 4), scale=3.0))
    f_bf16 = ops.cast(f, "bfloat16")
    expected = np_gram(value(ops.cast(f_bf16, "float32")))
    ours = value(losses.gram_matrix(f_bf16))
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0.02)


def test_content_distance_is_per_image_relative_norm():
    a, b = feats((3, 4, 5, 6), 1), feats((3, 4, 5, 6), 2, scale=np.array([1.0, 10.0, 100.0])[:, None, None, None])
    per_image = [np.linalg.norm(a[i].astype(np.float64) - b[i]) / np.linalg.norm(b[i]) for i in range(3)]
    assert value(losses.content_distance(a, b)) == pytest.approx(np.mean(per_image), rel=RTOL)


def test_gram_distance_is_per_image_relative_frobenius_norm():
    f = feats((2, 4, 4, 3), 1)
    target = np_gram(feats((2, 4, 4, 3), 2, scale=np.array([1.0, 5.0])[:, None, None, None]))
    per_image = [np.linalg.norm(np_gram(f)[i] - target[i]) / np.linalg.norm(target[i]) for i in range(2)]
    assert value(losses.gram_distance(f, target.astype(np.float32))) == pytest.approx(np.mean(per_image), rel=RTOL)


def test_distance_losses_have_finite_gradients_at_a_perfect_match():
    f = feats((1, 3, 3, 2), 3)
    for fn in (lambda x: losses.content_distance(x, f), lambda x: losses.gram_distance(x, np_gram(f).astype(np.float32))):
        loss, gradient = grad_of(fn, f)
        assert loss == pytest.approx(0.0, abs=1e-5) and np.isfinite(gradient).all()


def test_perceptual_loss_distances_form_sums_the_distances():
    f = {"a": feats((2, 4, 4, 3), 1), "b": feats((2, 2, 2, 3), 2)}
    content = {"a": feats((2, 4, 4, 3), 3)}
    grams = {n: np_gram(feats(x.shape, 4 + i)).astype(np.float32) for i, (n, x) in enumerate(f.items())}
    weights = losses.LossWeights(content=2.0, style=3.0, tv=0.0)
    parts = losses.perceptual_loss(feats((2, 8, 8, 3), 5), f, content, grams, weights, distances=True)
    style = sum(value(losses.gram_distance(f[n], g)) for n, g in grams.items())
    assert value(parts["style"]) == pytest.approx(3.0 * style, rel=RTOL)
    assert value(parts["content"]) == pytest.approx(2.0 * value(losses.content_distance(f["a"], content["a"])), rel=RTOL)


def np_quantiles(image, directions, levels):
    projected = np.sort(image.reshape(-1, 3).astype(np.float64) @ directions, axis=0)
    picks = np.round(np.linspace(0, len(projected) - 1, levels)).astype(int)
    return projected[picks].T


def test_colour_quantiles_and_distance_match_numpy():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 9, 7, 3)).astype(np.float32)
    directions = losses.colour_directions(5)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0, rtol=1e-6)
    got = value(losses.colour_quantiles(images, directions, levels=11))
    want = [np_quantiles(im, directions, 11) for im in images]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    strided = value(losses.colour_quantiles(images, directions, levels=11, stride=2))
    np.testing.assert_allclose(strided[0], np_quantiles(images[0, ::2, ::2], directions, 11), rtol=1e-5, atol=1e-3)
    distance = value(losses.colour_distance(got, got[::-1]))
    np.testing.assert_allclose(distance, [np.abs(want[0] - want[1]).mean()] * 2, rtol=1e-5)


def test_colour_distance_is_zero_for_the_same_palette_in_another_arrangement():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    shuffled = rng.permutation(image.reshape(-1, 3)).reshape(image.shape)
    directions = losses.colour_directions(8)
    a, b = (losses.colour_quantiles(x, directions) for x in (image, shuffled))
    assert value(losses.colour_distance(a, b))[0] == pytest.approx(0.0, abs=1e-4)
    darker = losses.colour_quantiles(image * 0.5, directions)
    assert value(losses.colour_distance(a, darker))[0] > 10.0


def test_colour_distance_has_a_gradient_towards_the_target():
    rng = np.random.default_rng(2)
    image = rng.uniform(50, 200, (1, 6, 6, 3)).astype(np.float32)
    directions = losses.colour_directions(4)
    target = losses.colour_quantiles(np.full_like(image, 240.0), directions)
    loss, gradient = grad_of(lambda x: losses.colour_distance(losses.colour_quantiles(x, directions), target), image)
    assert np.isfinite(gradient).all() and (gradient < 0).mean() > 0.9  # brighten every pixel
