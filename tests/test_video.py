"""Videos through eval.py: frame rate, size, audio and frame count kept; one-line errors."""
import wave

import numpy as np
import pytest
from PIL import Image

from test_cli import assert_one_line_error, photo, run, trained  # noqa: F401  (the fixture)

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")


def write_clip(path, frames, fps=12, audio=None):
    writer = imageio_ffmpeg.write_frames(str(path), frames[0].shape[1::-1], fps=fps, macro_block_size=1,
                                         audio_path=audio and str(audio), audio_codec=audio and "aac")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def panned(count, height=48, width=64, step=3, seed=0):
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 255, (height, width + step * count, 3)).astype(np.uint8)
    return [scene[:, i * step:i * step + width] for i in range(count)]


def read_clip(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    return meta, frames


def tone(path, seconds=1.0, rate=8000):
    samples = (np.sin(np.linspace(0, 440 * 2 * np.pi * seconds, int(rate * seconds))) * 8000).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def test_a_clip_keeps_its_frames_rate_size_and_audio(trained, tmp_path):  # noqa: F811
    work, _ = trained
    write_clip(work / "clip.mp4", panned(12, 38, 50), fps=12, audio=tone(tmp_path / "a.wav"))
    result = run("eval.py", "--model_file", "models/tiny/tiny.keras", "--image_file", "clip.mp4", cwd=work)
    assert result.returncode == 0, result.stderr
    out = work / "generated" / "res_[tiny]_[clip].mp4"
    meta, frames = read_clip(out)
    assert meta["fps"] == pytest.approx(12) and len(frames) == 12
    assert frames[0].shape == (38, 50, 3)
    assert meta.get("audio_codec"), meta
    assert "12 frames" in result.stdout and "frames/s" in result.stdout and "with audio" in result.stdout
    assert not list((work / "generated").glob(".*part*"))


def test_a_gif_and_max_size(trained):  # noqa: F811
    work, _ = trained
    frames = [Image.fromarray(f) for f in panned(5, 40, 60, seed=1)]
    frames[0].save(work / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = run("eval.py", "--model_file", "models/tiny/tiny.keras", "--image_file", "anim.gif",
                 "--max_size", "30", "--output", "out/anim.mp4", cwd=work)
    assert result.returncode == 0, result.stderr
    meta, got = read_clip(work / "out" / "anim.mp4")
    assert len(got) == 5 and meta["fps"] == pytest.approx(10)
    assert got[0].shape[:2] == (20, 30)


@pytest.mark.parametrize("make, args, fragment", [
    (lambda w: (w / "bad.mp4").write_text("not a video"), ["--image_file", "bad.mp4"], "bad.mp4: not a readable video"),
    (lambda w: None, ["--image_file", "clip.mp4", "--output", "x.jpg"], "a video's result is an .mp4"),
    (lambda w: None, ["--image_file", "photos/sub/p0.jpg", "--output", "x.mp4"], "needs one video"),
    (lambda w: None, ["--image_file", "clip.mp4", "--smoothing", "1"], "--smoothing must be from 0"),
])
def test_video_errors_are_one_line(trained, make, args, fragment):  # noqa: F811
    work, _ = trained
    if not (work / "clip.mp4").exists():
        write_clip(work / "clip.mp4", panned(3))
    make(work)
    result = run("eval.py", "--model_file", "models/tiny/tiny.keras", *args, cwd=work)
    assert_one_line_error(result, fragment)


def test_optimisation_refuses_videos(tmp_path):
    write_clip(tmp_path / "c.mp4", panned(2))
    photo(tmp_path / "s.jpg")
    result = run("eval.py", "--image_file", "c.mp4", "--style_image", "s.jpg", cwd=tmp_path)
    assert_one_line_error(result, "needs a trained network")


def test_without_imageio_ffmpeg_one_line_says_how_to_install(trained, tmp_path):  # noqa: F811
    work, _ = trained
    write_clip(work / "c2.mp4", panned(2))
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "imageio_ffmpeg.py").write_text("raise ImportError('blocked for the test')\n")
    result = run("eval.py", "--model_file", "models/tiny/tiny.keras", "--image_file", "c2.mp4", cwd=work,
                 env_extra={"PYTHONPATH": str(blocker)})
    assert_one_line_error(result, "pip install -e '.[video]'")


@pytest.mark.parametrize("dy, dx", [(0, 3), (-2, 5), (4, -1), (0, 0)])
def test_global_shift_finds_the_cameras_motion(dy, dx):
    from keras_style.video import global_shift, moved
    scene = np.random.default_rng(1).uniform(0, 255, (80, 90, 3)).astype(np.float32)
    previous, current = scene[10:60, 10:70], scene[10 + dy:60 + dy, 10 + dx:70 + dx]
    assert global_shift(previous, current) == (dy, dx)
    out, defined = moved(previous, dy, dx)
    assert np.array_equal(out[defined], current[defined]) and defined.sum() == (50 - abs(dy)) * (60 - abs(dx))


def warping_error(outs, step):
    return np.mean([np.abs(b[:, :-step] - a[:, step:]).mean() for a, b in zip(outs, outs[1:])])


def test_steady_keeps_a_strided_networks_strokes_in_place_on_a_pan():
    """Stylised on its own, content moved by 3 px falls on another place of the 4-pixel grid of the
    stride-2 convolutions and is drawn anew; keeping it on the grid removes most of the difference."""
    import keras
    from keras_style.transform import build_transform_net
    from keras_style.video import Steady
    keras.utils.set_random_seed(0)
    network = build_transform_net(base=4, residual_blocks=1)
    stylize_frame = lambda frame: np.asarray(network(frame[None].astype(np.float32)))[0]  # noqa: E731
    frames = [f.astype(np.float32) for f in panned(8, 64, 64, step=3, seed=2)]
    alone = [stylize_frame(f) for f in frames]
    steady = Steady(stylize_frame, smoothing=0.0)
    kept = [steady(f) for f in frames]
    assert warping_error(kept, 3) < 0.5 * warping_error(alone, 3)
    smoothed = Steady(stylize_frame, smoothing=0.3)
    assert warping_error([smoothed(f) for f in frames], 3) < warping_error(kept, 3)
