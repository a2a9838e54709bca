"""The training styles' cache (keras_style.styles): found again after the paintings are copied,
made anew when a painting changes."""
import os

import numpy as np
from PIL import Image

from keras_style import metanet
from keras_style.styles import StyleSet
from keras_style.vgg import build_vgg

LAYERS = ["relu1_1", "relu2_1"]


def _paintings(folder, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(folder / name)
    return sorted(str(p) for p in folder.iterdir())


def _style_set(files, cache, calls):
    vgg = build_vgg(LAYERS, weights="random")
    return StyleSet(files, vgg, LAYERS, 32, metanet.ENCODE_SIDE, cache_dir=cache,
                    summarise=lambda views: calls.append(len(views)) or np.ones((len(views), 1)))


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
