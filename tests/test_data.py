"""The MetaNet's style schedule: crops and small views of the same style images, the port's phases."""
import numpy as np
import pytest
from PIL import Image

from keras_style import data

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


@pytest.fixture
def style_files(tmp_path):
    files = []
    for i, colour in enumerate(COLOURS):
        path = tmp_path / f"style{i}.png"
        Image.new("RGB", (40 + 10 * i, 70 - 10 * i), colour).save(path)
        files.append(str(path))
    return files


def test_style_schedule_pairs_crops_with_views_of_the_same_image(style_files):
    schedule = data.style_schedule(style_files, 16, 4, steps_per_style=2, styles_before_batching=2,
                                   styles_per_batch=(2, 3), encode_side=8, seed=1)
    steps = list(schedule.take(10).as_numpy_iterator())
    for step in steps[:4]:  # one style at a time, every photo on it
        assert step["styles"].shape == (1, 16, 16, 3) and step["style_views"].shape == (1, 8, 8, 3)
        assert (step["style_index"] == 0).all()
    assert np.array_equal(steps[0]["style_views"], steps[1]["style_views"])
    assert not np.array_equal(steps[1]["style_views"], steps[2]["style_views"])
    for step in steps[4:]:
        count = len(step["styles"])
        assert 2 <= count <= 3 and step["style_views"].shape == (count, 8, 8, 3)
        assert sorted(set(step["style_index"])) == list(range(count))
    for step in steps:
        crop_colours = step["styles"].mean(axis=(1, 2))
        view_colours = step["style_views"].mean(axis=(1, 2))
        np.testing.assert_allclose(crop_colours, view_colours, atol=1.0)
        assert {tuple(np.round(c).astype(int)) for c in crop_colours} <= set(COLOURS)


def test_centre_square_scales_the_shorter_side_then_crops_the_middle():
    image = np.zeros((30, 90, 3), np.float32)
    image[:, 30:60] = 255.0  # the middle third is white
    square = data.centre_square(image, 10).numpy()
    assert square.shape == (10, 10, 3)
    assert square[:, 1:-1].min() > 250.0  # the centre square of the scaled image is the white third
