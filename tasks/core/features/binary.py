"""binary: exactly two values (yes / no, true / false, 1 / 2). A categorical feature of two categories.

Inference: any column of exactly two distinct present values (booleans, numbers or text). Everything else
(feed, validation, drift, request) is categorical's: the network embeds it like any category, and a value
outside the two is answered as unseen.
"""

from typing import ClassVar, Literal

from tasks.core.features.categorical import CategoricalFeature
from tasks.core.features.columns import ColumnValues, null_note, observed_values
from tasks.core.features.contract import InferenceRule


def propose_binary(values: ColumnValues) -> "BinaryFeature | None":
    """Exactly two distinct present values, of any kind."""
    if values.kind not in ("bool", "number", "text") or values.distinct != 2:
        return None
    why = f"exactly 2 distinct values: binary{null_note(values)}"
    return BinaryFeature(name=values.name, why=why, nullable=values.null_share > 0, values=observed_values(values))


class BinaryFeature(CategoricalFeature):
    """Two categories; missing is a third code when nullable, and an unseen value the out-of-vocabulary one."""

    type: Literal["binary"] = "binary"

    # After the columns with nothing to learn (ignore, 10); before every rule that counts levels.
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (InferenceRule(20, propose_binary),)
