"""The MetaNet's style schedule: style ids with small views of those images, the port's phases."""
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


def test_style_schedule_pairs_style_ids_with_views_of_the_same_image(style_files):
    schedule = data.style_schedule(style_files, 4, steps_per_style=2, styles_before_batching=2,
                                   styles_per_batch=(2, 3), encode_side=8, seed=1)
    steps = list(schedule.take(10).as_numpy_iterator())
    for step in steps[:4]:  # one style at a time, every photo on it
        assert step["style_ids"].shape == (1,) and step["style_views"].shape == (1, 8, 8, 3)
        assert (step["style_index"] == 0).all()
    assert steps[0]["style_ids"] == steps[1]["style_ids"] != steps[2]["style_ids"] == steps[3]["style_ids"]
    for step in steps[4:]:
        count = len(step["style_ids"])
        assert 2 <= count <= 3 and step["style_views"].shape == (count, 8, 8, 3)
        assert sorted(set(step["style_index"])) == list(range(count))
    for step in steps:
        view_colours = step["style_views"].mean(axis=(1, 2))
        np.testing.assert_allclose(view_colours, [COLOURS[i] for i in step["style_ids"]], atol=1.0)


def test_style_schedule_leaves_out_unreadable_styles(style_files, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    skipped = data.SkippedFiles()
    schedule = data.style_schedule([str(broken)] + style_files, 4, steps_per_style=1,
                                   styles_before_batching=0, styles_per_batch=(2, 2), encode_side=8,
                                   skipped=skipped)
    ids = np.concatenate([step["style_ids"] for step in schedule.take(8).as_numpy_iterator()])
    assert 0 not in ids and set(ids) <= {1, 2, 3, 4}
    assert skipped.count == 1


def test_centre_square_scales_the_shorter_side_then_crops_the_middle():
    image = np.zeros((30, 90, 3), np.float32)
    image[:, 30:60] = 255.0  # the middle third is white
    square = data.centre_square(image, 10).numpy()
    assert square.shape == (10, 10, 3)
    assert square[:, 1:-1].min() > 250.0  # the centre square of the scaled image is the white third
