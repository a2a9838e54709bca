"""Videos: frames read and written as streams (imageio-ffmpeg, an optional dependency that ships its
own ffmpeg: `pip install -e '.[video]'`), and stylised without flicker.

A feed-forward network with per-frame instance-norm statistics turns the small changes between
frames (sensor noise, compression) into visible flicker: every norm renormalises each frame by its
own mean and spread. Here the norms get statistics shared over the clip (`tiles.NormStatistics`
accumulated over frames spread through it), so a frame is stylised as if it were part of one image
with all the others.
"""
import math
from pathlib import Path

import numpy as np

from keras_style import images, tiles
from keras_style.errors import UserError
from keras_style.progress import Progress

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
STATISTICS_FRAMES = 16  # frames, spread evenly through the clip, whose statistics are shared


def is_video(path):
    """A video file by its name, or an animated GIF (a still GIF is a photo)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".gif":
        return suffix in VIDEO_SUFFIXES
    try:
        from PIL import Image
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except Exception:  # unreadable: the image reader will say why
        return False


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError("stylising videos needs imageio-ffmpeg: pip install -e '.[video]' "
                        "(or pip install imageio-ffmpeg)") from None
    return imageio_ffmpeg


class Clip:
    """A video file's frames as a stream of (H, W, 3) uint8 arrays, scaled to `max_size` if given."""

    def __init__(self, path, max_size=None):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such file" + (" (it is a folder)" if self.path.is_dir() else ""))
        reader = self._reader()
        try:
            meta = next(reader)
        except (StopIteration, RuntimeError, OSError) as exc:
            raise UserError(f"{self.path}: not a readable video ({_first_line(exc)})") from None
        finally:
            reader.close()
        self.fps = float(meta.get("fps") or 25.0)
        width, height = meta["source_size"] if meta.get("source_size") else meta["size"]
        self.source_size = (int(width), int(height))
        self.has_audio = bool(meta.get("audio_codec"))
        duration = float(meta.get("duration") or 0.0)
        self.frame_count = max(1, round(duration * self.fps)) if duration else None
        self.size = _scaled_size(self.source_size, max_size)
        self.max_size = max_size

    def _reader(self):
        return _ffmpeg().read_frames(str(self.path))

    def frames(self):
        """The frames in order; each at `self.size`."""
        reader = self._reader()
        try:
            meta = next(reader)
            width, height = meta["size"]
            for raw in reader:
                frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
                if (width, height) != self.size:
                    frame = images.resize(frame, (self.size[1], self.size[0])).astype(np.uint8)
                yield frame
        except RuntimeError as exc:
            raise UserError(f"{self.path}: the video stops being readable ({_first_line(exc)})") from None
        finally:
            reader.close()


def _scaled_size(size, max_size):
    width, height = size
    if not max_size or max(width, height) <= max_size:
        return (width, height)
    scale = max_size / max(width, height)
    return (max(2, round(width * scale)), max(2, round(height * scale)))


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


class ClipWriter:
    """Writes frames to an .mp4 (H.264) at `fps`, muxing the audio of `audio_from` if given."""

    def __init__(self, path, size, fps, audio_from=None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(f".{self.path.stem}.part{self.path.suffix}")
        # Sizes that are not multiples of 2 cannot be H.264 yuv420p: macro_block_size=1 with an
        # even size (the frames are padded by one pixel where needed).
        self.size = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        self.writer = _ffmpeg().write_frames(
            str(self.partial), self.size, fps=fps, quality=8, macro_block_size=1,
            audio_path=str(audio_from) if audio_from else None, audio_codec="aac" if audio_from else None)
        self.writer.send(None)

    def write(self, frame):
        frame = np.asarray(np.clip(np.rint(frame), 0, 255), np.uint8)
        pad = ((0, self.size[1] - frame.shape[0]), (0, self.size[0] - frame.shape[1]), (0, 0))
        self.writer.send(np.ascontiguousarray(np.pad(frame, pad, mode="edge")))

    def close(self, keep=True):
        self.writer.close()
        if keep:
            self.partial.replace(self.path)
        else:
            self.partial.unlink(missing_ok=True)


def clip_statistics(stylizer, clip, count=STATISTICS_FRAMES):
    """Normalisation statistics shared over the clip: pooled over `count` frames spread evenly
    through it (the first `count` when its length is unknown)."""
    statistics = tiles.NormStatistics(stylizer.network, stylizer.forward)
    every = max(1, math.ceil((clip.frame_count or count) / count))
    progress = Progress(count, label="clip statistics", log_seconds=10.0)
    seen = 0
    for index, frame in enumerate(clip.frames()):
        if index % every:
            continue
        statistics.accumulate(frame)
        seen += 1
        progress.update(min(seen, count))
        if seen == count:
            break
    progress.close()
    return statistics


def stylize_clip(stylizer, clip, output, statistics=None, tile_size=None):
    """Stylise every frame of `clip` into `output` (an .mp4), with statistics shared over the clip
    (`clip_statistics` by default); returns (frames, seconds of stylising)."""
    import time
    statistics = statistics or clip_statistics(stylizer, clip)
    writer = ClipWriter(output, clip.size, clip.fps, clip.path if clip.has_audio else None)
    progress = Progress(clip.frame_count or 0, label="frame", log_seconds=10.0)
    done, started, ok = 0, time.perf_counter(), False
    try:
        for frame in clip.frames():
            writer.write(tiles.stylize_tiles(stylizer.network, stylizer.forward, frame,
                                             tile_size or max(frame.shape[:2]), statistics=statistics))
            done += 1
            elapsed = time.perf_counter() - started
            progress.total = max(progress.total, done)
            progress.update(done, {"fps": done / elapsed if elapsed else 0.0})
        ok = done > 0
    finally:
        progress.close()
        writer.close(keep=ok)
    if not ok:
        raise UserError(f"{clip.path}: the video has no frames")
    return done, time.perf_counter() - started
