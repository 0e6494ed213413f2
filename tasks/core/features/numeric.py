"""numeric: a quantity. Median-imputed and standardised in the graph, with a missing indicator when nullable.

Inferred for numbers no earlier rule took (not a row id, not a few-valued code); few whole values filling their
range (bathrooms 0..4, years) are a count or a scale, numeric. A request sends a JSON number.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from tasks.core.features.categorical import MAX_INTEGER_LEVELS
from tasks.core.features.columns import ColumnValues, count, null_note
from tasks.core.features.contract import (
    NUMERIC_INPUT,
    FeatureSpec,
    InferenceRule,
    Number,
    as_float32,
    expectation,
    number_or_nan,
)

# Numeric range = the range seen when the spec was made, widened by half its span on each side. A fresh
# sample of the same population sets a new minimum or maximum now and then (each new row has a ~1/n
# chance), so the bare range would warn on healthy data; half the span again is outside anything the
# training rows resemble: a unit change (grams for kilograms), a sentinel (-999, 99999), a broken sensor.
RANGE_MARGIN = 0.5


def propose_numeric(values: ColumnValues) -> "NumericFeature | None":
    """Numbers no earlier rule took (not a row id, not a code): a quantity."""
    if values.kind != "number":
        return None
    source = "text that reads as numbers" if values.numeric_text else "numbers"
    low, high = float(values.present.min()), float(values.present.max())
    kind = "whole" if values.whole else "fractional"
    what = "a count or a scale: numeric" if values.whole and values.distinct <= MAX_INTEGER_LEVELS else "numeric"
    why = f"{source}: {kind} with {count(values.distinct)} distinct values in {low:g}..{high:g}: {what}"
    return NumericFeature(
        name=values.name, why=why + null_note(values), nullable=values.null_share > 0, min=low, max=high
    )


class NumericFeature(FeatureSpec):
    """A number per row; NaN (or a missing cell) is imputed by the training median."""

    type: Literal["numeric"] = "numeric"
    # The domain seen when the spec was made: validation allows a margin around it.
    min: float | None = None
    max: float | None = None
    # A key (near-unique whole numbers, tasks.core.features.identifier) declared numeric is refused at run time
    # unless this says it is a real quantity. Written to a spec only when true: a reviewer's decision.
    allow_unique: bool = Field(
        False, exclude_if=lambda allowed: not allowed, description="read it although its values look like a key"
    )

    model_input: ClassVar[str | None] = NUMERIC_INPUT
    takes_rows: ClassVar[bool] = True
    request_accepts: ClassVar[str] = "number"
    settings_help: ClassVar[str] = "allow_unique: true reads whole numbers unique per row that inference made an id"
    # Last among the rules for numbers: row ids (identifier) and codes (categorical) are claimed first.
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (InferenceRule(80, propose_numeric),)

    def feed(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        return as_float32(columns[self.name]).reshape(-1, 1)

    @classmethod
    def expectations(cls, features: list[FeatureSpec]) -> list[dict]:
        """Numbers (critical) within their widened training range (warning)."""
        found = [
            expectation(
                "expect_columns_values_to_be_numbers",
                {"column_list": [f.name for f in features]},
                "critical",
                "The model reads these as numbers: text or an infinity cannot be scaled or imputed.",
            )
        ]
        ranges = {f.name: bounds for f in features if (bounds := numeric_bounds(f)) is not None}
        if ranges:
            found.append(
                expectation(
                    "expect_columns_values_to_be_within_ranges",
                    {"ranges": ranges},
                    "warning",
                    f"The range seen when the spec was made, widened by {RANGE_MARGIN:.0%} of its span on each"
                    " side. The model still answers such values, but this far out they are usually a unit change,"
                    " a sentinel (-999) or a fault, not data.",
                )
            )
        return found

    def request_value(self) -> Any:
        return Number

    def request_cell(self) -> Callable[[Any], Any]:
        return number_or_nan

    def request_values(self) -> str:
        if self.min is None or self.max is None:
            return "any finite number"
        return f"seen in training {self.min:g}..{self.max:g}; others are answered too"

    def example_value(self) -> Any:
        if self.min is not None and self.max is not None:
            return (self.min + self.max) / 2
        return self.min if self.min is not None else 0.0

    def signature_type(self) -> str:
        return "double"


def numeric_bounds(feature: NumericFeature) -> dict[str, float] | None:
    """The allowed range of a numeric feature: its observed range widened by RANGE_MARGIN of the span."""
    if feature.min is None or feature.max is None:
        return None
    # A one-value range has no span to widen by: half its magnitude (or 1 around zero) instead.
    span = (feature.max - feature.min) or abs(feature.max) or 1.0
    low, high = feature.min - RANGE_MARGIN * span, feature.max + RANGE_MARGIN * span
    return {"min": low, "max": high, "seen_min": feature.min, "seen_max": feature.max}
