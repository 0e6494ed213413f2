"""image: a column of image file paths (PNG or JPEG), read at the spec's input size by tasks.core.images.

Its pixels go to the "pixels" input (uint8 values as float32, row-major height x width x channels), decoded by the
one function training, validation, drift and serving share. A request sends a base64 PNG or JPEG string.
"""

import base64
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, Strict, model_validator

from tasks.core.errors import DataRejected
from tasks.core.features.columns import ColumnValues, null_note
from tasks.core.features.contract import (
    MAX_BODY_BYTES,
    PIXELS_INPUT,
    FeatureSpec,
    InferenceRule,
    ValueRefused,
    echo,
    expectation,
    is_missing,
)
from tasks.core.images import (
    ImageUnreadable,
    convert_mode,
    decode_base64,
    encode_png,
    image_facts,
    image_pixels,
    is_path_column,
    open_image,
)

if TYPE_CHECKING:
    import pandas as pd

ResizePolicy = Literal["stretch", "pad", "crop"]
# Files opened to propose an image input size: enough to see the usual size, quick on any folder.
IMAGE_SAMPLE = 50
# The longer side of a proposed image input: 64 px keeps a CPU epoch over thousands of images in seconds;
# smaller images keep their size. Edit height / width in the spec for more detail.
MAX_IMAGE_SIDE = 64
# An image under a quarter of the input's height or width is stretched 4x or more along that side when read:
# 3 of every 4 pixels the model sees along it (15 of 16 when both sides are) are interpolated, invented rather
# than photographed. Such a file is usually an icon or a thumbnail, not the photo meant.
UPSCALE_LIMIT = 4
# What an image file is measured by for drift (each binned by deciles): brightness, contrast and size move when
# a camera, a scanner or an upstream resize changes.
IMAGE_MEASURES = ("intensity_mean", "intensity_std", "height", "width")
# Intensity statistics of a larger file are taken on a copy reduced (box average, Image.reduce) to 256-511
# pixels a side: a 12 MP photo's statistics then cost ~0.04 s instead of ~0.35 s, beside its ~0.14 s decode
# (open_image decodes in full, as validation does, so Pillow's JPEG draft mode is not open to drift). The mean
# is unchanged by a box average; the spread loses texture finer than the box, alike in the reference and new
# files of one size, and a change of size shows on height and width.
STATISTICS_SIDE = 256


def propose_image(values: ColumnValues) -> "ImageFeature | None":
    """Text whose every value names an image file."""
    return image_feature(values) if is_path_column(values.series) else None


class ImageFeature(FeatureSpec):
    """An image file per row, read at height x width x channels; the model reads it alone."""

    type: Literal["image"] = "image"
    # The pixel values' domain (0..255): the graph scales by it.
    min: float | None = None
    max: float | None = None
    height: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    channels: int | None = Field(None, ge=1, le=4)
    # How a file of another size reaches height x width (stretch: resize; pad: keep the aspect ratio and pad
    # with black; crop: keep the aspect ratio and cut the centre).
    resize: ResizePolicy | None = None

    model_input: ClassVar[str | None] = PIXELS_INPUT
    sole_input: ClassVar[bool] = True
    # First of all rules: a column of paths is text, and would otherwise be read as categories or ids.
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (InferenceRule(0, propose_image),)
    request_accepts: ClassVar[str] = "string: base64 PNG or JPEG"
    settings_help: ClassVar[str] = (
        "height, width, channels (the model's input), resize (stretch | pad | crop): files scale to it"
    )

    @model_validator(mode="after")
    def _has_its_input_size(self) -> "ImageFeature":
        if not (self.height and self.width and self.channels in (1, 3)):
            raise ValueError(f"image feature '{self.name}' needs the input size: height, width and channels (1 or 3)")
        return self

    @property
    def input_width(self) -> int:
        return (self.height or 1) * (self.width or 1) * (self.channels or 1)

    def feed(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        pixels = [image_pixels(v, self).reshape(-1) for v in columns[self.name]]
        return np.stack(pixels).astype(np.float32) if pixels else np.zeros((0, self.input_width), np.float32)

    def proposed_family(self) -> str | None:
        return "image_cnn"

    @classmethod
    def expectations(cls, features: list[FeatureSpec]) -> list[dict]:
        """Every file readable (critical); the model's channels and not far under its input size (warning)."""
        images = {f.name: image_sizes(f) for f in features}
        return [
            expectation(
                "expect_columns_image_files_to_be_readable",
                {"images": images},
                "critical",
                "Each path must name a PNG or JPEG file that decodes: a missing, truncated or corrupt file stops"
                " training at that row. Replace or delete the files, or drop their rows.",
            ),
            expectation(
                "expect_columns_image_files_to_fit_the_input",
                {"images": images},
                "warning",
                "Files are converted to the model's channels and resized to its input when read, so these still"
                " train; but an image of other channels (RGBA or grayscale for an RGB model), or under"
                f" 1/{UPSCALE_LIMIT} of the input's height or width ({UPSCALE_LIMIT}x upscaling invents most of its"
                " pixels), is often not the image meant: a person should look.",
            ),
        ]

    def drift_kinds(self) -> dict[str, str]:
        return {f"{self.name}.{measure}": "bins" for measure in IMAGE_MEASURES}

    def drift_values(self, frame: "pd.DataFrame") -> dict[str, "pd.Series"]:
        table = image_measures(frame[self.name], self.channels or 1)
        return {f"{self.name}.{measure}": table[measure] for measure in IMAGE_MEASURES}

    def request_value(self) -> Any:
        return Annotated[str, Strict(), Field(min_length=1, max_length=MAX_BODY_BYTES)]

    def request_feed(self, values: list[Any]) -> np.ndarray:
        pixels = []
        for index, value in enumerate(values):
            try:
                pixels.append(image_pixels(decode_base64(value), self).reshape(-1))
            except ImageUnreadable as error:
                raise ValueRefused(index, f"{error}; send a base64-encoded PNG or JPEG") from error
        return np.stack(pixels).astype(np.float32)

    def feed_value(self, value: Any) -> Any:
        return decode_base64(value)

    def client_value(self, value: Any) -> Any:
        return value if is_missing(value) else base64.b64encode(Path(value).read_bytes()).decode()

    def tensor_value(self, raw: bytes) -> Any:
        return base64.b64encode(raw).decode()  # the file's bytes, as the request field takes them

    def request_kind(self) -> str:
        return "image (a base64-encoded PNG or JPEG)"

    def request_values(self) -> str:
        colour = "grayscale" if self.channels == 1 else "RGB"
        return f"any size, scaled to {self.height}x{self.width} {colour} ({self.resize or 'stretch'})"

    def example_value(self) -> Any:
        gray = np.full((self.height, self.width, self.channels), 128, dtype=np.uint8)
        return base64.b64encode(encode_png(gray)).decode("ascii")

    def value_problem(self, kind: str, value: Any, limits: dict[str, Any]) -> str:
        if kind == "string_too_long":
            return f"an image of {len(value):,} base64 characters is over the limit of {limits['max_length']:,}"
        if kind == "string_too_short":
            return "the image is empty; send a base64-encoded PNG or JPEG"
        return f"{echo(value)} is not an image (send a base64-encoded PNG or JPEG as a JSON string)"


def image_feature(values: ColumnValues) -> ImageFeature:
    """An image feature sized from a sample of the files: their usual size, capped at MAX_IMAGE_SIDE a side."""
    paths = values.series.dropna()
    sample = paths.sample(min(IMAGE_SAMPLE, len(paths)), random_state=0) if len(paths) > IMAGE_SAMPLE else paths
    facts = []
    for path in sample:
        try:
            facts.append(image_facts(path))
        except ImageUnreadable:
            continue  # validation names every unreadable file; the size comes from the readable ones
    if not facts:
        raise DataRejected(
            f"column '{values.name}' names image files, but none of the {len(sample)} sampled could be read"
            f" (e.g. {sample.iloc[0]}); check the paths (relative paths are read from the table's folder)"
        )
    height, width = (int(np.median([getattr(f, side) for f in facts])) for side in ("height", "width"))
    scale = min(1.0, MAX_IMAGE_SIDE / max(height, width))
    input_height, input_width = max(2, round(height * scale)), max(2, round(width * scale))
    channels = 3 if any(f.channels >= 3 for f in facts) else 1
    sizes = {(f.height, f.width) for f in facts}
    resize = "stretch" if len(sizes) == 1 else "pad"
    why = (
        f"image files: {len(facts)} of {len(sample)} sampled read, usually {height}x{width}"
        f" ({len(sizes)} size(s)), {'colour' if channels == 3 else 'grayscale'}: input {input_height}x{input_width}"
        f"x{channels}, {resize}{null_note(values)}"
    )
    return ImageFeature(
        name=values.name,
        why=why,
        nullable=bool(values.series.isna().any()),
        min=0,
        max=255,
        height=input_height,
        width=input_width,
        channels=channels,
        resize=resize,
    )


def image_sizes(feature: ImageFeature) -> dict[str, int]:
    """The spec's input size of an image feature, and the least height and width a file may have."""
    height, width = feature.height or 1, feature.width or 1
    return {
        "height": height,
        "width": width,
        "channels": feature.channels or 3,
        "min_height": math.ceil(height / UPSCALE_LIMIT),
        "min_width": math.ceil(width / UPSCALE_LIMIT),
    }


def image_measures(paths: "pd.Series", channels: int) -> "pd.DataFrame":
    """IMAGE_MEASURES of each file that decodes (one row each); missing paths and unreadable files are skipped."""
    import pandas as pd

    present = [str(path) for path in paths if not is_missing(path)]
    # Pillow releases the GIL while it decodes, so threads overlap the files (validation reads them the same way).
    with ThreadPoolExecutor() as pool:
        rows = [row for row in pool.map(lambda path: image_figures(path, channels), present) if row is not None]
    return pd.DataFrame(rows, columns=list(IMAGE_MEASURES), dtype=float)


def image_figures(path: str, channels: int) -> tuple[float, float, int, int] | None:
    """Mean and standard deviation of the intensities (0..255, in the spec's channels), height and width."""
    try:
        image = open_image(path)
    except ImageUnreadable:
        return None  # validation names the file; drift measures the ones the model can read
    height, width = image.height, image.width
    image = convert_mode(image, channels)
    factor = max(height, width) // STATISTICS_SIDE
    pixels = np.asarray(image.reduce(factor) if factor > 1 else image, dtype=np.float32)
    return float(pixels.mean()), float(pixels.std()), height, width
