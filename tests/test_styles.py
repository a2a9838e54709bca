"""The training styles (keras_style.styles): their loss targets at the size asked for; the cache found
again after the paintings are copied, made anew when a painting changes."""
import os

import numpy as np
import pytest
from PIL import Image

from keras_style import images, losses, metanet
from keras_style.styles import StyleSet
from keras_style.vgg import build_vgg

LAYERS = ["relu1_1", "relu2_1"]


def _paintings(folder, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(folder / name)
    return sorted(str(p) for p in folder.iterdir())


def _style_set(files, cache, calls, vgg=None, enlarge=False):
    vgg = vgg if vgg is not None else build_vgg(LAYERS, weights="random")
    return StyleSet(files, vgg, LAYERS, 32, metanet.ENCODE_SIDE, cache_dir=cache, enlarge=enlarge,
                    summarise=lambda views: calls.append(len(views)) or np.ones((len(views), 1)))


@pytest.mark.parametrize("enlarge, longer_side", [(False, 24), (True, 32)])
def test_targets_are_the_grams_of_the_painting_at_its_own_size_or_enlarged(tmp_path, enlarge, longer_side):
    files = _paintings(tmp_path / "paintings", seed=0)
    vgg = build_vgg(LAYERS, weights="random")
    targets = _style_set(files, tmp_path / "cache", [], vgg, enlarge).targets([1])
    painting = images.resize_to_longer(images.load_image(files[1]), longer_side)
    features = vgg(painting[None])
    for name in LAYERS:
        expected = np.asarray(losses.gram_matrix(features[name]))
        np.testing.assert_allclose(targets[name][0], expected, rtol=2e-3, atol=1e-3 * np.abs(expected).max())


def test_style_cache_survives_new_modification_times_but_not_new_contents(tmp_path):
    files, calls = _paintings(tmp_path / "paintings", seed=0), []
    _style_set(files, tmp_path / "cache", calls)
    for f in files:  # a copy of the data: same bytes, new times
        os.utime(f, (1e9, 1e9))
    again = _style_set(files, tmp_path / "cache", calls)
    assert calls == [2]
    assert again.files == files
    _paintings(tmp_path / "paintings", seed=1)  # same names and sizes, other pixels
    _style_set(files, tmp_path / "cache", calls)
    assert calls == [2, 2]
