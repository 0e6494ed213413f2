"""Greenlight's own Great Expectations expectation types: many columns per expectation, vectorised.

GX 1.x spends ~6 ms of fixed work per expectation, so one-column expectations would cost seconds per validation.
Defining a class registers it with GX; tasks.data.validation imports this module before it loads a suite.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from great_expectations.compatibility import pydantic
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import BatchExpectation
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

from tasks.core.features.dates import parse_datetimes
from tasks.core.images import ImageFacts, ImageUnreadable, image_facts
from tasks.core.spec import value_text
from tasks.data.suite import set_text

# Each problem keeps this many (row, value) examples: enough to find the pattern, small enough for JSON.
EXAMPLES = 10
# A too-long text's example shows its opening, not all of it: enough to find the row's text in the file.
TEXT_OPENING = 40
# What a file's channel count means, for a person told that it differs from the model's (ImageFacts.channels).
CHANNEL_NAMES = {1: "grayscale", 2: "grayscale + alpha", 3: "colour", 4: "colour + alpha, or CMYK"}
# Odd 64-bit constant (from splitmix64) that spreads each column's bits across the row hash.
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
# A column with more than this share of its values distinct (an amount, a timestamp) rarely repeats by chance.
NEARLY_UNIQUE_SHARE = 0.5


def plain(value: Any) -> Any:
    """A cell as a JSON-friendly Python value: 17, 2.5, 'dark', None, or 'inf' / 'nan' for non-finite floats."""
    value = value.item() if hasattr(value, "item") and not isinstance(value, str) else value
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return None if value is pd.NA or value is pd.NaT else value


def number_text(value: float) -> str:
    """16 for 16.0, 19,600 for 19600.0, 0.0507 for 0.050680118: a bound as a person reads it."""
    return f"{value:,.4g}" if abs(value) < 1e15 else f"{value:.4g}"


def problem(series: pd.Series, mask: np.ndarray) -> dict:
    """Count the rows where mask holds and keep the first few as [row, value] pairs."""
    rows = np.flatnonzero(mask)
    shown = rows[:EXAMPLES]
    examples = [[plain(series.index[i]), plain(series.iloc[i])] for i in shown]
    return {"count": int(len(rows)), "examples": examples}


def noted_problem(series: pd.Series, mask: np.ndarray, note: Callable[[int], str]) -> dict:
    """problem(), plus a note per example (why a file failed, a text's length) for the message to show."""
    return problem(series, mask) | {"notes": [note(i) for i in np.flatnonzero(mask)[:EXAMPLES]]}


def column_of(frame: pd.DataFrame, name: str) -> pd.Series | None:
    """The column by name (the first where a name repeats), or None when it is missing."""
    if name not in frame.columns:
        return None
    selected = frame[name]
    return selected.iloc[:, 0] if isinstance(selected, pd.DataFrame) else selected


def as_numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float or int values, mask of cells that are neither null nor a number) for any column dtype."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return np.zeros(len(series)), series.notna().to_numpy()
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        return series.to_numpy(), np.zeros(len(series), dtype=bool)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=float, na_value=np.nan), np.zeros(len(series), dtype=bool)
    if series.dtype.kind in "mM":  # dates and durations: pandas would turn them into nanosecond counts
        return np.full(len(series), np.nan), series.notna().to_numpy()
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return numbers, (~missing_cells(series) & np.isnan(numbers))


def missing_cells(series: pd.Series) -> np.ndarray:
    """Null, NaN, or blank text: what the model's feeds treat as missing (value_text gives '')."""
    absent = series.isna().to_numpy()
    if series.dtype != object and not pd.api.types.is_string_dtype(series.dtype):
        return absent
    try:  # vectorised where pandas allows .str (text, or text mixed with other objects)
        blank = series.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
    except AttributeError:  # an object column of non-text values (numbers, booleans)
        blank = series.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    return absent | blank


def census(series: pd.Series) -> dict:
    """What is wrong with a column's cells as numbers: nulls, non-numbers, infinities, fractions."""
    numbers, not_numbers = as_numbers(series)
    if numbers.dtype.kind in "iu":  # an integer array holds no null, text, infinity or fraction
        clean = {"count": 0, "examples": []}
        return {"null": clean, "not_a_number": clean, "infinite": clean, "fractional": clean}
    finite = np.isfinite(numbers)
    return {
        "null": problem(series, missing_cells(series)),
        "not_a_number": problem(series, not_numbers),
        "infinite": problem(series, np.isinf(numbers)),
        "fractional": problem(series, finite & (np.floor(numbers, where=finite, out=numbers.copy()) != numbers)),
    }


def out_of_range(series: pd.Series, low: float | None, high: float | None) -> dict:
    """Numeric cells below low or above high; min/max first, so a clean integer column costs two passes."""
    numbers, _ = as_numbers(series)
    if numbers.dtype.kind in "iu" and len(numbers):
        if (low is None or numbers.min() >= low) and (high is None or numbers.max() <= high):
            return {"count": 0, "examples": []}
    with np.errstate(invalid="ignore"):  # NaN compares False: nulls are the null check's to report
        outside = np.zeros(len(numbers), dtype=bool)
        if low is not None:
            outside |= numbers < low
        if high is not None:
            outside |= numbers > high
    if numbers.dtype.kind == "f":
        outside &= ~np.isinf(numbers)  # and infinities the number check's
    return problem(series, outside)


class ColumnsValueCensus(TableMetricProvider):
    """Per listed column: its null, non-number, infinite and fractional cells."""

    metric_name = "greenlight.columns.value_census"
    value_keys = ("column_list",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        found = {name: column_of(frame, name) for name in metric_value_kwargs["column_list"]}
        return {name: None if series is None else census(series) for name, series in found.items()}


class ColumnsNullCells(TableMetricProvider):
    """Per listed column: its missing cells (null, NaN, blank text), without parsing any text as numbers."""

    metric_name = "greenlight.columns.null_cells"
    value_keys = ("column_list",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        found = {name: column_of(frame, name) for name in metric_value_kwargs["column_list"]}
        return {name: None if s is None else {"null": problem(s, missing_cells(s))} for name, s in found.items()}


class ColumnsOutOfRange(TableMetricProvider):
    """Per listed column: the numeric cells outside [min_value, max_value]."""

    metric_name = "greenlight.columns.out_of_range"
    value_keys = ("column_list", "min_value", "max_value")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        low, high = metric_value_kwargs["min_value"], metric_value_kwargs["max_value"]
        found = {name: column_of(frame, name) for name in metric_value_kwargs["column_list"]}
        return {name: None if s is None else out_of_range(s, low, high) for name, s in found.items()}


class ColumnsOutsideRanges(TableMetricProvider):
    """Per column of `ranges`: the numeric cells outside that column's own [min, max]."""

    metric_name = "greenlight.columns.outside_ranges"
    value_keys = ("ranges",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        found = {name: column_of(frame, name) for name in metric_value_kwargs["ranges"]}
        return {
            name: None if s is None else out_of_range(s, bounds.get("min"), bounds.get("max"))
            for (name, s), bounds in zip(found.items(), metric_value_kwargs["ranges"].values(), strict=True)
        }


class ColumnsUnseenValues(TableMetricProvider):
    """Per column of `value_sets`: its present cells whose value_text is not in the set, and how many are present."""

    metric_name = "greenlight.columns.unseen_values"
    value_keys = ("value_sets",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        sets = metric_value_kwargs["value_sets"]
        found = {name: column_of(frame, name) for name in sets}
        return {name: None if s is None else unseen(s, sets[name]) for name, s in found.items()}


def unseen(series: pd.Series, known: list) -> dict:
    """Cells holding a value outside `known` (compared as value_text); value_text runs once per distinct value."""
    texts = {value_text(value) for value in known}
    absent = missing_cells(series)
    distinct = pd.unique(series[~absent])
    new = [value for value in distinct if value_text(value) not in texts]
    mask = series.isin(new).to_numpy() & ~absent if new else np.zeros(len(series), dtype=bool)
    return problem(series, mask) | {"present": int((~absent).sum())}


class ColumnsTextCells(TableMetricProvider):
    """Per listed column: its present cells that are not text, and its texts longer than the column's max_chars."""

    metric_name = "greenlight.columns.text_cells"
    value_keys = ("column_list", "max_chars")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        limits = metric_value_kwargs.get("max_chars") or {}
        found = {name: column_of(frame, name) for name in metric_value_kwargs["column_list"]}
        return {name: None if s is None else text_cells(s, limits.get(name)) for name, s in found.items()}


def text_cells(series: pd.Series, max_chars: int | None) -> dict:
    """A text column's present cells that are not strings (3.5, True), and its strings over max_chars."""
    present = ~missing_cells(series)
    if series.dtype != object and pd.api.types.is_string_dtype(series.dtype):  # pandas' string dtypes: only text
        is_text = np.ones(len(series), dtype=bool)
    else:  # object (a CSV's text), categories, or numbers and booleans where a file has them instead of text
        is_text = series.map(lambda value: isinstance(value, str)).to_numpy(dtype=bool)
    texts = present & is_text
    lengths = np.zeros(len(series), dtype=np.int64)
    lengths[texts] = [len(text) for text in series[texts]]
    too_long = lengths > max_chars if max_chars else np.zeros(len(series), dtype=bool)
    long = noted_problem(series, too_long, lambda i: f"{lengths[i]:,} characters")
    long["examples"] = [[row, opening(text)] for row, text in long["examples"]]
    return {"not_text": problem(series, present & ~is_text), "too_long": long}


def opening(text: str) -> str:
    """The start of a long text, marked as cut: 'I bought this blender last spring and...'."""
    return text if len(text) <= TEXT_OPENING else text[:TEXT_OPENING] + "..."


class ColumnsDateCells(TableMetricProvider):
    """Per column of `dates`: its present cells that are not dates, and its dates outside the column's span."""

    metric_name = "greenlight.columns.date_cells"
    value_keys = ("dates",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        dates = metric_value_kwargs["dates"]
        found = {name: column_of(frame, name) for name in dates}
        return {name: None if s is None else date_cells(s, dates[name]) for name, s in found.items()}


def date_cells(series: pd.Series, bounds: dict) -> dict:
    """Present cells that do not read as dates (ISO 8601 or the spec's format, as the model's feed reads them),
    and dates outside [min, max] when the spec gives a span."""
    stamps = parse_datetimes(series.tolist(), bounds.get("format"))
    dated = ~np.isnat(stamps)
    outside = np.zeros(len(series), dtype=bool)
    for bound, beyond in (("min", np.less), ("max", np.greater)):
        if bounds.get(bound):
            outside |= dated & beyond(stamps, np.datetime64(bounds[bound], "us"))
    return {"not_a_date": problem(series, ~missing_cells(series) & ~dated), "out_of_range": problem(series, outside)}


class ColumnsImageFiles(TableMetricProvider):
    """Per column of `images`: its files that cannot be read, have other channels than the model's, or are far
    smaller than its input. Each distinct file is opened (and decoded) once."""

    metric_name = "greenlight.columns.image_files"
    value_keys = ("images",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        images = metric_value_kwargs["images"]
        found = {name: column_of(frame, name) for name in images}
        return {name: None if s is None else image_files(s, images[name]) for name, s in found.items()}


def image_files(series: pd.Series, size: dict[str, int]) -> dict:
    """Unreadable, wrong-channel and too-small files of a path column (size: the spec's input and its minimum)."""
    present = ~missing_cells(series)
    paths = pd.unique(series[present])
    # Decoding is most of the time and Pillow releases the GIL while it decodes, so threads scale with the cores.
    with ThreadPoolExecutor() as pool:
        opened = dict(zip(paths, pool.map(file_facts, paths), strict=True))
    facts = [opened[value] if keep else None for value, keep in zip(series, present, strict=True)]

    def read_and(test: Callable[[ImageFacts], bool]) -> np.ndarray:
        return np.array([isinstance(f, ImageFacts) and test(f) for f in facts], dtype=bool)

    unreadable = np.array([isinstance(f, str) for f in facts], dtype=bool)
    wrong_channels = read_and(lambda f: f.channels != size["channels"])
    too_small = read_and(lambda f: f.height < size["min_height"] or f.width < size["min_width"])
    return {
        "unreadable": noted_problem(series, unreadable, lambda i: facts[i]),
        "wrong_channels": noted_problem(series, wrong_channels, lambda i: channels_text(facts[i].channels)),
        "too_small": noted_problem(series, too_small, lambda i: f"{facts[i].width}x{facts[i].height} pixels"),
    }


def channels_text(count: int) -> str:
    """'4 channels: colour + alpha, or CMYK'."""
    return f"{count} channel{'' if count == 1 else 's'}: {CHANNEL_NAMES.get(count, 'unusual')}"


def file_facts(value: Any) -> ImageFacts | str:
    """A file's ImageFacts, or why it cannot be read (the reason without the path, which the example shows)."""
    if not isinstance(value, str | Path):
        return f"not a file path but {type(value).__name__} {value!r}"
    try:
        return image_facts(value)
    except ImageUnreadable as error:
        return str(error).removeprefix(f"{value}: ")


class TableDuplicateRows(TableMetricProvider):
    """Rows identical to an earlier row in every column, found by a vectorised 64-bit row hash."""

    metric_name = "greenlight.table.duplicate_rows"
    value_keys = ("column_list", "key_columns")

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        wanted = metric_value_kwargs.get("column_list")
        if wanted:  # the columns a model reads: rows differing only in a row key still leak
            wanted = [name for name in dict.fromkeys(wanted) if name in frame.columns]
            if not any_nearly_unique(frame, wanted):  # few discrete columns repeat by nature: keys tell records apart
                keys = metric_value_kwargs.get("key_columns") or []
                wanted += [name for name in keys if name in frame.columns and name not in wanted]
            frame = frame[wanted]
        hashes = row_hashes(frame)
        repeated = pd.Series(hashes).duplicated().to_numpy()
        # The first few repeats, each with the earlier row it repeats, checked cell by cell.
        examples = []
        for position in np.flatnonzero(repeated)[:EXAMPLES]:
            first = int(np.flatnonzero(hashes == hashes[position])[0])
            if frame.iloc[first].equals(frame.iloc[position]):
                examples.append([plain(frame.index[position]), plain(frame.index[first])])
        return {"rows": len(frame), "count": int(repeated.sum()), "examples": examples}


def any_nearly_unique(frame: pd.DataFrame, columns: list[str]) -> bool:
    """Whether one of these columns has more than NEARLY_UNIQUE_SHARE of its values distinct (an amount, a
    measurement): rows equal on it and on every other column are then copies, not two records alike."""
    return any(frame[name].nunique() > NEARLY_UNIQUE_SHARE * max(len(frame), 1) for name in columns)


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One uint64 per row, equal for equal rows; ~2 numpy passes per column instead of pandas' row tuples."""
    hashes = np.zeros(len(frame), dtype=np.uint64)
    for position in range(frame.shape[1]):
        values = frame.iloc[:, position].to_numpy()
        if values.dtype.kind in "iu":  # the integers themselves are the cheapest exact key
            bits = values.view(np.uint64) if values.dtype.itemsize == 8 else values.astype(np.uint64)
        else:
            bits = pd.util.hash_array(values)
        np.bitwise_xor(hashes, bits, out=hashes)
        np.multiply(hashes, HASH_MULTIPLIER, out=hashes)  # wraps modulo 2**64, as a hash should
    return hashes


class ColumnValueShares(TableMetricProvider):
    """The share of rows holding each value of one column, keyed by the value as text."""

    metric_name = "greenlight.column.value_shares"
    value_keys = ("column",)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        series = column_of(frame, metric_value_kwargs["column"])
        if series is None or series.empty:
            return None
        return value_shares(series)


def value_shares(series: pd.Series) -> dict[str, float]:
    """Share of the rows per value, keyed by value_text (so 3 and 3.0 add up; missing is '')."""
    shares: dict[str, float] = {}
    for value, share in series.value_counts(normalize=True, dropna=False).items():
        key = value_text(value)
        shares[key] = shares.get(key, 0.0) + float(share)
    return shares


class _ColumnListExpectation(BatchExpectation):
    """Shared shape: a list of columns, each judged alone; missing columns fail (the column check names them)."""

    column_list: list[str] = pydantic.Field(min_items=1)
    check: ClassVar[str] = ""

    def _column_result(self, per_column: dict, rows: int) -> dict:
        """Flatten per-column problems into GX's result: success, a count, and one entry per column problem."""
        missing = [name for name, found in per_column.items() if found is None]
        problems = [
            {"column": name, "problem": kind, **found[kind]}
            for name, found in per_column.items()
            if found is not None
            for kind in self.kinds
            if found[kind]["count"]
        ]
        # An entry may carry its own allowance (a share of that column's present values).
        failed = missing or any(entry["count"] > entry.get("allowed", self.allowed(rows)) for entry in problems)
        return {
            "success": not failed,
            "result": {
                "observed_value": f"{len(problems)} problem(s) in {len({p['column'] for p in problems})} column(s)",
                "element_count": rows,
                "unexpected_count": sum(entry["count"] for entry in problems),
                "details": {"problems": problems, "missing_columns": missing},
            },
        }

    def allowed(self, rows: int) -> float:
        """How many problem cells a column may hold before it fails."""
        return 0


class ExpectColumnsValuesToNotBeNull(_ColumnListExpectation):
    """Expect no null (None/NaN/empty) cell in any listed column, or at most 1 - mostly of its rows."""

    mostly: float = pydantic.Field(1.0, ge=0.0, le=1.0)
    metric_dependencies = ("greenlight.columns.null_cells", "table.row_count")
    success_keys = ("column_list", "mostly")
    args_keys = ("column_list",)
    kinds: ClassVar[tuple[str, ...]] = ("null",)

    def allowed(self, rows: int) -> float:
        return (1.0 - self.mostly) * rows

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        return self._column_result(metrics["greenlight.columns.null_cells"], metrics["table.row_count"])


class ExpectColumnsValuesToBeWholeNumbers(_ColumnListExpectation):
    """Expect every non-null cell of the listed columns to be a finite whole number (17, 17.0; not 'x', 3.5, inf)."""

    metric_dependencies = ("greenlight.columns.value_census", "table.row_count")
    success_keys = ("column_list",)
    args_keys = ("column_list",)
    kinds: ClassVar[tuple[str, ...]] = ("not_a_number", "infinite", "fractional")

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        return self._column_result(metrics["greenlight.columns.value_census"], metrics["table.row_count"])


class ExpectColumnsValuesToBeBetween(_ColumnListExpectation):
    """Expect every numeric cell of the listed columns to lie within [min_value, max_value], bounds inclusive."""

    min_value: float | SuiteParameterDict | None = None
    max_value: float | SuiteParameterDict | None = None
    metric_dependencies = ("greenlight.columns.out_of_range", "table.row_count")
    success_keys = ("column_list", "min_value", "max_value")
    args_keys = ("column_list", "min_value", "max_value")
    kinds: ClassVar[tuple[str, ...]] = ("out_of_range",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        per_column = metrics["greenlight.columns.out_of_range"]
        wrapped = {name: None if found is None else {"out_of_range": found} for name, found in per_column.items()}
        return self._column_result(wrapped, metrics["table.row_count"])


class ExpectTableDuplicateRowShareToBeAtMost(BatchExpectation):
    """Expect at most max_share of the rows to repeat an earlier row exactly (a copy-paste or a join gone wrong).

    column_list: compare rows on these columns only (empty = every column).
    key_columns: ids and names, compared too when no column of column_list is nearly unique: two passengers of
        the same class, sex and age are two records when their names differ, while rows equal in an amount and
        every other column are copies whatever their ids say.
    """

    max_share: float | SuiteParameterDict = 0.0
    column_list: list[str] | None = None
    key_columns: list[str] | None = None
    metric_dependencies = ("greenlight.table.duplicate_rows",)
    success_keys = ("max_share", "column_list", "key_columns")
    args_keys = ("max_share",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        found = metrics["greenlight.table.duplicate_rows"]
        share = found["count"] / found["rows"] if found["rows"] else 0.0
        return {
            "success": share <= self.max_share,
            "result": {"observed_value": share, "element_count": found["rows"], "unexpected_count": found["count"]}
            | {"details": {"examples": found["examples"], "max_share": self.max_share}},
        }


class ExpectColumnValueSharesToBeBetween(BatchExpectation):
    """Expect each listed value of a column to hold a share of the rows within its [min, max] (label balance)."""

    column: str
    shares: dict[str, list[float]]
    metric_dependencies = ("greenlight.column.value_shares",)
    success_keys = ("column", "shares")
    args_keys = ("column", "shares")

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        observed = metrics["greenlight.column.value_shares"]
        if observed is None:
            return {"success": False, "result": {"observed_value": None, "details": {"outside": []}}}
        outside = [
            {"value": value, "share": observed.get(value, 0.0), "min": low, "max": high}
            for value, (low, high) in self.shares.items()
            if not low <= observed.get(value, 0.0) <= high
        ]
        return {"success": not outside, "result": {"observed_value": observed, "details": {"outside": outside}}}


class ExpectColumnsValuesToBeNumbers(_ColumnListExpectation):
    """Expect every non-null cell of the listed columns to be a finite number (3.5 and '3.5'; not 'x' or inf)."""

    metric_dependencies = ("greenlight.columns.value_census", "table.row_count")
    success_keys = ("column_list",)
    args_keys = ("column_list",)
    kinds: ClassVar[tuple[str, ...]] = ("not_a_number", "infinite")

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        return self._column_result(metrics["greenlight.columns.value_census"], metrics["table.row_count"])


class ExpectColumnsValuesToBeWithinRanges(_ColumnListExpectation):
    """Expect each column's numeric cells within its own [min, max]; `seen` is the range the spec observed.

    ranges: {column: {"min": low, "max": high, "seen_min": ..., "seen_max": ...}} (the seen_* keys only
    word the message). One expectation for every numeric column: one GX pass instead of one per column.
    """

    column_list: list[str] | None = None  # unused: the columns are the keys of `ranges`
    ranges: dict[str, dict[str, float | None]]
    metric_dependencies = ("greenlight.columns.outside_ranges", "table.row_count")
    success_keys = ("ranges",)
    args_keys = ("ranges",)
    kinds: ClassVar[tuple[str, ...]] = ("out_of_range",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        per_column = metrics["greenlight.columns.outside_ranges"]
        wrapped = {
            name: None if found is None else {"out_of_range": found | {"expected": range_text(self.ranges[name])}}
            for name, found in per_column.items()
        }
        return self._column_result(wrapped, metrics["table.row_count"])


def range_text(bounds: dict[str, float | None]) -> str:
    """'outside the allowed -4.9..19.6 (seen when the spec was made: 0..9.8)'."""
    low, high = bounds.get("min"), bounds.get("max")
    allowed = f"{'' if low is None else number_text(low)}..{'' if high is None else number_text(high)}"
    seen = ""
    if bounds.get("seen_min") is not None and bounds.get("seen_max") is not None:
        seen = f" (seen when the spec was made: {number_text(bounds['seen_min'])}..{number_text(bounds['seen_max'])})"
    return f"outside the allowed {allowed}{seen}"


class ExpectColumnsValuesToBeInSets(_ColumnListExpectation):
    """Expect each column's present values within its own set, compared as value_text, allowing a share unseen.

    value_sets: {column: [values]}; max_unseen_share: the share of a column's present values that may be
    outside its set (0 = none: a label the model has no output for; 0.05 = a few new categories, which the
    model answers through its out-of-vocabulary bucket).
    """

    column_list: list[str] | None = None  # unused: the columns are the keys of `value_sets`
    value_sets: dict[str, list]
    max_unseen_share: float = pydantic.Field(0.0, ge=0.0, le=1.0)
    metric_dependencies = ("greenlight.columns.unseen_values", "table.row_count")
    success_keys = ("value_sets", "max_unseen_share")
    args_keys = ("value_sets",)
    kinds: ClassVar[tuple[str, ...]] = ("not_in_set",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        per_column = metrics["greenlight.columns.unseen_values"]
        wrapped = {
            name: None if found is None else {"not_in_set": found | self.allowance(name, found["present"])}
            for name, found in per_column.items()
        }
        return self._column_result(wrapped, metrics["table.row_count"])

    def allowance(self, name: str, present: int) -> dict:
        allowed = self.max_unseen_share * present
        share = ""
        if self.max_unseen_share:
            share = f" (up to {self.max_unseen_share:.0%} allowed: the model answers them as an unseen category)"
        return {"allowed": allowed, "expected": f"not in {set_text(self.value_sets[name])}{share}"}


class ExpectColumnsValuesToBeTexts(_ColumnListExpectation):
    """Expect every present cell of the listed columns to be text (not 3.5 or True), within its column's max_chars.

    max_chars: {column: most characters} for the columns that have a limit (the service refuses longer texts).
    """

    max_chars: dict[str, int] | None = None
    metric_dependencies = ("greenlight.columns.text_cells", "table.row_count")
    success_keys = ("column_list", "max_chars")
    args_keys = ("column_list", "max_chars")
    kinds: ClassVar[tuple[str, ...]] = ("not_text", "too_long")

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        per_column = metrics["greenlight.columns.text_cells"]
        limits = self.max_chars or {}
        wrapped = {
            name: None
            if found is None
            else found | {"too_long": found["too_long"] | {"expected": f"longer than max_chars {limits.get(name)}"}}
            for name, found in per_column.items()
        }
        return self._column_result(wrapped, metrics["table.row_count"])


class _ImageFilesExpectation(_ColumnListExpectation):
    """Shared shape of the image file checks: `images` = {column: the spec's input size and the least size}.

    Both checks pass the same `images`, so GX opens the files once for the two of them.
    """

    column_list: list[str] | None = None  # unused: the columns are the keys of `images`
    images: dict[str, dict[str, int]]
    metric_dependencies = ("greenlight.columns.image_files", "table.row_count")
    success_keys = ("images",)
    args_keys = ("images",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        per_column = metrics["greenlight.columns.image_files"]
        wrapped = {
            name: None
            if found is None
            else {kind: found[kind] | self.expected(kind, self.images[name]) for kind in self.kinds}
            for name, found in per_column.items()
        }
        return self._column_result(wrapped, metrics["table.row_count"])

    @staticmethod
    def expected(kind: str, size: dict[str, int]) -> dict:
        """What the files of a problem kind are not, in the spec's terms, for the message."""
        channels = f"{size['channels']} ({CHANNEL_NAMES.get(size['channels'], 'unusual')})"
        words = {
            "unreadable": "could not be read",
            "wrong_channels": f"with other channels than the model's {channels}",
            "too_small": (
                f"under a quarter of the model's {size['width']}x{size['height']} input"
                f" (under {size['min_width']} pixels wide or {size['min_height']} high)"
            ),
        }
        return {"expected": words[kind]}


class ExpectColumnsImageFilesToBeReadable(_ImageFilesExpectation):
    """Expect every present path of the listed image columns to name a PNG or JPEG file that decodes."""

    kinds: ClassVar[tuple[str, ...]] = ("unreadable",)


class ExpectColumnsImageFilesToFitTheInput(_ImageFilesExpectation):
    """Expect every readable image to have the model's channels and at least its least height and width."""

    kinds: ClassVar[tuple[str, ...]] = ("wrong_channels", "too_small")


class _DatesExpectation(_ColumnListExpectation):
    """Shared shape of the date checks: `dates` = {column: {"format": ..., "min": ..., "max": ..., "seen_min": ...,
    "seen_max": ...}} (ISO text; the seen_* keys only word the message). Both checks pass the same `dates`, so GX
    reads each column's dates once for the two of them."""

    column_list: list[str] | None = None  # unused: the columns are the keys of `dates`
    dates: dict[str, dict[str, str | None]]
    metric_dependencies = ("greenlight.columns.date_cells", "table.row_count")
    success_keys = ("dates",)
    args_keys = ("dates",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        per_column = metrics["greenlight.columns.date_cells"]
        wrapped = {
            name: None
            if found is None
            else {kind: found[kind] | {"expected": date_expected(kind, self.dates[name])} for kind in self.kinds}
            for name, found in per_column.items()
        }
        return self._column_result(wrapped, metrics["table.row_count"])


def date_expected(kind: str, bounds: dict) -> str:
    """'not dates (ISO 8601 or %d/%m/%Y)', or 'outside the allowed 2019-07-02..2022-06-30 (seen ...)'."""
    if kind == "not_a_date":
        return f"not dates (ISO 8601{' or ' + bounds['format'] if bounds.get('format') else ''})"
    day = {key: (value or "")[:10] for key, value in bounds.items() if key != "format"}
    seen = f" (seen when the spec was made: {day['seen_min']}..{day['seen_max']})" if day.get("seen_min") else ""
    return f"outside the allowed {day['min']}..{day['max']}{seen}"


class ExpectColumnsValuesToBeDates(_DatesExpectation):
    """Expect every present cell of the `dates` columns to read as a date (ISO 8601, or the column's format)."""

    kinds: ClassVar[tuple[str, ...]] = ("not_a_date",)


class ExpectColumnsDatesToBeWithinRanges(_DatesExpectation):
    """Expect every date of the `dates` columns within its column's [min, max]."""

    kinds: ClassVar[tuple[str, ...]] = ("out_of_range",)


class ExpectColumnValueCountsToBeAtLeast(BatchExpectation):
    """Expect each value of value_set that a column holds at all to fill at least min_count rows.

    A label with a row or two cannot be split into train, validation and test; a label with none is the
    distinct-values check's to report.
    """

    column: str
    value_set: list
    min_count: int = pydantic.Field(ge=1)
    metric_dependencies = ("greenlight.column.value_shares", "table.row_count")
    success_keys = ("column", "value_set", "min_count")
    args_keys = ("column", "value_set", "min_count")

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        shares, rows = metrics["greenlight.column.value_shares"], metrics["table.row_count"]
        if shares is None:
            return {"success": False, "result": {"observed_value": None, "details": {"below": []}}}
        # Shares are count / rows, so the rounded product is the count itself.
        counts = {text: round(shares[text] * rows) for text in map(value_text, self.value_set) if text in shares}
        below = [{"value": text, "count": count} for text, count in counts.items() if count < self.min_count]
        return {
            "success": not below,
            "result": {"observed_value": counts, "details": {"below": below, "min_count": self.min_count}},
        }
