"""image_grid: an image stored as one column per pixel (the bundled digits: 8x8 block counts, 0..16).

Not inferred (a table of pixel columns looks like numbers): the digits spec names it. Its columns go to the
"pixels" input row-major (height, width, channels), scaled by the spec's [min, max] in the graph. Validation:
whole numbers within [min, max] (critical). Drift: one bin per integer min..max of each column. Request: a
JSON number per pixel column, or the `rows` form.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from tasks.core.features.contract import (
    PIXELS_INPUT,
    FeatureSpec,
    Number,
    as_float32,
    expectation,
    number_or_nan,
)


class ImageGridFeature(FeatureSpec):
    """One group of pixel columns, row-major, and the grid's shape."""

    type: Literal["image_grid"] = "image_grid"
    # The values' domain by construction (digits: 0..16): validation refuses values outside it.
    min: float | None = None
    max: float | None = None
    columns: list[str] | None = None
    height: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    channels: int | None = Field(None, ge=1, le=4)

    model_input: ClassVar[str | None] = PIXELS_INPUT
    sole_input: ClassVar[bool] = True
    takes_rows: ClassVar[bool] = True
    request_accepts: ClassVar[str] = "number"
    drift_kind: ClassVar[str] = "integers"

    @model_validator(mode="after")
    def _names_its_pixels(self) -> "ImageGridFeature":
        cells = (self.height or 0) * (self.width or 0) * (self.channels or 1)
        if not self.columns or len(self.columns) != cells:
            raise ValueError(
                f"image_grid '{self.name}' needs height x width x channels = {cells} columns,"
                f" got {len(self.columns or [])}"
            )
        return self

    @property
    def source_columns(self) -> list[str]:
        return list(self.columns or [])

    def feed(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        return np.column_stack([as_float32(columns[c]) for c in self.source_columns]).astype(np.float32)

    def proposed_family(self) -> str | None:
        return "image_cnn"

    @classmethod
    def expectations(cls, features: list[FeatureSpec]) -> list[dict]:
        """Whole numbers within [min, max] in every pixel column (critical): the grid's values are counts."""
        found = []
        for grid in features:
            columns = grid.source_columns
            found.append(
                expectation(
                    "expect_columns_values_to_be_whole_numbers",
                    {"column_list": columns},
                    "critical",
                    f"'{grid.name}' holds counts: a fraction, an infinity or text means a wrong or damaged file"
                    " (17.0 is fine; 3.5, inf and 'dark' are not).",
                )
            )
            if grid.min is not None and grid.max is not None:
                found.append(
                    expectation(
                        "expect_columns_values_to_be_between",
                        {"column_list": columns, "min_value": grid.min, "max_value": grid.max},
                        "critical",
                        f"'{grid.name}' values are {grid.min:g}..{grid.max:g} by construction ({grid.why}); the"
                        " model scales by that range.",
                    )
                )
        return found

    def request_value(self) -> Any:
        return Annotated[Number, Field(ge=self.min, le=self.max)]

    def request_cell(self) -> Callable[[Any], Any]:
        return number_or_nan

    def request_values(self) -> str:
        if self.min is None or self.max is None:
            return "any finite number"
        grid = f"{self.height}x{self.width}" + (f"x{self.channels}" if (self.channels or 1) > 1 else "")
        return f"allowed {self.min:g}..{self.max:g}; a {grid} grid, row-major"

    def example_value(self) -> Any:
        if self.min is not None and self.max is not None:
            return (self.min + self.max) / 2
        return self.min if self.min is not None else 0.0

    def signature_type(self) -> str:
        return "double"
