"""The shipped styles: each named after its style image, with the config that made it, small, working."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from keras_style import stylize
from test_cli import ROOT

SHIPPED = sorted((ROOT / "pretrained").glob("*.keras"))


def test_at_least_five_styles_ship():
    assert {"wave", "udnie", "the_scream", "la_muse", "candy"} <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_style(path):
    config = yaml.safe_load((ROOT / "conf" / f"{path.stem}.yml").read_text())
    assert Path(config["style_image"]).stem == path.stem == config["naming"]
    assert "trained here" in config["notes"]
    assert path.stat().st_size <= 8 * 2**20
    stylizer = stylize.TransformStylizer(stylize.load_model(path), path)
    photo = np.random.default_rng(0).uniform(0, 255, (37, 53, 3)).astype(np.float32)
    out = stylizer(photo)
    assert out.shape == photo.shape and np.isfinite(out).all() and out.std() > 1.0
