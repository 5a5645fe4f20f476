"""Reading an image file into 8-bit RGB, whatever its mode, bit depth or EXIF orientation."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from detviz.data.records import DataError

# The statistics of ImageNet, which pretrained backbones expect: models normalize their input
# with them, and augmentation fills zoomed-out borders with the mean (a neutral grey to them).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


def load_image(path: str | Path, expected_size: tuple[int, int] | None = None) -> Image.Image:
    """Opens an image as 8-bit RGB.

    Greyscale, palette, CMYK and 16-bit images are converted; transparency is laid over white.
    An EXIF orientation tag is applied (as an image viewer, and so an annotator, would show
    the picture) unless the annotation's size matches only the stored, unrotated pixels.

    Args:
        path: the image file.
        expected_size: (width, height) the annotation states, or None to skip the check.

    Returns:
        A PIL image in mode "RGB".

    Raises:
        DataError: the file is missing, truncated or not an image, or its size differs from
            `expected_size` either way round.
    """
    path = Path(path)
    image = _oriented(_open(path, str(path)), expected_size)
    if expected_size is not None and image.size != tuple(expected_size):
        w, h = expected_size
        raise DataError(
            f"{path}: the image is {image.width}x{image.height} but its annotation says {w}x{h}; "
            "the boxes would not fit, so fix the annotation's size or the file."
        )
    return to_rgb(image)


def image_from_bytes(data: bytes, name: str) -> Image.Image:
    """An image file's bytes (an upload) as 8-bit RGB, converted and EXIF-oriented as `load_image`.

    Raises:
        DataError: naming `name`: the bytes are truncated, not an image, or a decompression bomb.
    """
    return to_rgb(_oriented(_open(io.BytesIO(data), name), None))


def _open(source: Path | io.BytesIO, name: str) -> Image.Image:
    """The decoded image of a file or its bytes; errors name `name`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                opened.load()
                return opened
    except FileNotFoundError:
        raise DataError(f"{name}: image file not found.") from None
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as e:
        raise DataError(f"{name}: cannot read the image ({e}).") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{name}: cannot read the image ({e}); the file may be truncated or corrupt.") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL mode to 8-bit RGB (16-bit and float data scaled to 0..255)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0.0)
        if image.mode.startswith("I;16") or (image.mode == "I" and peak > 255):
            top = 65535.0
        else:
            top = 1.0 if image.mode == "F" and peak <= 1.0 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _oriented(image: Image.Image, expected_size: tuple[int, int] | None) -> Image.Image:
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if orientation == 1 or orientation not in range(2, 9):
        return image
    if (
        expected_size is not None
        and orientation in _SWAPS_SIDES
        and image.size == tuple(expected_size)
        and image.width != image.height
    ):
        return image  # the annotation was made on the stored pixels
    return ImageOps.exif_transpose(image)
