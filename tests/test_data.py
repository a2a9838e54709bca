"""The MetaNet's style schedule (the port's phases), style variants, centre squares."""
import numpy as np

from keras_style import data, images

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def test_style_schedule_gives_one_style_at_a_time_then_mixes_them():
    schedule = data.style_schedule(4, 4, steps_per_style=2, styles_before_batching=2,
                                   styles_per_batch=(2, 3), seed=1)
    steps = list(schedule.take(60).as_numpy_iterator())
    for step in steps[:4]:  # one style at a time, every photo on it
        assert step["style_ids"].shape == (1,) and (step["style_index"] == 0).all()
    assert steps[0]["style_ids"] == steps[1]["style_ids"] != steps[2]["style_ids"] == steps[3]["style_ids"]
    counts = set()
    for step in steps[4:]:
        count = len(step["style_ids"])
        counts.add(count)
        assert 2 <= count <= 3 and sorted(set(step["style_index"])) == list(range(count))
    assert counts == {2, 3}
    ids = np.concatenate([step["style_ids"] for step in steps])
    assert set(ids) == {0, 1, 2, 3}


def test_style_schedule_resumed_skips_the_single_style_phase():
    schedule = data.style_schedule(4, 4, steps_per_style=2, styles_before_batching=2,
                                   styles_per_batch=(2, 2), seed=1, start_step=3)
    steps = list(schedule.take(3).as_numpy_iterator())
    assert [len(step["style_ids"]) for step in steps] == [1, 2, 2]


def test_centre_square_scales_the_shorter_side_then_crops_the_middle():
    image = np.zeros((30, 90, 3), np.float32)
    image[:, 30:60] = 255.0  # the middle third is white
    square = data.centre_square(image, 10).numpy()
    assert square.shape == (10, 10, 3)
    assert square[:, 1:-1].min() > 250.0  # the centre square of the scaled image is the white third
