"""Reading every kind of image file as float32 RGB, the errors for bad files, writing and resizing."""
import io
import os
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from keras_style import images
from keras_style.errors import UserError
from keras_style.images import ImageError


def rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(img, path, **kwargs):
    img.save(path, **kwargs)
    return path


def expect_error(path, *fragments, **kwargs):
    with pytest.raises(ImageError) as info:
        images.load_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


# --- reading -------------------------------------------------------------------------------------

def test_rgb_png_reads_exactly_as_float32(tmp_path):
    pixels = rgb(5, 7)
    out = images.load_image(save(Image.fromarray(pixels), tmp_path / "a.png"))
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, pixels)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = rgb(4, 6)[..., 0]
    out = images.load_image(save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    assert out.shape == (4, 6, 3)
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=-1))


def palette_image(tmp_path, transparency=None):
    palette = np.array([[255, 0, 0], [0, 128, 0], [10, 20, 30], [0, 0, 0]], np.uint8)
    indices = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    img = Image.fromarray(indices, "P")
    img.putpalette(palette.ravel().tolist())
    kwargs = {} if transparency is None else {"transparency": transparency}
    return save(img, tmp_path / "p.png", **kwargs), palette[indices]


def test_palette_image_is_looked_up(tmp_path):
    path, expected = palette_image(tmp_path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(images.load_image(path), expected)


def test_palette_transparent_index_reads_as_white(tmp_path):
    path, expected = palette_image(tmp_path, transparency=3)
    assert "transparency" in Image.open(path).info
    expected[1, 0] = 255  # index 3 (black in the palette) is transparent
    np.testing.assert_array_equal(images.load_image(path), expected)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)   # opaque
    rgba[0, 1] = (0, 0, 0, 0)        # fully transparent black
    rgba[1, 0] = (200, 0, 100, 0)    # fully transparent colour
    rgba[1, 1] = (0, 0, 0, 128)      # half transparent black -> mid gray
    out = images.load_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "t.png"))
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    np.testing.assert_array_equal(out[1, 0], [255, 255, 255])
    np.testing.assert_allclose(out[1, 1], [255 * (1 - 128 / 255)] * 3, atol=1)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, :8] = (0, 255, 255, 0)  # red
    cmyk[:, 8:] = (0, 0, 0, 0)      # white
    path = save(Image.fromarray(cmyk, "CMYK"), tmp_path / "c.jpg", quality=100)
    assert Image.open(path).mode == "CMYK"
    out = images.load_image(path)
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out[4, 2], [255, 0, 0], atol=6)
    np.testing.assert_allclose(out[4, 13], [255, 255, 255], atol=6)


def test_16_bit_png_is_scaled_to_0_255(tmp_path):
    values = np.array([[0, 1000, 65535], [32768, 300, 65535]], np.uint16)
    path = save(Image.fromarray(values), tmp_path / "d.png")
    assert Image.open(path).mode == "I;16"
    out = images.load_image(path)
    assert out.dtype == np.float32 and out.shape == (2, 3, 3)
    expected = values.astype(np.float64) * 255 / 65535
    np.testing.assert_allclose(out, np.repeat(expected[..., None], 3, -1), rtol=1e-5, atol=1e-4)


def test_exif_orientation_6_is_applied(tmp_path):
    pixels = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high
    pixels[:, :16] = (255, 0, 0)   # left half red
    pixels[:, 16:] = (0, 0, 255)   # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = save(Image.fromarray(pixels), tmp_path / "r.jpg", exif=exif, quality=95, subsampling=0)
    out = images.load_image(path)
    assert out.shape == (32, 16, 3)  # width and height swapped
    expected = np.rot90(pixels, k=-1)  # clockwise: the left half ends up on top
    np.testing.assert_allclose(out, expected, atol=12)
    assert out[4, 8, 0] > 200 and out[28, 8, 2] > 200


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("size, max_size, expected", [
    ((60, 40), 30, (20, 30)),    # (width, height) -> (height, width)
    ((40, 60), 30, (30, 20)),
    ((50, 50), 64, (50, 50)),    # never enlarged
    ((100, 30), 10, (3, 10)),
])
def test_max_size_caps_longer_side_keeping_aspect(tmp_path, suffix, size, max_size, expected):
    path = save(Image.fromarray(rgb(size[1], size[0])), tmp_path / f"m{suffix}")
    out = images.load_image(path, max_size=max_size)
    assert out.shape == (*expected, 3) and out.dtype == np.float32


def test_max_size_of_solid_colour_keeps_colour(tmp_path):
    path = save(Image.new("RGB", (80, 40), (30, 90, 200)), tmp_path / "s.jpg", quality=95)
    out = images.load_image(path, max_size=20)
    assert out.shape == (10, 20, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [30, 90, 200], atol=3)


# --- errors --------------------------------------------------------------------------------------

def test_image_error_is_a_user_error():
    assert issubclass(ImageError, UserError)


def test_missing_file(tmp_path):
    expect_error(tmp_path / "missing.jpg", "no such file")


def test_directory(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    expect_error(tmp_path / "folder.jpg", "directory")


def test_zero_byte_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    expect_error(tmp_path / "e.png", "empty")


def test_text_file_named_jpg(tmp_path):
    (tmp_path / "t.jpg").write_text("hello, not a picture\n")
    expect_error(tmp_path / "t.jpg", "not a readable image")


@pytest.mark.parametrize("max_size", [None, 16])
def test_truncated_jpeg(tmp_path, max_size):
    buffer = io.BytesIO()
    Image.fromarray(rgb(64, 64)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "not a readable image", max_size=max_size)


def png_claiming_size(path, width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (1, 2, 3)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_header_is_refused(tmp_path):
    path = png_claiming_size(tmp_path / "bomb.png", 20000, 20000)  # 400 megapixels
    expect_error(path)


def test_forged_header_reports_our_limit(tmp_path):
    # 121 megapixels: below PIL's own hard limit (2 x 89 MP), above ours (120 MP).
    path = png_claiming_size(tmp_path / "bomb.png", 11000, 11000)
    expect_error(path, "11000x11000", "megapixel limit")


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about corrupt TIFF tags
def test_fuzzed_bytes_raise_only_image_error(tmp_path):
    seeds = []
    for fmt, kwargs in [("PNG", {}), ("JPEG", {"quality": 80}), ("GIF", {}), ("BMP", {}),
                        ("TIFF", {}), ("WEBP", {})]:
        buffer = io.BytesIO()
        Image.fromarray(rgb(12, 10)).save(buffer, fmt, **kwargs)
        seeds.append(buffer.getvalue())
    rng = random.Random(1234)
    path = tmp_path / "fuzz.img"
    failures = 0
    for i in range(200):
        if i % 4 == 0:
            data = rng.randbytes(rng.randint(1, 300))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randint(1, len(data))]
            data = bytes(data)
        path.write_bytes(data)
        try:
            out = images.load_image(path, max_size=rng.choice([None, 8]))
        except ImageError as exc:
            assert str(path) in str(exc)
            failures += 1
        else:  # a mutation that PIL still decodes must still give the promised array
            assert out.dtype == np.float32 and out.ndim == 3 and out.shape[2] == 3
    assert failures > 100  # the corpus really exercises the error paths


# --- writing -------------------------------------------------------------------------------------

def test_save_image_creates_folders_and_round_trips_png(tmp_path):
    pixels = rgb(5, 4).astype(np.float32)
    pixels[0, 0] = (-20.0, 300.0, 127.6)  # clipped and rounded
    path = images.save_image(pixels, tmp_path / "new" / "deeper" / "out.png")
    assert path == tmp_path / "new" / "deeper" / "out.png"
    expected = np.clip(np.rint(pixels), 0, 255)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)
    assert os.listdir(tmp_path / "new" / "deeper") == ["out.png"]  # no temp file left


@pytest.mark.parametrize("name, fmt", [("o.jpg", "JPEG"), ("o.JPEG", "JPEG"), ("o.webp", "WEBP"),
                                       ("o.bmp", "BMP"), ("o.tif", "TIFF")])
def test_save_image_format_from_suffix(tmp_path, name, fmt):
    path = images.save_image(rgb(8, 8), tmp_path / name)
    assert Image.open(path).format == fmt


def test_save_image_replaces_existing_file(tmp_path):
    path = tmp_path / "o.png"
    images.save_image(np.zeros((2, 2, 3)), path)
    images.save_image(np.full((3, 3, 3), 255.0), path)
    np.testing.assert_array_equal(images.load_image(path), np.full((3, 3, 3), 255.0))
    assert sorted(os.listdir(tmp_path)) == ["o.png"]


@pytest.mark.parametrize("name", ["out.xyz", "out", "out.gif.txt"])
def test_save_image_unknown_suffix(tmp_path, name):
    with pytest.raises(ImageError, match="unknown image format") as info:
        images.save_image(rgb(2, 2), tmp_path / name)
    assert name in str(info.value)
    assert os.listdir(tmp_path) == []


def test_save_image_into_a_file_as_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="cannot write") as info:
        images.save_image(rgb(2, 2), tmp_path / "file" / "o.png")
    assert "o.png" in str(info.value)


def test_failed_save_leaves_no_temp_file_and_keeps_old_image(tmp_path, monkeypatch):
    path = tmp_path / "o.png"
    images.save_image(np.zeros((2, 2, 3)), path)

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(ImageError, match="No space left"):
        images.save_image(np.full((2, 2, 3), 255.0), path)
    assert os.listdir(tmp_path) == ["o.png"]
    monkeypatch.undo()
    np.testing.assert_array_equal(images.load_image(path), np.zeros((2, 2, 3)))


# --- resizing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, min_side, expected", [
    ((10, 20), 30, (30, 60)),
    ((7, 10), 16, (16, 23)),   # 10 * 16 / 7 = 22.86
    ((40, 5), 8, (64, 8)),
])
def test_enlarge_to_min_side(shape, min_side, expected):
    array = np.full((*shape, 3), 77.0, np.float32)
    out = images.enlarge_to_min_side(array, min_side)
    assert out.shape == (*expected, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 77.0, atol=0.5)  # a solid colour stays solid


def test_enlarge_to_min_side_leaves_large_images_untouched():
    array = rgb(20, 30).astype(np.float32)
    assert images.enlarge_to_min_side(array, 20) is array


@pytest.mark.parametrize("shape, max_size, expected", [
    ((40, 60), 30, (20, 30)),
    ((61, 20), 30, (30, 10)),  # 20 * 30 / 61 = 9.8
    ((500, 2), 50, (50, 1)),   # never below one pixel
])
def test_resize_to_max_shrinks(shape, max_size, expected):
    out = images.resize_to_max(np.full((*shape, 3), 200.0, np.float32), max_size)
    assert out.shape == (*expected, 3)
    np.testing.assert_allclose(out, 200.0, atol=0.5)


def test_resize_to_max_never_enlarges():
    array = rgb(10, 20).astype(np.float32)
    assert images.resize_to_max(array, 20) is array
    assert images.resize_to_max(array, 100) is array


@pytest.mark.parametrize("shape, size, expected", [
    ((20, 10), 50, (50, 25)),   # enlarged
    ((30, 60), 20, (10, 20)),   # shrunk
    ((9, 9), 9, (9, 9)),
])
def test_resize_to_longer(shape, size, expected):
    out = images.resize_to_longer(np.full((*shape, 3), 50.0, np.float32), size)
    assert out.shape == (*expected, 3)
    np.testing.assert_allclose(out, 50.0, atol=0.5)



@pytest.mark.parametrize("size, expected", [((30, 20), (40, 60)),    # (width, height): enlarged
                                            ((200, 100), (30, 60))])  # shrunk
def test_a_painting_is_judged_at_exactly_the_side_asked(tmp_path, size, expected):
    path = save(Image.fromarray(rgb(size[1], size[0])), tmp_path / "p.png")
    out = images.load_painting_at(path, 60)
    assert out.shape == (*expected, 3)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), images.load_image(path).mean(axis=(0, 1)), atol=3)


# --- finding -------------------------------------------------------------------------------------

def test_find_images_recursive_sorted_skips_hidden_and_non_images(tmp_path):
    for name in ["b.jpg", "a.PNG", "sub/c.jpeg", "sub/deeper/d.webp", "z.tiff",
                 ".hidden.jpg", "notes.txt", "sub/readme", "data.jpg.bak"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    found = images.find_images(tmp_path)
    expected = ["a.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp", "z.tiff"]
    assert found == sorted(tmp_path / name for name in expected)


def test_find_images_single_file_and_missing_root(tmp_path):
    (tmp_path / "one.jpg").write_bytes(b"x")
    assert images.find_images(tmp_path / "one.jpg") == [tmp_path / "one.jpg"]
    with pytest.raises(ImageError, match="nowhere"):
        images.find_images(tmp_path / "nowhere")


def test_dark_16_bit_png_is_not_brightened(tmp_path):
    values = np.array([[0, 257, 200]], np.uint16)  # all below 256, yet 16-bit: nearly black
    path = tmp_path / "dark16.png"
    Image.fromarray(values).save(path)
    out = images.load_image(path)
    np.testing.assert_allclose(out[0, :, 0], values[0] * 255.0 / 65535.0, atol=1e-3)


def test_saved_image_has_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = images.save_image(np.zeros((4, 4, 3), np.float32), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_saved_jpeg_keeps_fine_colour_detail(tmp_path):
    """One-pixel red and blue stripes, the kind of detail a style paints: 4:2:0 chroma subsampling
    would average them towards purple."""
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::2, 0] = 230
    stripes[:, 1::2, 2] = 230
    images.save_image(stripes, tmp_path / "s.jpg")
    out = np.asarray(Image.open(tmp_path / "s.jpg").convert("RGB"), np.float32)
    assert np.abs(out - stripes).max() < 60, np.abs(out - stripes).max()
