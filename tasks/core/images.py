"""Image files to the model's pixels: one decoder for training, validation, drift and serving (Pillow, no torch).

A file (a path, or the bytes of a request's base64 field) is decoded, converted to the spec's channels
(1: grayscale "L", 3: "RGB"; transparency is flattened onto black), brought to height x width by the
spec's resize policy, and returned as uint8 [height, width, channels]: the row-major layout the CNN reads.
"""

import base64
import binascii
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.core.errors import DataRejected

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow refuses images over ~179 M pixels as a decompression bomb; a model input is far smaller, and a
# 50 M pixel image (a 7000 x 7000 scan) is already a mistake in a request.
MAX_PIXELS = 50_000_000
MODES = {1: "L", 3: "RGB"}


class ImageUnreadable(DataRejected):
    """A file or request field that is not a PNG or JPEG image this model can read."""


@dataclass(frozen=True)
class ImageFacts:
    """What a file holds before any conversion: for inference, validation and drift."""

    height: int
    width: int
    channels: int  # 1 (L, P without colour), 2 (LA), 3 (RGB), 4 (RGBA / CMYK)
    format: str


def open_image(source: str | Path | bytes):
    """A decoded PIL image from a path or bytes; ImageUnreadable says why not."""
    from PIL import Image, UnidentifiedImageError

    where = "the image bytes" if isinstance(source, bytes) else str(source)
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as error:
        raise ImageUnreadable(f"{where}: cannot open ({error.strerror or error})") from error
    try:
        with handle:
            image = Image.open(handle)
            if image.format not in ("PNG", "JPEG", "MPO"):
                raise ImageUnreadable(f"{where}: a {image.format} image; send PNG or JPEG")
            if image.width * image.height > MAX_PIXELS:
                raise ImageUnreadable(f"{where}: {image.width}x{image.height} pixels is over {MAX_PIXELS:,}")
            image.load()  # decode now: a truncated file fails here, not later
            return image
    except ImageUnreadable:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # Pillow names the file object ("<_io.BufferedReader name=...>"); the path is already in the message.
        reason = re.sub(r"\s*<_io\.\w+ name=.*?>|\s*<_io\.BytesIO object at \w+>", "", str(error))
        raise ImageUnreadable(f"{where}: not a readable PNG or JPEG image ({reason})") from error


def channel_count(image) -> int:
    return {
        "1": 1,
        "L": 1,
        "P": 3 if image.palette and image.palette.mode != "L" else 1,
        "LA": 2,
        "I": 1,
        "F": 1,
        "I;16": 1,
        "RGB": 3,
        "RGBA": 4,
        "CMYK": 4,
        "YCbCr": 3,
    }.get(image.mode, len(image.getbands()))


def image_facts(source: str | Path | bytes) -> ImageFacts:
    image = open_image(source)
    return ImageFacts(image.height, image.width, channel_count(image), image.format or "")


def convert_mode(image, channels: int):
    """The image with the spec's channels; transparency flattened onto black so padding and alpha agree."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(flat, rgba)
    if image.mode in ("I", "I;16", "F"):  # 16-bit and float grayscale: scale to 0..255 by the file's range
        values = np.asarray(image, dtype=np.float64)
        span = max(values.max() - values.min(), 1e-12)
        image = Image.fromarray(((values - values.min()) / span * 255).astype(np.uint8), "L")
    return image.convert(MODES[channels])


def fit_size(image, height: int, width: int, policy: str):
    """height x width by the resize policy (stretch, pad or crop), with a bilinear filter."""
    from PIL import Image, ImageOps

    size = (width, height)
    if policy == "pad":
        return ImageOps.pad(image, size, method=Image.Resampling.BILINEAR, color=0)
    if policy == "crop":
        return ImageOps.fit(image, size, method=Image.Resampling.BILINEAR)
    return image.resize(size, Image.Resampling.BILINEAR) if image.size != size else image


def image_pixels(source, feature) -> np.ndarray:
    """uint8 [height, width, channels] of a path or image bytes, as the spec's image feature reads it."""
    if isinstance(source, str | Path) and not isinstance(source, bytes):
        source = str(source)
    image = convert_mode(open_image(source), feature.channels)
    image = fit_size(image, feature.height, feature.width, feature.resize or "stretch")
    return np.asarray(image, dtype=np.uint8).reshape(feature.height, feature.width, feature.channels)


def is_path_column(series) -> bool:
    """Text (a pandas column) whose every present value names an image file (ends in .png, .jpg or .jpeg)."""
    import pandas as pd

    if not (pd.api.types.is_string_dtype(series) or series.dtype == object):
        return False
    present = series.dropna()
    first = present.iloc[0] if len(present) else None
    # The first value decides most columns at once (cache keys ask this of every text column of every frame).
    if not isinstance(first, str) or not first.strip().lower().endswith(IMAGE_SUFFIXES):
        return False
    if not all(isinstance(v, str) for v in present):
        return False
    return bool(present.str.strip().str.lower().str.endswith(IMAGE_SUFFIXES).all())


def decode_base64(text: str) -> bytes:
    """A request's base64 field as bytes (a data: URL prefix is accepted); ImageUnreadable when it is not base64."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageUnreadable(f"not base64 ({error})") from error


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 [h, w, c] as PNG bytes (examples in the service documentation, tests)."""
    from PIL import Image

    array = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), MODES[pixels.shape[2]]).save(buffer, format="PNG")
    return buffer.getvalue()
