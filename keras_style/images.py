"""Reading, writing and resizing images.

Images leave this module as float32 RGB arrays of shape (H, W, 3) with values in [0, 255], whatever
the file held: grayscale, palette, RGBA (composited on white), CMYK, 16-bit, or EXIF-rotated.
Every failure a user can cause becomes an `ImageError` naming the file and the reason.
"""
import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from keras_style.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                ".tif": "TIFF", ".tiff": "TIFF"}
# Larger than any real photo (a 100-megapixel medium-format frame is ~11600 x 8700), small enough
# that a forged header cannot make us allocate gigabytes.
MAX_PIXELS = 120_000_000


class ImageError(UserError):
    """An image file that cannot be read or written."""


def load_image(path, max_size=None, dtype=np.float32):
    """Read `path` as RGB in [0, 255]; with `max_size`, the longer side is at most that. `dtype`
    np.uint8 keeps a huge photo at a quarter of float32's memory (grayscale and 16-bit files are
    rounded to 8 bits)."""
    path = Path(path)
    _check_readable_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_dimensions(path, img.size)
                if max_size and img.format == "JPEG":
                    img.draft("RGB", (max_size, max_size))  # decode at reduced scale: fast, low memory
                img = ImageOps.exif_transpose(img)
                array = _to_rgb_array(img, dtype)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{path}: image too large to decode in memory") from None
    except Exception as exc:  # PIL signals bad data with many exception types
        raise ImageError(f"{path}: not a readable image ({_describe(exc)})") from None
    if max_size:
        array = resize_to_max(array, max_size)
    return array


def load_painting_at(path, side):
    """A style image scaled, up or down, so its longer side is exactly `side`: a painting as the
    yardstick (quality.py) judges it, whatever size its file is."""
    return resize_to_longer(load_style_image(path, side, verbose=False), side)


def load_style_image(path, max_size, min_side=16, label="style image", verbose=True):
    """A style image at most `max_size` on its longer side and at least `min_side` on its shorter
    one (Gram and mean/std statistics do not depend on size, so tiny images are simply enlarged and
    huge ones shrunk, which also keeps memory bounded); says so when the size changes (`verbose`)."""
    array = enlarge_to_min_side(load_image(path, max_size=max_size), min_side)
    if not verbose:
        return array
    width, height = header_size(path)
    if max(width, height) != max(array.shape[:2]) or min(width, height) != min(array.shape[:2]):
        print(f"{label} {path}: {width}x{height}, used at {array.shape[1]}x{array.shape[0]}")
    return array


def header_size(path):
    """(width, height) as stored in the file's header, without decoding the pixels."""
    path = Path(path)
    _check_readable_file(path)
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as exc:
        raise ImageError(f"{path}: not a readable image ({_describe(exc)})") from None


def _check_readable_file(path):
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: file is empty")


def _check_dimensions(path, size):
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"{path}: image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{path}: image is {width}x{height}, over the {MAX_PIXELS // 1_000_000} "
                         "megapixel limit (a decompression bomb?)")


def _describe(exc):
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _to_rgb_array(img, dtype=np.float32):
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        rgb = _high_depth_to_rgb(np.asarray(img, dtype=np.float64), sixteen_bit=img.mode != "F")
        return np.rint(rgb).astype(dtype) if dtype == np.uint8 else rgb.astype(dtype)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=dtype)


def _high_depth_to_rgb(values, sixteen_bit):
    """Integer modes come from 16-bit files (a dark one still spans 0..65535); float images are
    taken as 0..255 unless their values say otherwise."""
    if values.ndim == 3:
        values = values[..., 0]
    scale = 255.0 / 65535.0 if sixteen_bit or values.max(initial=0) > 255 else 1.0
    gray = np.clip(values * scale, 0, 255).astype(np.float32)
    return np.repeat(gray[..., None], 3, axis=-1)


def resize_to_max(array, max_size):
    """Shrink so the longer side is at most `max_size` (never enlarges)."""
    height, width = array.shape[:2]
    scale = max_size / max(height, width)
    if scale >= 1:
        return array
    return resize(array, (max(1, round(height * scale)), max(1, round(width * scale))))


def resize_to_longer(array, size):
    """Scale up or down so the longer side is exactly `size`."""
    height, width = array.shape[:2]
    scale = size / max(height, width)
    return resize(array, (max(1, round(height * scale)), max(1, round(width * scale))))


def resize_shorter_to(array, size):
    """Scale up or down so the shorter side is exactly `size` (the longer side at least `size`)."""
    height, width = array.shape[:2]
    scale = size / min(height, width)
    return resize(array, (max(size, round(height * scale)), max(size, round(width * scale))))


def enlarge_to_min_side(array, min_side):
    """Scale up (aspect kept) so the shorter side is at least `min_side`; larger images are untouched."""
    height, width = array.shape[:2]
    scale = min_side / min(height, width)
    if scale <= 1:
        return array
    return resize(array, (max(min_side, round(height * scale)), max(min_side, round(width * scale))))


def resize(array, shape):
    """Resize to (height, width) with a high-quality filter."""
    height, width = shape
    if array.shape[:2] == (height, width):
        return array
    img = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return np.asarray(img.resize((width, height), Image.LANCZOS), dtype=np.float32)


def save_format(path, label=None, alternative=""):
    """The PIL format that `path`'s suffix asks for; an unknown suffix is an ImageError naming
    `label` (default: the path) and the formats there are (plus `alternative`, e.g. "or a folder")."""
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        choices = ", ".join(sorted(SAVE_FORMATS)) + (f", {alternative}" if alternative else "")
        raise ImageError(f"{label or path}: unknown image format {path.suffix!r} (use one of {choices})")
    return fmt


def save_image(array, path, quality=95):
    """Write an RGB array in [0, 255]; the folder is created, the file replaced atomically."""
    path = Path(path)
    fmt = save_format(path)
    if array.dtype != np.uint8:  # (a huge photo's result is uint8 already: no float copy of it)
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    img = Image.fromarray(array)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=path.suffix)
        with os.fdopen(fd, "wb") as handle:
            # JPEG with full-resolution colour (subsampling 0 = 4:4:4): Pillow's default 4:2:0 blurs a
            # style's fine coloured strokes (candy on content/val: style_dist 0.369 at 4:2:0, 0.362 at 4:4:4).
            options = {"quality": quality, "subsampling": 0} if fmt == "JPEG" else {}
            img.save(handle, format=fmt, **options)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the result from other users
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise ImageError(f"{path}: cannot write ({_describe(exc)})") from None
    finally:
        if tmp is not None:  # a failed write (e.g. disk full) must not leave a partial temp file
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def find_images(root):
    """All image files under `root` (recursively), sorted; `root` may also be a single file."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ImageError(f"{root}: no such file or folder")
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))


# BT.601 luma/chroma, used to transfer style on luminance only and keep the photo's colours.
_RGB_TO_YUV = np.array([[0.299, 0.587, 0.114],
                        [-0.14713, -0.28886, 0.436],
                        [0.615, -0.51499, -0.10001]], dtype=np.float32)
_YUV_TO_RGB = np.linalg.inv(_RGB_TO_YUV).astype(np.float32)


def rgb_to_yuv(array):
    return array @ _RGB_TO_YUV.T


def yuv_to_rgb(array):
    return array @ _YUV_TO_RGB.T


def luminance_as_rgb(array, like=None):
    """The luminance as a 3-channel gray image; with `like`, matched to that image's luminance mean/std."""
    y = rgb_to_yuv(array)[..., 0]
    if like is not None:
        target = rgb_to_yuv(like)[..., 0]
        y = (y - y.mean()) / (y.std() + 1e-6) * target.std() + target.mean()
    return np.repeat(np.clip(y, 0, 255)[..., None], 3, axis=-1)


def with_colours_of(luminance_image, colour_image):
    """Combine the luminance of the first image with the chroma of the second (same size)."""
    yuv = rgb_to_yuv(colour_image)
    yuv[..., 0] = rgb_to_yuv(luminance_image)[..., 0]
    return np.clip(yuv_to_rgb(yuv), 0, 255)
