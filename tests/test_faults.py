"""Training and stylising that survive faults: kills, interrupts, broken checkpoints, non-finite
losses, hostile training folders, and style images or photos of extreme sizes."""
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from test_cli import ROOT, assert_one_line_error, photo, run
from test_images import png_claiming_size

TINY = ("style_image: style.png\nnaming: tiny\ntrain_data: photos\nimage_size: 32\nbatch_size: 2\n"
        "max_steps: {steps}\nlog_every: 1000\nsave_every: 2\nbase: 4\nresidual_blocks: 1\n"
        "style_weight: 1.0e+5\n")


def tiny_work(tmp_path, steps):
    for i in range(3):
        photo(tmp_path / "photos" / f"p{i}.jpg", (48, 40), seed=i)
    photo(tmp_path / "style.png", (32, 32), seed=9)
    (tmp_path / "tiny.yml").write_text(TINY.format(steps=steps))
    return tmp_path, tmp_path / "models" / "tiny"


def saved_steps(run_dir):
    import tensorflow as tf
    state = tf.train.get_checkpoint_state(str(run_dir))
    paths = list(state.all_model_checkpoint_paths) if state else []
    return [int(p.rsplit("-", 1)[1]) for p in paths]


def signalled_training(tmp_path, signal_number, after_step, timeout=300):
    """A long tiny training run, sent `signal_number` once it has saved a checkpoint at `after_step`
    or later: (work folder, run folder, the process)."""
    work, run_dir = tiny_work(tmp_path, steps=10_000)
    env = {**os.environ, "KERAS_STYLE_VGG19": "random", "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Ctrl-C as a terminal delivers it, even when the tests run in the background (whose children
    # inherit an ignored SIGINT, and Python then never turns it into KeyboardInterrupt).
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-c", "tiny.yml"], cwd=work,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not any(s >= after_step for s in saved_steps(run_dir)):
        if process.poll() is not None:
            pytest.fail("training ended before its checkpoint:\n" + process.stderr.read())
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint at step {after_step} after {timeout} s")
        time.sleep(0.2)
    process.send_signal(signal_number)
    return work, run_dir, process


def checkpoint_weights(run_dir):
    """The transform network's weights as the newest checkpoint holds them."""
    import tensorflow as tf
    from keras_style.transform import build_transform_net
    net = build_transform_net(base=4, residual_blocks=1)
    tf.train.Checkpoint(model=net).restore(tf.train.latest_checkpoint(str(run_dir))).expect_partial()
    return net.get_weights()


def model_weights(path):
    from keras_style.stylize import load_model
    return load_model(path).get_weights()


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_resumes_there_with_the_same_weights(tmp_path):
    work, run_dir, process = signalled_training(tmp_path, signal.SIGKILL, after_step=4)
    process.wait()
    saved = max(saved_steps(run_dir))  # at most save_every (2) steps of work are lost
    assert saved >= 4

    # The same command, told to stop where the killed run last saved: it resumes there and exports
    # exactly the checkpoint's weights.
    result = run("train.py", "-c", "tiny.yml", "--set", f"max_steps={saved}", cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"resumed from step {saved}" in result.stdout
    for exported, saved_value in zip(model_weights(run_dir / "tiny.keras"), checkpoint_weights(run_dir)):
        np.testing.assert_array_equal(exported, saved_value)

    result = run("train.py", "-c", "tiny.yml", "--set", f"max_steps={saved + 3}", cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"resumed from step {saved}" in result.stdout and f"steps {saved + 1}..{saved + 3}" in result.stdout
    assert max(saved_steps(run_dir)) == saved + 3


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exports(tmp_path):
    work, run_dir, process = signalled_training(tmp_path, signal.SIGINT, after_step=2)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted at step" in out and "Traceback" not in err
    stopped = int(out.split("interrupted at step ")[1].split(":")[0])
    assert max(saved_steps(run_dir)) == stopped
    assert (run_dir / "tiny.keras").is_file()


def test_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    work, run_dir = tiny_work(tmp_path, steps=6)
    assert run("train.py", "-c", "tiny.yml", cwd=work).returncode == 0
    assert saved_steps(run_dir) == [2, 4, 6]
    data = run_dir / "ckpt-6.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # as if cut short by a crash

    result = run("train.py", "-c", "tiny.yml", "--set", "max_steps=8", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "ckpt-6 is unreadable" in result.stderr
    assert "resumed from step 4" in result.stdout and "steps 5..8" in result.stdout


def test_loss_that_stays_non_finite_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from keras_style import data, training
    from keras_style.config import load_config
    work, run_dir = tiny_work(tmp_path, steps=4)
    monkeypatch.chdir(work)
    monkeypatch.setenv("KERAS_STYLE_VGG19", "random")

    def trainer(config):
        task = training.TransformTask(config, data.SkippedFiles())
        return training.Trainer(config, task, training.make_optimizer(config, task)), task

    trainer(load_config("tiny.yml"))[0].run()
    good = checkpoint_weights(run_dir)

    broken, task = trainer(load_config("tiny.yml", ["max_steps=100"]))
    healthy_losses = task.losses
    task.losses = lambda photos: {k: v * np.nan for k, v in healthy_losses(photos).items()}
    with pytest.raises(training.TrainingDiverged) as info:
        broken.run()
    message = str(info.value)
    assert f"{training.NONFINITE_PATIENCE} steps in a row" in message and "ckpt-4" in message
    assert saved_steps(run_dir) == [2, 4]
    for before, after in zip(good, checkpoint_weights(run_dir)):
        np.testing.assert_array_equal(before, after)


# --- hostile training folders ---------------------------------------------------------------------

def hostile_folder(folder):
    """Three good photos of distinct solid colours (RGB, grayscale, CMYK) and four broken files."""
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 36), (255, 0, 0)).save(folder / "red.jpg", quality=100)
    Image.new("L", (36, 40), 128).save(folder / "gray.png")
    Image.new("CMYK", (40, 40), (255, 0, 0, 0)).save(folder / "cyan_cmyk.jpg", quality=100)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:300])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a picture at all\n")
    png_claiming_size(folder / "bomb.png", 30000, 30000)
    return ["truncated.jpg", "empty.jpg", "text.jpg", "bomb.png"]


def test_hostile_training_folder_skips_bad_files_and_uses_every_good_one(tmp_path):
    from keras_style import data
    bad = hostile_folder(tmp_path / "photos")
    warnings = io.StringIO()
    skipped = data.SkippedFiles(stream=warnings)
    files = data.list_image_files(tmp_path / "photos")
    colours = set()
    for batch in data.image_crops(files, 16, 2, skipped=skipped).take(12):
        colours.update(tuple(int(round(c / 32)) for c in crop.mean(axis=(0, 1))) for crop in batch.numpy())
    assert colours == {(8, 0, 0), (4, 4, 4), (0, 8, 8)}  # red, gray, cyan: all three good files
    assert skipped.count == len(bad)
    for name in bad:
        assert name in warnings.getvalue()


@pytest.mark.slow
def test_training_on_a_hostile_folder_counts_the_skipped_files_in_tensorboard(tmp_path):
    import tensorflow as tf
    work, run_dir = tiny_work(tmp_path, steps=4)
    bad = hostile_folder(work / "hostile")
    result = run("train.py", "-c", "tiny.yml", "--set", "train_data=hostile", "log_every=4", cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: skipping") == len(bad)
    counts = [value.simple_value if value.HasField("simple_value") else
              float(tf.make_ndarray(value.tensor))
              for events in run_dir.glob("events.out.tfevents.*")
              for event in tf.compat.v1.train.summary_iterator(str(events))
              for value in event.summary.value if value.tag == "skipped/unreadable_files"]
    assert counts and counts[-1] == len(bad)


# --- extreme style images and photos --------------------------------------------------------------

@pytest.fixture(scope="module")
def extreme_styles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("styles")
    Image.new("RGB", (8000, 8000), (30, 60, 200)).save(folder / "huge.png")
    Image.new("RGB", (9, 12), (200, 10, 10)).save(folder / "tiny.png")
    Image.new("RGB", (64, 48), (0, 0, 0)).save(folder / "black.png")
    return folder


@pytest.mark.parametrize("name, told", [("huge.png", "8000x8000, used at 512x512"),
                                        ("tiny.png", "9x12, used at 16x21"), ("black.png", None)])
def test_per_style_training_on_extreme_style_images_is_finite(tmp_path, monkeypatch, capsys,
                                                              extreme_styles, name, told):
    from keras_style import data, training
    from keras_style.config import load_config
    work, _ = tiny_work(tmp_path, steps=1)
    monkeypatch.chdir(work)
    monkeypatch.setenv("KERAS_STYLE_VGG19", "random")
    task = training.TransformTask(load_config("tiny.yml", [f"style_image={extreme_styles / name}"]),
                                  data.SkippedFiles())
    if told:
        assert told in capsys.readouterr().out
    photos = next(iter(task.dataset()))
    assert all(np.isfinite(float(v)) for v in task.losses(photos).values())


@pytest.mark.parametrize("name, told", [("huge.png", "8000x8000, used at 48x48"),
                                        ("tiny.png", "9x12, used at 16x21")])
def test_optimisation_with_extreme_style_images(tmp_path, extreme_styles, name, told):
    photo(tmp_path / "p.jpg", (48, 40))
    result = run("eval.py", "--image_file", "p.jpg", "--style_image", extreme_styles / name,
                 "--iterations", "2", "--image_size", "48", "--output", "out.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert told in result.stdout
    assert np.asarray(Image.open(tmp_path / "out.png")).std() > 0


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory):
    """Over the 4 megapixels stylised whole: this one goes in tiles."""
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    Image.new("RGB", (2600, 1700), (90, 140, 60)).save(path, quality=70)
    return path


def test_eval_stylises_a_photo_over_4_megapixels_at_its_own_size_or_at_max_size(tmp_path, big_photo):
    model = ROOT / "pretrained" / "wave.keras"
    result = run("eval.py", "--model_file", model, "--image_file", big_photo, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "generated" / "res_[wave]_[big].jpg").size == (2600, 1700)

    result = run("eval.py", "--model_file", model, "--image_file", big_photo, "--max_size", "320",
                 "--output", "small.jpg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "small.jpg").size == (320, 209)


def test_resuming_uses_the_configured_learning_rate_not_the_checkpoints(tmp_path, monkeypatch):
    from keras_style import data, training
    from keras_style.config import load_config
    work, _ = tiny_work(tmp_path, steps=2)
    monkeypatch.chdir(work)
    monkeypatch.setenv("KERAS_STYLE_VGG19", "random")
    for rate in ("1.0e-2", "1.0e-4"):
        config = load_config("tiny.yml", [f"learning_rate={rate}"])
        task = training.TransformTask(config, data.SkippedFiles())
        trainer = training.Trainer(config, task, training.make_optimizer(config, task))
        trainer.run()
    assert float(trainer.optimizer.learning_rate.numpy()) == pytest.approx(1e-4)


def test_checkpoints_of_another_network_are_an_error_not_overwritten(tmp_path):
    work, run_dir = tiny_work(tmp_path, steps=2)
    assert run("train.py", "-c", "tiny.yml", cwd=work).returncode == 0
    before = {p.name: p.read_bytes() for p in run_dir.glob("ckpt-*")}
    result = run("train.py", "-c", "tiny.yml", "--set", "base=6", "max_steps=4", cwd=work)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "none of its 1 checkpoints fits this config" in result.stderr.splitlines()[-1]
    assert {p.name: p.read_bytes() for p in run_dir.glob("ckpt-*")} == before
