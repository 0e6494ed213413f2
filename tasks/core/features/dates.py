"""datetime: a date or a timestamp per row, read by the model as numbers: its parts (year, month, day,
day_of_week, hour, elapsed), each a column `<name>.<part>` of the "numeric" input.

parse_datetimes + datetime_parts use numpy and the standard library only, so training, parity checks and serving
convert alike; a UTC offset is dropped (wall-clock time is what is read). Inference and the parts: docs/spec.md.
"""

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, Strict, field_validator

from tasks.core.features.columns import ColumnValues, null_note
from tasks.core.features.contract import (
    NUMERIC_INPUT,
    FeatureSpec,
    InferenceRule,
    ValueRefused,
    echo,
    expectation,
    is_missing,
)

if TYPE_CHECKING:
    import pandas as pd

DatePart = Literal["year", "month", "day", "day_of_week", "hour", "elapsed"]
DATE_PARTS: tuple[DatePart, ...] = ("year", "month", "day", "day_of_week", "hour", "elapsed")
# Text formats besides ISO 8601 that inference recognises, each also with a time (" %H:%M" or " %H:%M:%S").
# Month first where a text reads both ways (03/04/2024): pandas' and most software's default.
COMMON_FORMATS = (
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%m/%d/%y",
    "%d/%m/%y",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%d %b %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%B %d, %Y",
)
TIME_SUFFIXES = ("", " %H:%M", " %H:%M:%S")
# Distinct texts tried against each format before the chosen one reads the whole column: enough to tell
# 03/04 from 13/04 in any real column, quick on a large one.
FORMAT_SAMPLE = 200
# The range expectation's margin: as numeric's, half the training span on each side, so a fresh sample
# of the same period passes and data from another decade (or a 1900-01-01 sentinel) does not.
RANGE_MARGIN = 0.5
# The Unix epoch: `elapsed` counts from it when the spec has no `min`.
EPOCH = datetime(1970, 1, 1)
SECONDS_PER_DAY = 86_400
# A request's date text: ISO 8601 is at most ~35 characters with fractions and an offset.
MAX_DATE_CHARS = 64
DEFAULT_EXAMPLE = "2024-01-01T00:00:00"


def propose_datetime(values: ColumnValues) -> "DatetimeFeature | None":
    """Dates: text that every value of reads as one, in one format, or a column of dates / timestamps."""
    if values.kind == "other":
        import pandas as pd

        if pd.api.types.infer_dtype(values.present, skipna=True) not in ("datetime64", "datetime", "date"):
            return None
        date_format = None
    elif values.kind == "text":
        date_format = text_format(values.present)
        if date_format is False:
            return None
    else:
        return None  # numbers (a year, a Unix time) stay numbers
    stamps = parse_datetimes(values.present.tolist(), date_format or None)
    if np.isnat(stamps).any() or len(np.unique(stamps)) < 2:
        return None  # a value of another form (the sample missed it), or one date: ignore's to say
    return datetime_feature(values, stamps, date_format or None)


class DatetimeFeature(FeatureSpec):
    """A date or timestamp per row, read as its parts."""

    type: Literal["datetime"] = "datetime"
    parts: list[DatePart] = Field(
        default_factory=lambda: ["year", "month", "day", "day_of_week", "elapsed"],
        min_length=1,
        description="the numbers the model reads: year, month, day, day_of_week, hour, elapsed",
    )
    format: str | None = Field(
        None, description="the file's text format (strptime codes, e.g. %d/%m/%Y); ISO 8601 is always read"
    )
    # The span seen when the spec was made: validation warns well outside it; min is elapsed's day 0.
    min: datetime | None = None
    max: datetime | None = None

    model_input: ClassVar[str | None] = NUMERIC_INPUT
    # Before ignore (10) sees a column of timestamps as values of no type, and before the category rule (40)
    # takes a text column of a few dates.
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (InferenceRule(5, propose_datetime),)
    request_accepts: ClassVar[str] = "string: ISO 8601 date or date-time"
    settings_help: ClassVar[str] = (
        "parts (year, month, day, day_of_week, hour, elapsed: days since min), format (strptime codes), min, max"
    )

    @field_validator("parts")
    @classmethod
    def _each_part_once(cls, parts: list[str]) -> list[str]:
        if len(set(parts)) != len(parts):
            raise ValueError(f"a part is listed twice: {parts}")
        return parts

    @field_validator("min", "max")
    @classmethod
    def _wall_clock(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=None) if value is not None else None

    @property
    def input_columns(self) -> list[str]:
        return [f"{self.name}.{part}" for part in self.parts]

    def feed(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        stamps = parse_datetimes(columns[self.name], self.format)
        return datetime_parts(stamps, self.parts, self.min).astype(np.float32)

    @classmethod
    def expectations(cls, features: list[FeatureSpec]) -> list[dict]:
        """Dates in every present cell (critical); within the training span widened by half its length (warning)."""
        dates = {f.name: date_bounds(f) for f in features}
        return [
            expectation(
                "expect_columns_values_to_be_dates",
                {"dates": dates},
                "critical",
                "The model reads these as dates (ISO 8601, or the spec's format): a value of another form cannot be"
                " split into its parts, and usually means a shifted column or a changed export format.",
            ),
            expectation(
                "expect_columns_dates_to_be_within_ranges",
                {"dates": dates},
                "warning",
                f"The span seen when the spec was made, widened by {RANGE_MARGIN:.0%} of its length on each side."
                " The model still answers such dates, but its year and elapsed time are then outside anything it"
                " learned from; a 1900-01-01 or 2999-12-31 is usually a placeholder, not data.",
            ),
        ]

    def drift_kinds(self) -> dict[str, str]:
        return dict.fromkeys(self.input_columns, "bins")

    def drift_values(self, frame: "pd.DataFrame") -> dict[str, "pd.Series"]:
        import pandas as pd

        parts = self.feed({self.name: frame[self.name].tolist()})
        return {column: pd.Series(parts[:, i], index=frame.index) for i, column in enumerate(self.input_columns)}

    def request_value(self) -> Any:
        return Annotated[str, Strict(), Field(min_length=1, max_length=MAX_DATE_CHARS, examples=[DEFAULT_EXAMPLE])]

    def request_feed(self, values: list[Any]) -> np.ndarray:
        stamps = parse_datetimes(values, self.format)
        for index, value in enumerate(values):
            if np.isnat(stamps[index]) and not is_missing(value):
                raise ValueRefused(index, f"{echo(value)} is not a date; send ISO 8601, e.g. {self.example_value()}")
        return datetime_parts(stamps, self.parts, self.min).astype(np.float32)

    def client_value(self, value: Any) -> Any:
        if isinstance(value, str) or is_missing(value):
            return value
        stamp = as_datetime(value, self.format)
        return stamp.isoformat() if stamp is not None else str(value)

    def request_kind(self) -> str:
        return "datetime (an ISO 8601 date or date-time string)"

    def request_values(self) -> str:
        if self.min is None or self.max is None:
            return f"any date, read as {', '.join(self.parts)}"
        return f"seen in training {self.min:%Y-%m-%d}..{self.max:%Y-%m-%d}, read as {', '.join(self.parts)}"

    def example_value(self) -> Any:
        if self.min is None or self.max is None:
            return DEFAULT_EXAMPLE
        return (self.min + (self.max - self.min) / 2).replace(microsecond=0).isoformat()

    def value_problem(self, kind: str, value: Any, limits: dict[str, Any]) -> str:
        if kind == "string_too_long":
            return f"a date of {len(value):,} characters is over the limit of {limits['max_length']}; send ISO 8601"
        return f"{echo(value)} is not a date (send an ISO 8601 string, e.g. {self.example_value()})"

    def signature_type(self) -> str:
        return "datetime"


def datetime_feature(values: ColumnValues, stamps: np.ndarray, date_format: str | None) -> DatetimeFeature:
    """The proposed feature: its parts (hour only when some value has a time), format and span."""
    seconds = (stamps - stamps.astype("datetime64[D]")).astype("timedelta64[s]").astype(np.int64)
    timed = bool((seconds != 0).any())
    parts = [part for part in DATE_PARTS if part != "hour" or timed]
    low, high = (stamps.min().astype(datetime), stamps.max().astype(datetime))
    shown = "%Y-%m-%d %H:%M" if timed else "%Y-%m-%d"
    written = (date_format or "ISO 8601") if values.kind == "text" else f"{values.series.dtype} values"
    why = (
        f"dates ({written}{', with times' if timed else ''}) {low:{shown}}..{high:{shown}}: datetime, read as"
        f" {', '.join(parts)}{null_note(values)}"
    )
    return DatetimeFeature(
        name=values.name,
        why=why,
        nullable=values.null_share > 0,
        parts=parts,
        format=date_format,
        min=low,
        max=high,
    )


def text_format(texts: "pd.Series") -> str | bool:
    """'' when a sample of the texts reads as ISO 8601, the first COMMON_FORMATS (with a time or not) that reads
    every one of them, or False: not dates."""
    sample = texts.drop_duplicates()
    sample = sample.sample(FORMAT_SAMPLE, random_state=0) if len(sample) > FORMAT_SAMPLE else sample
    if all(iso_datetime(text) is not None for text in sample):
        return ""
    for date_format in (base + time for base in COMMON_FORMATS for time in TIME_SUFFIXES):
        if all(formatted_datetime(text, date_format) is not None for text in sample):
            return date_format
    return False


def iso_datetime(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def formatted_datetime(text: str, date_format: str) -> datetime | None:
    try:
        return datetime.strptime(text, date_format)
    except ValueError:
        return None


def as_datetime(value: Any, date_format: str | None) -> datetime | None:
    """One value as a naive datetime at its own wall-clock time, or None when missing or not a date.

    Text: ISO 8601 first, then the spec's format. Dates, datetimes and pandas Timestamps as they are; numbers are
    not dates (5 is not 5 ns past 1970)."""
    if is_missing(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        found = iso_datetime(text)
        if found is None and date_format:
            found = formatted_datetime(text, date_format)
    elif isinstance(value, datetime):
        found = value
    elif isinstance(value, date):
        found = datetime(value.year, value.month, value.day)
    elif isinstance(value, np.datetime64):
        found = value.astype("datetime64[us]").astype(datetime)
    else:
        return None
    return found.replace(tzinfo=None) if found is not None else None


def parse_datetimes(values: Sequence[Any], date_format: str | None = None) -> np.ndarray:
    """datetime64[us] per value, NaT where it is missing or not a date (as_datetime)."""
    return np.array([as_datetime(value, date_format) for value in values], dtype="datetime64[us]")


def datetime_parts(stamps: np.ndarray, parts: Sequence[str], origin: datetime | None) -> np.ndarray:
    """float64 [rows, len(parts)]: each datetime64 value's parts (the module docstring), NaN where it is NaT."""
    missing = np.isnat(stamps)
    days = stamps.astype("datetime64[D]")
    months = stamps.astype("datetime64[M]")
    start = np.datetime64(origin or EPOCH, "us")
    columns = {
        "year": lambda: stamps.astype("datetime64[Y]").astype(np.int64) + 1970,
        "month": lambda: months.astype(np.int64) % 12 + 1,
        "day": lambda: (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
        # 1970-01-01 was a Thursday: 3 days after a Monday.
        "day_of_week": lambda: (days.astype(np.int64) + 3) % 7,
        "hour": lambda: (stamps - days).astype("timedelta64[s]").astype(np.int64) / 3600,
        "elapsed": lambda: (stamps - start).astype("timedelta64[s]").astype(np.int64) / SECONDS_PER_DAY,
    }
    if not len(stamps):
        return np.zeros((0, len(parts)))
    found = np.column_stack([columns[part]().astype(np.float64) for part in parts])
    found[missing] = np.nan
    return found


def date_bounds(feature: DatetimeFeature) -> dict[str, str | None]:
    """The spec's format and the allowed span (the seen span widened by RANGE_MARGIN), as ISO text for the suite."""
    bounds: dict[str, str | None] = {"format": feature.format, "min": None, "max": None}
    if feature.min is not None and feature.max is not None:
        margin = RANGE_MARGIN * ((feature.max - feature.min) or timedelta(days=1))
        bounds |= {"min": (feature.min - margin).isoformat(), "max": (feature.max + margin).isoformat()}
        bounds |= {"seen_min": feature.min.isoformat(), "seen_max": feature.max.isoformat()}
    return bounds
