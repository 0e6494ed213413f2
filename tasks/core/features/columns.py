"""A column as inference reads it: its storage kind and present values, the facts every type's rule asks for.

tasks.data.infer builds one ColumnValues per column and runs the registered types' inference rules on it
(tasks.core.features.contract.InferenceRule). pandas is imported where a column is read, not at import.
"""

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tasks.core.features.contract import value_text

if TYPE_CHECKING:
    import pandas as pd

ColumnKind = Literal["empty", "bool", "number", "text", "other"]
# '007', '02134': codes whose leading zeros matter, so they stay text even though they parse as numbers.
LEADING_ZERO = re.compile(r"^[+-]?0\d")


@dataclass(frozen=True)
class ColumnValues:
    """A column's non-missing values in the form the rules read: numbers as float, else the raw values."""

    name: str
    kind: ColumnKind
    present: "pd.Series"  # non-missing values (numbers: float64, bools: bool, text: str)
    rows: int
    series: "pd.Series"  # the column as read (an image rule reads its paths, a date rule its dtype)
    numeric_text: bool = False  # text that reads as numbers ("3.5")

    @cached_property
    def distinct(self) -> int:
        return int(self.present.nunique())

    @property
    def null_share(self) -> float:
        return 1.0 - len(self.present) / self.rows if self.rows else 0.0

    @cached_property
    def whole(self) -> bool:
        """Numbers that are all whole (an integer column, or one pandas made float because it has gaps)."""
        values = self.present.to_numpy(dtype=float)
        return self.kind == "number" and bool(np.all(np.isfinite(values) & (values == np.round(values))))

    @cached_property
    def words(self) -> "pd.Series":
        """Words per present text (text columns)."""
        return self.present.str.split().str.len()


def column_values(series: "pd.Series", name: str | None = None) -> ColumnValues:
    """Classify a column's storage and keep its present values; blank text counts as missing, as in value_text."""
    import pandas as pd

    name, rows = str(series.name) if name is None else name, len(series)
    present = series[series.notna()]
    kind = pd.api.types.infer_dtype(present, skipna=True) if len(present) else "empty"
    if kind == "empty":
        return ColumnValues(name, "empty", present, rows, series)
    if kind == "boolean":
        return ColumnValues(name, "bool", present.astype(bool), rows, series)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        numbers = pd.to_numeric(present).astype(float)
        return ColumnValues(name, "number", numbers[np.isfinite(numbers)] if len(numbers) else numbers, rows, series)
    if kind in ("string", "mixed", "mixed-integer", "bytes"):
        texts = present.map(value_text)
        texts = texts[texts != ""]
        numbers = numbers_in_text(texts)
        if numbers is not None:
            return ColumnValues(name, "number", numbers, rows, series, numeric_text=True)
        return ColumnValues(name, "text" if len(texts) else "empty", texts, rows, series)
    return ColumnValues(name, "other", present, rows, series)


def numbers_in_text(texts: "pd.Series") -> "pd.Series | None":
    """The numbers a text column holds when every value reads as one (and none is a zero-padded code)."""
    import pandas as pd

    if texts.empty or texts.str.match(LEADING_ZERO).any():
        return None
    numbers = pd.to_numeric(texts, errors="coerce")
    if numbers.isna().any() or not np.isfinite(numbers.to_numpy(dtype=float)).all():
        return None
    return numbers.astype(float)


def plain(value: Any) -> Any:
    """A JSON-friendly Python scalar: numpy scalars unwrapped, whole floats as int."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def observed_values(values: ColumnValues) -> list[Any]:
    """The sorted distinct present values (one per value_text), as the spec's `values` list."""
    found = list({value_text(v): plain(v) for v in values.present.unique()}.values())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in found):
        return sorted(found)  # 0 and 0.5 together: by value, though plain() made one an int
    return sorted(found, key=lambda v: (type(v).__name__, value_text(v)))


def count(n: int) -> str:
    return f"{n:,}"


def null_note(values: ColumnValues) -> str:
    if values.null_share == 0:
        return ""
    return f"; {values.null_share:.1%} missing"
