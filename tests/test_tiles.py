"""Stylising in tiles: the same picture as in one piece, with the whole photo's norm statistics."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_style import tiles
from keras_style.layers import PALETTE_SIZE, KeepPalette, palette_of
from keras_style.metanet import build_meta_transform
from keras_style.transform import build_transform_net


@pytest.fixture(scope="module")
def network():
    keras.utils.set_random_seed(7)
    model = build_transform_net(4, 2)
    for layer in tiles.norm_layers(model):  # norms with visible scales and shifts
        rng = np.random.default_rng(len(layer.name))
        layer.set_weights([rng.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32),
                           rng.normal(0, 0.3, layer.beta.shape).astype(np.float32)])
    return model


def smooth_photo(height, width, seed=0):
    """A photo-like image: smooth shapes plus a little texture (random pixels have no structure)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(6 * x + 3 * c) * np.cos(5 * y - c) for c in range(3)]
    image = 128 + 90 * np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def apply(model, batch):
    return model(batch, training=False)


def whole(model, photo):
    return np.asarray(model(photo[None].astype(np.float32)))[0]


def test_tile_grid_covers_the_photo_once():
    grid = tiles.tile_grid(70, 45, 32)
    covered = np.zeros((70, 45), int)
    for top, left, bottom, right in grid:
        covered[top:bottom, left:right] += 1
    assert (covered == 1).all() and len(grid) == 3 * 2


def test_exact_statistics_give_the_whole_photos_pixels(network):
    # (Sides that are multiples of 4: a network pads other photos to one, and the padding counts in
    # the statistics of the photo taken whole but not in the tiles'.)
    photo = smooth_photo(152, 132)
    want = whole(network, photo)
    got = tiles.stylize_tiles(network, apply, photo, tile_size=48)
    assert got.dtype == np.uint8 and got.shape == photo.shape
    assert np.abs(got - np.clip(want, 0, 255)).mean() < 0.6  # rounding to 8 bits


def test_later_passes_resume_from_each_tiles_features_with_the_same_statistics(network, monkeypatch):
    photo, grid = smooth_photo(152, 132, seed=4), tiles.tile_grid(152, 132, 48)
    resumed = tiles.NormStatistics(network, apply)
    resumptions = []
    resume = resumed._resume
    resumed._resume = lambda features: resumptions.append(features.shape) or resume(features)
    resumed.measure_tiles(photo, grid, tiles.MARGIN)
    later = [n for n in resumed.norms if n not in resumed.head_norms]
    assert len(later) == 2 * 2 + 2 and len(resumptions) == len(later)  # 2 blocks, up1, up2: one trace each
    assert all(shape[-1] == network.get_layer(tiles.RESUME_AT).output.shape[-1] for shape in resumptions)
    monkeypatch.setattr(tiles, "FEATURES_BUDGET", 0)  # too little memory: every pass from the photo
    restarted = tiles.NormStatistics(network, apply)
    restarted.measure_tiles(photo, grid, tiles.MARGIN)
    for name, sums in restarted.sums.items():
        for got, want in zip(resumed.sums[name], sums):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_each_tiles_own_statistics_would_show_seams(network):
    """Why the statistics are handed over: tiles normalised by themselves differ from the whole."""
    photo = smooth_photo(128, 128, seed=2)
    want = np.clip(whole(network, photo), 0, 255)
    own = np.zeros_like(want)
    for top, left, bottom, right in tiles.tile_grid(128, 128, 64):
        own[top:bottom, left:right] = whole(network, photo[top:bottom, left:right])
    handed = tiles.stylize_tiles(network, apply, photo, tile_size=64)
    assert np.abs(np.clip(own, 0, 255) - want).mean() > 5 * np.abs(handed - want).mean()


@pytest.mark.parametrize("demodulate, color_match, keep_palette",
                         [(False, None, False), (True, None, False), (False, 0.5, False), (False, 0.5, True)])
def test_the_metanet_transform_takes_statistics_too(demodulate, color_match, keep_palette):
    keras.utils.set_random_seed(2)
    transform = build_meta_transform(2, 4, 1, demodulate=demodulate, color_match=color_match,
                                     keep_palette=keep_palette)
    colour = 0 if color_match is None else 1
    assert len(tiles.norm_layers(transform)) == (3 if demodulate else 3 + 4) + colour  # stem, down1, up2 (+ dynamic)
    assert all(part is not None for part in tiles.split_at(transform, tiles.RESUME_AT))
    params = np.random.default_rng(0).normal(0, 0.3, (1, transform.inputs[1].shape[-1]))
    if color_match is not None:  # a painting's colours: means, then standard deviations
        params[0, -6 - PALETTE_SIZE * keep_palette:][:6] = [90, 150, 200, 30, 50, 20]
    if keep_palette:  # a one-colour painting, so the bounds are the photo's (its whole, or a tile's)
        params[0, -PALETTE_SIZE:] = np.asarray(palette_of(np.full((1, 4, 4, 3), (70.0, 140.0, 60.0))))[0]
    params = tf.constant(params, tf.float32)
    photo = smooth_photo(92, 72, seed=5)
    if keep_palette:  # a photo of fewer colours than the result's: the bounds hold it in
        photo = (photo * 0.4 + 80).astype(np.uint8)  # (tiles at this size see most of the photo: below)
    with_style = lambda model, batch: model([batch, params], training=False)  # noqa: E731
    want = np.clip(np.asarray(with_style(transform, tf.constant(photo[None], tf.float32)))[0], 0, 255)
    got = tiles.stylize_tiles(transform, with_style, photo, tile_size=32)
    assert np.abs(got - want).mean() < 0.6
    assert all(layer.statistics is None for layer in tiles.norm_layers(transform))  # handed back
    assert all(layer.photo_palette is None for layer in transform.layers if isinstance(layer, KeepPalette))


def test_tiles_keep_to_the_whole_photos_palette():
    """Each tile is bounded by the whole photo's palette, not its own part's: a left half of warm
    colours and a right half of cool ones, and a result far outside both."""
    photo = keras.Input((None, None, 3))
    params = keras.Input((PALETTE_SIZE,))
    wild = keras.layers.Rescaling(3.0, offset=-200.0)(photo)
    network = keras.Model([photo, params], KeepPalette()([wild, photo, params]))
    painting = tf.constant(palette_of(np.full((1, 2, 2, 3), (90.0, 90.0, 90.0))))
    image = smooth_photo(64, 64, seed=3)
    image[:, :32] = image[:, :32] // 2 + (120, 60, 0)
    image[:, 32:] = image[:, 32:] // 2 + (0, 40, 120)
    apply = lambda model, batch: model([batch, painting])  # noqa: E731
    want = np.clip(np.round(np.asarray(apply(network, tf.constant(image[None], tf.float32)))[0]), 0, 255)
    np.testing.assert_array_equal(tiles.stylize_tiles(network, apply, image, tile_size=32, margin=0), want)
    own = np.asarray(apply(network, tf.constant(image[None, :, :32], tf.float32)))[0]
    assert np.abs(np.clip(own, 0, 255) - want[:, :32]).mean() > 5  # its own palette alone: another result
