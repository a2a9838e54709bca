"""The shipped models: each style named after its style image, each with the config that made it,
small and working; the shipped MetaNet too."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from keras_style import stylize
from test_cli import ROOT

METANET = ROOT / "pretrained" / "metanet.keras"
SHIPPED = sorted(path for path in (ROOT / "pretrained").glob("*.keras") if path != METANET)


def config_of(path):
    return yaml.safe_load((ROOT / "conf" / f"{path.stem}.yml").read_text())


def test_at_least_five_styles_ship():
    assert {"wave", "udnie", "the_scream", "la_muse", "candy"} <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_shipped_style(path):
    config = config_of(path)
    assert Path(config["style_image"]).stem == path.stem == config["naming"]
    assert "trained here" in config["notes"]
    assert path.stat().st_size <= 8 * 2**20
    stylizer = stylize.TransformStylizer(stylize.load_model(path), path)
    photo = np.random.default_rng(0).uniform(0, 255, (37, 53, 3)).astype(np.float32)
    out = stylizer(photo)
    assert out.shape == photo.shape and np.isfinite(out).all() and out.std() > 1.0


def test_shipped_metanet_stylises_any_style_and_solid_colours():
    config = config_of(METANET)
    assert config["naming"] == "metanet" and "style/val" not in config["style_data"]
    assert "trained here" in config["notes"]
    assert METANET.stat().st_size <= 50 * 2**20
    stylizer = stylize.MetaNetStylizer(stylize.load_model(METANET), METANET)
    rng = np.random.default_rng(0)
    photo = rng.uniform(0, 255, (37, 53, 3)).astype(np.float32)
    results = []
    for style in (rng.uniform(0, 255, (64, 48, 3)), np.zeros((40, 30, 3)), np.full((40, 30, 3), 255.0)):
        stylizer.use_style([stylizer.encode(style.astype(np.float32))], "s")
        results.append(stylizer(photo))
        solid_photo = stylizer(np.full((24, 20, 3), 128.0, np.float32))
        assert np.isfinite(results[-1]).all() and np.isfinite(solid_photo).all()
    assert results[0].shape == photo.shape and results[0].std() > 1.0
    assert np.abs(results[1] - results[2]).mean() > 1.0  # the style changes the result
