"""Image loading: every mode, bit depth and EXIF orientation becomes 8-bit RGB; broken files raise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detviz.data import DataError, load_image


def _pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(int(v) for v in image.getpixel(xy))


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(path, quality=100)
    image = load_image(path, (20, 10))
    assert image.mode == "RGB" and image.size == (20, 10)
    r, g, b = _pixel(image, (5, 5))
    assert r > 240 and g < 15 and b < 15


def test_greyscale_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("L", (8, 6), 77).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and _pixel(image, (0, 0)) == (77, 77, 77)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    image = load_image(path, (3, 1))
    assert [_pixel(image, (x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_transparency_is_laid_over_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    rgba.save(path)
    image = load_image(path)
    assert _pixel(image, (0, 0)) == (255, 255, 255) and _pixel(image, (1, 1)) == (0, 0, 255)


def test_palette_image_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "palette.gif"
    Image.new("RGB", (5, 5), (0, 200, 0)).convert("P").save(path)
    image = load_image(path)
    assert image.mode == "RGB" and _pixel(image, (2, 2))[1] > 150


def _exif_rotated(tmp_path: Path) -> Path:
    """A 40x20 stored image, left half red, with EXIF orientation 6 (shown rotated to 20x40)."""
    raw = Image.new("RGB", (40, 20), (0, 0, 255))
    raw.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    raw.save(path, exif=exif, quality=100)
    return path


def test_exif_orientation_is_applied_when_the_annotation_matches_the_rotated_size(tmp_path: Path) -> None:
    path = _exif_rotated(tmp_path)
    image = load_image(path, (20, 40))
    assert image.size == (20, 40)
    assert _pixel(image, (10, 5))[0] > 200  # orientation 6: the stored left half is now on top
    assert load_image(path).size == (20, 40)  # no annotation: show it as a viewer would


def test_exif_orientation_is_ignored_when_the_annotation_matches_the_stored_pixels(tmp_path: Path) -> None:
    image = load_image(_exif_rotated(tmp_path), (40, 20))
    assert image.size == (40, 20) and _pixel(image, (5, 10))[0] > 200


def test_size_different_from_the_annotation(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (30, 20)).save(path)
    with pytest.raises(DataError, match=r"a\.png: the image is 30x20 but its annotation says 60x40"):
        load_image(path, (60, 40))


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: cannot read the image .*truncated"):
        load_image(path, (64, 64))


def test_file_that_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.jpg: cannot read the image"):
        load_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"gone\.jpg: image file not found"):
        load_image(tmp_path / "gone.jpg")
