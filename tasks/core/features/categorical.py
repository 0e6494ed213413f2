"""categorical: one of a set of values (codes, ratings, countries). An embedding per value in the network.

Inferred for whole numbers with few values (<= MAX_INTEGER_LEVELS) that skip most of their range, or text with
few enough levels for the rows to teach each one (max_levels). Values are keyed by value_text: 3, 3.0 and "3" are one.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, Strict

from tasks.core.features.columns import ColumnValues, count, null_note, observed_values
from tasks.core.features.contract import (
    CATEGORICAL_INPUT,
    FeatureSpec,
    InferenceRule,
    echo,
    expectation,
    number_problem,
    text_column,
    value_text,
)

Label = str | int | float | bool
# An integer column with this many distinct values or fewer may be a code (a product line 120, a zoning class
# 30): an embedding per value learns it without assuming the values are ordered or evenly spaced. Above it,
# integers are counts or amounts whose order matters (age, tenure in months).
MAX_INTEGER_LEVELS = 20
# ... unless its values fill a range (at most this many slots of the range per value: 0..4 bathrooms, ratings
# 1..5, months 1..12, years 2006..2010): a count or a scale, whose order a tree splits on and a network reads
# (numeric). As codes, ames' bathrooms, rooms, garage cars and years cost gradient boosting 0.007 of R^2, and a
# fifth bathroom would be an unseen category. Codes skip values (20, 30, 45, 120, 190).
MAX_SLOTS_PER_VALUE = 2.0


def fills_a_range(values: ColumnValues) -> bool:
    """Whole numbers whose distinct values fill their range (see MAX_SLOTS_PER_VALUE): a count or a scale."""
    low, high = float(values.present.min()), float(values.present.max())
    return high - low + 1 <= MAX_SLOTS_PER_VALUE * values.distinct


# A text column's categories each need rows to learn from: at most one level per 20 rows (5% of the
# rows), and never fewer than 20 levels allowed (small tables still have countries and product lines).
MIN_ROWS_PER_LEVEL = 20
MIN_TEXT_LEVELS = 20
# Beyond a few hundred levels an embedding table mostly memorises rows; set `type: categorical` by hand
# in the spec to keep such a column anyway.
MAX_TEXT_LEVELS = 500
# New categories are answered through the model's out-of-vocabulary bucket, so a few are fine; past 5% of
# a column's values, much of the column is something the model never learned.
MAX_UNSEEN_SHARE = 0.05
# Categories listed in the service's documentation: enough to see the kind of value, not a wall of text.
LISTED_VALUES = 12
# A category arrives as the JSON type of the file it was learned from: text, integers or booleans, or
# floats (pandas reads an integer column with gaps as floats, so a client's 3.0 is the category 3).
# value_text encodes each as training did; strict keeps "true" and true, or "3" and 3.5, apart.
Category = (
    Annotated[str, Strict()]
    | Annotated[int, Strict()]
    | Annotated[bool, Strict()]
    | Annotated[float, Strict(), Field(allow_inf_nan=False)]
)
CATEGORY_HINT = "send a string, number or boolean"


def max_levels(rows: int) -> int:
    """How many categories a text column of this many rows may have (see MIN_ROWS_PER_LEVEL)."""
    return min(MAX_TEXT_LEVELS, max(MIN_TEXT_LEVELS, rows // MIN_ROWS_PER_LEVEL))


def propose_categorical(values: ColumnValues) -> "CategoricalFeature | None":
    """Whole numbers with few values that skip most of their range (codes), or text with few enough levels for
    the rows to teach each."""
    nullable = values.null_share > 0
    if values.kind == "number" and values.whole and values.distinct <= MAX_INTEGER_LEVELS:
        if fills_a_range(values):
            return None  # a count or a scale: numeric (tasks.core.features.numeric says why)
        source = "text that reads as numbers" if values.numeric_text else "numbers"
        why = (
            f"{source}: whole with {values.distinct} distinct values (<= {MAX_INTEGER_LEVELS}) spread over"
            f" {values.present.min():g}..{values.present.max():g}, codes: categorical"
            f"{null_note(values)}"
        )
    elif values.kind == "text" and values.distinct <= (limit := max_levels(values.rows)):
        why = f"text with {count(values.distinct)} distinct values (<= {limit}): categorical"
        if nullable:
            why += f"{null_note(values)} (missing is its own category)"
    else:
        return None
    return CategoricalFeature(name=values.name, why=why, nullable=nullable, values=observed_values(values))


class CategoricalFeature(FeatureSpec):
    """A category per row: code 0 = unseen in training, 1 = missing, 2.. = the training categories."""

    type: Literal["categorical"] = "categorical"
    values: list[Label] | None = Field(None, description="categories seen (categorical, binary)")

    model_input: ClassVar[str | None] = CATEGORICAL_INPUT
    # After row ids (identifier, 30), before free text (text, 50): few levels make a category, even of words.
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (InferenceRule(40, propose_categorical),)
    request_accepts: ClassVar[str] = "string, number or boolean"
    drift_kind: ClassVar[str] = "values"

    def feed(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        return text_column(columns[self.name])

    @classmethod
    def expectations(cls, features: list[FeatureSpec]) -> list[dict]:
        """Values within the categories seen, allowing a share of new ones (warning)."""
        sets = {f.name: list(f.values) for f in features if f.values}
        if not sets:
            return []
        return [
            expectation(
                "expect_columns_values_to_be_in_sets",
                {"value_sets": sets, "max_unseen_share": MAX_UNSEEN_SHARE},
                "warning",
                f"The categories seen when the spec was made. A new one is answered as an unseen category; past"
                f" {MAX_UNSEEN_SHARE:.0%} of a column's values, much of it is something the model never learned.",
            )
        ]

    def request_value(self) -> Any:
        return Category

    def request_cell(self) -> Callable[[Any], Any]:
        return value_text

    def request_kind(self) -> str:
        return f"{self.type} ({CATEGORY_HINT})"

    def request_values(self) -> str:
        values = self.values or []
        seen = ", ".join(json.dumps(v) for v in values[:LISTED_VALUES])
        more = f" and {len(values) - LISTED_VALUES} more" if len(values) > LISTED_VALUES else ""
        return f"seen in training: {seen or 'none'}{more}; others are answered as unseen"

    def example_value(self) -> Any:
        return self.values[0] if self.values else "example"

    def value_problem(self, kind: str, value: Any, limits: dict[str, Any]) -> str:
        return number_problem(kind, value, limits) or f"{echo(value)} is not a category ({CATEGORY_HINT})"

    def signature_type(self) -> str:
        values = self.values or []
        if values and all(isinstance(v, bool) for v in values):
            return "boolean"
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "long"
        return "string"
