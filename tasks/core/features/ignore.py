"""ignore: a column the model does not read, named in the spec so a reviewer sees the decision and its reason.

Inference: a column with nothing to learn from (no value, one value, values of no feature type), and text with
too many levels for the rows to teach each one. A request may still send it: it is accepted and dropped.
"""

from typing import ClassVar, Literal

from tasks.core.features.categorical import MIN_ROWS_PER_LEVEL, max_levels
from tasks.core.features.columns import ColumnValues, count, null_note
from tasks.core.features.contract import FeatureSpec, InferenceRule, value_text


def propose_nothing_to_learn(values: ColumnValues) -> "IgnoreFeature | None":
    """No present value, values of no feature type, or one value in every present row."""
    if values.kind == "empty":
        why = "every value is missing: nothing to learn -> ignore"
    elif values.distinct == 1:
        why = f"one value ({value_text(values.present.iloc[0])!r}) in every present row: constant -> ignore"
        why += null_note(values)
    elif values.kind == "other":
        import pandas as pd

        kind = pd.api.types.infer_dtype(values.present, skipna=True)
        why = f"{kind} values ({values.series.dtype}): not a feature type yet -> ignore"
    else:
        return None
    return IgnoreFeature(name=values.name, why=why)


def propose_too_many_levels(values: ColumnValues) -> "IgnoreFeature | None":
    """Text that no earlier rule took: too many levels to be a category, too short to be free text, too repeated
    to identify its row."""
    if values.kind != "text":
        return None
    why = (
        f"text with {count(values.distinct)} distinct values (over {max_levels(values.rows)}, one per"
        f" {MIN_ROWS_PER_LEVEL} rows) of {float(values.words.median()):g} words (median): too many levels to learn"
        " from these rows, too short for free text -> ignore; set type: categorical to keep it"
    )
    return IgnoreFeature(name=values.name, why=why)


class IgnoreFeature(FeatureSpec):
    """A column named in the spec and never read by the model."""

    type: Literal["ignore"] = "ignore"

    # First (after image paths and dates), so no other rule sees an empty or constant column; and last, for the
    # text columns no category, identifier or free-text rule took.
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (
        InferenceRule(10, propose_nothing_to_learn),
        InferenceRule(90, propose_too_many_levels),
    )
