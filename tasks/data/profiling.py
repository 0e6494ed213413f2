"""Profiling: write a starting expectation suite from a dataset you trust, for a person to edit and commit.

The suite records what the data was (columns, whole-number columns, null rates, ranges, label set and label
shares), which is narrower than what it may be: pixel_0_0 is always 0 in the bundled digits, for instance.
Each expectation says in meta.observed what it saw, so the person editing it knows what to widen.
"""

import json
from dataclasses import dataclass
from math import floor
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.core.errors import GreenlightError
from tasks.core.schema import TARGET_COLUMN
from tasks.data.files import file_sha256, read_data_file
from tasks.data.gx_expectations import row_hashes, value_key

# A profiled null rate r becomes mostly = 1 - 2r: room for a fresh file to be a little worse than this one.
NULL_RATE_SLACK = 2.0
# A label's share may halve or double before the warning fires.
SHARE_SLACK = 2.0


@dataclass(frozen=True)
class SuiteProfile:
    """What `greenlight profile` wrote."""

    path: Path
    rows: int
    expectations: int


def expectation(kind: str, kwargs: dict, severity: str, why: str, observed: str | None = None) -> dict:
    meta = {"why": why} | ({"observed": observed} if observed else {})
    return {"type": kind, "kwargs": kwargs, "severity": severity, "meta": meta}


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [name for name in frame.columns if pd.api.types.is_numeric_dtype(frame[name].dtype)]


def whole_number_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Numeric columns whose every present value is a finite whole number."""
    whole = []
    for name in columns:
        values = frame[name].dropna().to_numpy(dtype=float)
        if np.isfinite(values).all() and (values == np.floor(values)).all():
            whole.append(name)
    return whole


def null_expectations(frame: pd.DataFrame) -> list[dict]:
    """One critical not-null check for the complete columns; one warning per column that had nulls."""
    rates = frame.isna().mean()
    complete = [name for name in frame.columns if rates[name] == 0]
    found = []
    if complete:
        why = "No value was missing in the profiled data; imputing would train on invented values."
        found.append(expectation("expect_columns_values_to_not_be_null", {"column_list": complete}, "critical", why))
    for name in frame.columns[rates > 0]:
        mostly = max(0.0, floor((1 - NULL_RATE_SLACK * rates[name]) * 1000) / 1000)
        why = f"{rates[name]:.2%} of the profiled values were missing; more than {1 - mostly:.1%} warns."
        kwargs = {"column_list": [name], "mostly": mostly}
        found.append(expectation("expect_columns_values_to_not_be_null", kwargs, "warning", why))
    return found


def range_expectations(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Columns grouped by their observed [min, max], one critical range check per group."""
    groups: dict[tuple, list[str]] = {}
    for name in columns:
        values = frame[name].replace([np.inf, -np.inf], np.nan).dropna()
        if len(values):
            groups.setdefault((_number(values.min()), _number(values.max())), []).append(name)
    why = "The range seen in the profiled data: widen it to what the data may be, not what it happened to be."
    return [
        expectation(
            "expect_columns_values_to_be_between",
            {"column_list": names, "min_value": low, "max_value": high},
            "critical",
            why,
            observed=f"{len(names)} column(s) between {low} and {high}",
        )
        for (low, high), names in sorted(groups.items())
    ]


def label_expectations(labels: pd.Series) -> list[dict]:
    """Label set and at least two classes (critical); every label present and its share (warnings)."""
    counts = labels.dropna().value_counts(normalize=True).sort_index()
    values = [_number(value) for value in counts.index]
    shares = {
        value_key(value): [round(share / SHARE_SLACK, 4), round(min(1.0, share * SHARE_SLACK), 4)]
        for value, share in counts.items()
    }
    column = str(labels.name)
    observed = ", ".join(f"{value_key(v)}: {share:.2%}" for v, share in counts.items())
    return [
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": column, "value_set": values},
            "critical",
            "The labels seen in the profiled data; a model has no output for any other.",
        ),
        expectation(
            "expect_column_unique_value_count_to_be_between",
            {"column": column, "min_value": 2, "max_value": None},
            "critical",
            "A single class teaches a classifier nothing.",
        ),
        expectation(
            "expect_column_distinct_values_to_contain_set",
            {"column": column, "value_set": values},
            "warning",
            "A label with no rows is one the model will never predict.",
        ),
        expectation(
            "expect_column_value_shares_to_be_between",
            {"column": column, "shares": shares},
            "warning",
            "Each label's profiled share, halved and doubled; outside that the classes are out of balance.",
            observed=observed,
        ),
    ]


def table_expectations(frame: pd.DataFrame) -> list[dict]:
    """The columns in order, a minimum row count, and the share of exact repeats."""
    repeated = pd.Series(row_hashes(frame)).duplicated().mean()
    return [
        expectation(
            "expect_table_columns_to_match_ordered_list",
            {"column_list": [str(c) for c in frame.columns]},
            "critical",
            "The columns of the profiled data, in order.",
        ),
        expectation(
            "expect_table_row_count_to_be_between",
            {"min_value": min(100, len(frame)), "max_value": None},
            "critical",
            "Fewer rows than this is a truncated or wrong file; set it to what a useful run needs.",
            observed=f"{len(frame)} rows",
        ),
        expectation(
            "expect_table_duplicate_row_share_to_be_at_most",
            {"max_share": {"$PARAMETER": "max_duplicate_share"}},
            "critical",
            "Exact repeats leak between train and test splits; the share is validation.max_duplicate_share.",
            observed=f"{repeated:.2%} of rows repeat an earlier one",
        ),
    ]


def profile_suite(frame: pd.DataFrame, source: str, sha256: str, label: str | None = TARGET_COLUMN) -> dict:
    """A GX suite (as JSON-ready dict) describing this frame, critical where a breach means a wrong file."""
    numeric = numeric_columns(frame)
    whole = whole_number_columns(frame, numeric)
    found = [*table_expectations(frame), *null_expectations(frame)]
    if whole:
        why = "Every value seen was a whole number (counts, codes, labels); 3.5, inf or text means a wrong file."
        found.append(expectation("expect_columns_values_to_be_whole_numbers", {"column_list": whole}, "critical", why))
    found += range_expectations(frame, [name for name in numeric if name != label])
    if label is not None and label in frame.columns:
        found += label_expectations(frame[label])
    return {
        "name": Path(source).stem,
        "notes": f"Profiled by `greenlight profile` from {source} ({len(frame)} rows, sha256 {sha256}). A starting"
        " point: edit the bounds and severities (critical rejects the file; warning and info are reported), then"
        " commit it and set validation.suite_path to it.",
        "meta": {"profiled_from": source, "rows": len(frame), "sha256": sha256},
        "expectations": found,
    }


def _number(value: object) -> int | float:
    """A plain int where the value is whole, so the suite reads 16, not 16.0."""
    number = float(value)
    return int(number) if number.is_integer() else number


def readable_json(value: object, indent: int = 0) -> str:
    """JSON with one expectation per block and each list of names on one line, for review in a diff."""
    pad = "  " * indent
    if isinstance(value, dict) and (
        any(isinstance(v, dict | list) for v in value.values()) or len(json.dumps(value)) > 100
    ):
        items = [f"{pad}  {json.dumps(key)}: {readable_json(item, indent + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if (
        isinstance(value, list)
        and any(isinstance(item, dict | list) for item in value)
        and len(json.dumps(value)) > 100
    ):
        return "[\n" + ",\n".join(f"{pad}  {readable_json(item, indent + 1)}" for item in value) + f"\n{pad}]"
    return json.dumps(value)


def write_profile(
    data_path: Path, out: Path, overwrite: bool = False, label: str | None = TARGET_COLUMN
) -> SuiteProfile:
    """Profile a trusted CSV or Parquet file into a suite JSON at out (refusing to replace an edited one)."""
    if out.exists() and not overwrite:
        raise GreenlightError(f"{out} already exists; pass --force to replace it, or choose another --out")
    frame = read_data_file(data_path, expected=None)
    suite = profile_suite(frame, str(data_path), file_sha256(data_path), label)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(readable_json(suite) + "\n")
    return SuiteProfile(path=out, rows=len(frame), expectations=len(suite["expectations"]))
