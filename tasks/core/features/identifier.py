"""id: a column that identifies its row (a row number, an order number, an e-mail): never read by the model,
named in the spec so a reviewer sees the decision.

Inference: whole numbers unique per row and in sequence (a row number), or short text distinct in nearly every
row. A request may still send it: it is accepted and dropped.
"""

from typing import ClassVar, Literal

import numpy as np

from tasks.core.features.columns import ColumnValues, count
from tasks.core.features.contract import FeatureSpec, InferenceRule

# Text distinct in at least this share of its rows identifies the row (an order number, an e-mail).
ID_DISTINCT_SHARE = 0.95


def is_row_number(values: ColumnValues) -> bool:
    """Whole numbers unique per row and either consecutive or sorted: a row id, not a measurement."""
    numbers = values.present.to_numpy(dtype=float)
    if not values.whole or values.distinct != values.rows or values.rows < 3:
        return False
    consecutive = numbers.max() - numbers.min() + 1 == len(numbers)
    steps = np.diff(numbers)
    return bool(consecutive or (steps > 0).all() or (steps < 0).all())


def propose_row_number(values: ColumnValues) -> "IdFeature | None":
    if values.kind != "number" or not is_row_number(values):
        return None
    why = f"whole numbers unique per row ({count(values.distinct)} of {count(values.rows)}), in sequence: a row id"
    return IdFeature(name=values.name, why=why)


def propose_unique_text(values: ColumnValues) -> "IdFeature | None":
    """Text no category or free-text rule took, distinct in nearly every row."""
    if values.kind != "text" or values.distinct < ID_DISTINCT_SHARE * len(values.present):
        return None
    why = f"unique per row ({count(values.distinct)} of {count(len(values.present))}): id"
    return IdFeature(name=values.name, why=why)


class IdFeature(FeatureSpec):
    """A row's identifier: named in the spec, never read by the model."""

    type: Literal["id"] = "id"

    # A row number before the codes rule (categorical, 40) sees its few values; unique text after the category
    # (40) and free-text (50) rules, so only short text too varied to be either is an identifier.
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (
        InferenceRule(30, propose_row_number),
        InferenceRule(60, propose_unique_text),
    )
