"""Validation stage: run the digits expectation suite on a frame through a Great Expectations checkpoint."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.data_context import EphemeralDataContext
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import DataRejected

DEFAULT_SUITE = Path(__file__).resolve().parent / "expectations" / "digits.json"
DOCS_SITE = "greenlight"
# SUMMARY is the cheapest result format that still returns example values with their row index.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
# A message line shows this many examples; the result JSON keeps the 10 GX returned.
SHOWN_EXAMPLES = 3
# describe() lists this many failures: a wrong file can fail all ~200, and the rest are in the reports.
SHOWN_FAILURES = 20

# expectation type -> (name of the check, what is wrong with the unexpected values, from its kwargs)
CHECKS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "expect_column_values_to_not_be_null": ("null check", lambda kw: "missing (null/NaN)"),
    "expect_column_values_to_be_in_type_list": ("integer type check", lambda kw: "not of an integer type"),
    "expect_column_values_to_be_between": (
        "range check",
        lambda kw: f"outside {_bound(kw['min_value'])}..{_bound(kw['max_value'])}",
    ),
    "expect_column_values_to_be_in_set": ("label set check", lambda kw: f"not in {_set_text(kw['value_set'])}"),
}


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed expectation, as the person running the pipeline needs to see it."""

    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: tuple  # (row index or None, unexpected value) pairs; column names for a column-set failure
    detail: str


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of one suite run, with the GX result JSON and the Data Docs page it produced."""

    success: bool
    evaluated_expectations: int
    failures: tuple[ExpectationFailure, ...]
    result_json: Path
    data_docs_html: Path

    def describe(self, source: str) -> str:
        """A multi-line message naming the file, each failed expectation, and where the full reports are."""
        if self.success:
            head = f"data file {source} passed all {self.evaluated_expectations} expectations"
            return "\n".join([head, f"  result: {self.result_json}", f"  data docs: {self.data_docs_html}"])
        lines = [f"data file {source} failed {len(self.failures)} of {self.evaluated_expectations} expectations:"]
        lines += [f"  - {failure.detail}  [{failure.expectation}]" for failure in self.failures[:SHOWN_FAILURES]]
        if len(self.failures) > SHOWN_FAILURES:
            lines.append(f"  ... and {len(self.failures) - SHOWN_FAILURES} more, listed in the reports below")
        lines += [
            f"full result: {self.result_json}",
            f"data docs: {self.data_docs_html}",
            "Fix these values or columns in the file (schema: tasks/schema.py) and run again; nothing was trained.",
        ]
        return "\n".join(lines)


def load_suite(path: Path) -> gx.ExpectationSuite:
    """Read a GX ExpectationSuite JSON file, refusing it where GX would silently drop an invalid expectation."""
    raw = json.loads(path.read_text())
    suite = gx.ExpectationSuite(**raw)
    # GX logs and skips expectations it cannot build; a typo must not quietly weaken the gate.
    dropped = len(raw.get("expectations", [])) - len(suite.expectations)
    if dropped:
        raise ValueError(f"{path}: {dropped} expectation(s) are invalid (GX logged why); fix the suite file")
    return suite


def ephemeral_context(docs_dir: Path) -> EphemeralDataContext:
    """An in-memory GX context whose only Data Docs site is docs_dir: no great_expectations/ folder anywhere."""
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        # The defaults' in-memory stores, but not their extra docs site in a fresh /tmp folder per context.
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={DOCS_SITE: site},
        analytics_enabled=False,
        # tqdm bars, one per expectation batch, would flood the Prefect logs.
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def build_checkpoint(context: EphemeralDataContext, suite: gx.ExpectationSuite, asset_name: str) -> gx.Checkpoint:
    """Wire pandas datasource -> dataframe asset -> batch definition -> validation definition -> checkpoint."""
    batch = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(asset_name)
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}_on_{asset_name}", data=batch, suite=context.suites.add(suite))
    )
    checkpoint = gx.Checkpoint(
        name="greenlight_validation",
        validation_definitions=[definition],
        actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[DOCS_SITE])],
        result_format=RESULT_FORMAT,
    )
    return context.checkpoints.add(checkpoint)


# Hashing a million-row frame for a cache key would cost more than validating it.
@task(name="validate_dataset", cache_policy=NO_CACHE)
def validate_dataset(
    frame: pd.DataFrame, source: str, report_dir: Path, suite_path: Path = DEFAULT_SUITE
) -> ValidationReport:
    """Run the suite via a GX Checkpoint; write result JSON + Data Docs under report_dir; never raise on failures."""
    name = report_name(source)
    report_dir.mkdir(parents=True, exist_ok=True)
    context = ephemeral_context(report_dir / "data_docs")
    checkpoint = build_checkpoint(context, load_suite(suite_path), asset_name=name)
    # An explicit run_time: without one GX tries to parse the run name as a date.
    run_id = gx.RunIdentifier(run_name=name, run_time=datetime.now(UTC))
    outcome = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
    ((key, result),) = outcome.run_results.items()
    # Table-level failures first: a missing column explains the per-column failures after it.
    failures = [describe_failure(item, frame) for item in result.results if not item.success]
    result_json = report_dir / f"{name}.validation.json"
    result_json.write_text(json.dumps(result.to_json_dict(), indent=2))
    return ValidationReport(
        success=bool(result.success),
        evaluated_expectations=int(result.statistics["evaluated_expectations"]),
        failures=tuple(sorted(failures, key=lambda failure: failure.column is not None)),
        result_json=result_json,
        data_docs_html=docs_page(context, key, fallback=report_dir / "data_docs" / "index.html"),
    )


@task(name="require_valid_dataset")
def require_valid_dataset(report: ValidationReport, source: str) -> None:
    """Raises tasks.errors.DataRejected(report.describe(source)) when report.success is False."""
    if not report.success:
        raise DataRejected(report.describe(source))


def report_name(source: str) -> str:
    """A file-name-safe name for the source, so several datasets can share one report_dir."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).name).strip("._") or "dataset"


def docs_page(context: EphemeralDataContext, key: ValidationResultIdentifier, fallback: Path) -> Path:
    """The Data Docs page of this validation result, or the site index if GX cannot name it."""
    urls = context.get_docs_sites_urls(resource_identifier=key, site_name=DOCS_SITE)
    url = urls[0]["site_url"] if urls else None
    return Path(unquote(urlparse(url).path)) if url else fallback


def describe_failure(item: ExpectationValidationResult, frame: pd.DataFrame) -> ExpectationFailure:
    """Turn one failed GX result into its expectation, column, count, examples and a one-line detail."""
    kind, kwargs = item.expectation_config.type, item.expectation_config.kwargs
    result, column = item.result or {}, kwargs.get("column")
    error = exception_message(item.exception_info)
    if error is not None:
        return ExpectationFailure(kind, column, None, (), not_run_detail(kind, column, error, frame))
    if kind == "expect_table_columns_to_match_ordered_list":
        return columns_failure(kind, list(kwargs["column_list"]), list(result.get("observed_value") or []))
    if kind == "expect_table_row_count_to_be_between":
        detail = f"only {result.get('observed_value')} rows; at least {kwargs['min_value']} are required"
        return ExpectationFailure(kind, None, None, (), detail)
    if kind == "expect_column_values_to_be_in_type_list" and "unexpected_count" not in result:
        # A typed (non-object) column is judged by its dtype alone, so GX gives no examples: find them here.
        return dtype_failure(kind, column, str(result.get("observed_value")), first_column(frame, column))
    return values_failure(kind, column, kwargs, result)


def exception_message(info: dict | None) -> str | None:
    """The error that stopped an expectation, if any (GX nests it per metric, or keeps it flat)."""
    entries = [info] if info and "raised_exception" in info else list((info or {}).values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error")
    return None


def not_run_detail(kind: str, column: str | None, error: str, frame: pd.DataFrame) -> str:
    """Say why a check could not run: usually its column is missing, which the column check also reports."""
    check = CHECKS.get(kind, (kind, None))[0]
    if column is not None and column not in frame.columns:
        return f"column '{column}' is missing, so its {check} did not run"
    dtype = first_column(frame, column).dtype
    if not pd.api.types.is_numeric_dtype(dtype):
        return f"column '{column}' holds non-numbers (dtype {dtype}), so its {check} did not run"
    return f"column '{column}': {check} could not run: {error}"


def first_column(frame: pd.DataFrame, column: str) -> pd.Series:
    """The column by name; the first one where a file repeats the name (the column check reports the repeat)."""
    selected = frame[column]
    return selected.iloc[:, 0] if isinstance(selected, pd.DataFrame) else selected


def columns_failure(kind: str, expected: list, observed: list) -> ExpectationFailure:
    """Name the missing, unexpected, duplicated or misplaced columns instead of dumping both lists."""
    missing = [name for name in expected if name not in observed]
    extra = [name for name in observed if name not in expected]
    repeated = sorted({str(name) for name in observed if observed.count(name) > 1})
    problems = [
        f"{label} {_names(names)}"
        for label, names in (("missing", missing), ("unexpected", extra), ("duplicated", repeated))
        if names
    ]
    if not problems:
        position = next(i for i, pair in enumerate(zip_longest(expected, observed)) if pair[0] != pair[1])
        problems.append(
            f"out of order from position {position}: found '{observed[position]}', expected '{expected[position]}'"
        )
    detail = (
        f"columns do not match the schema ({expected[0]} .. {expected[-1]}, {len(expected)} in this order): "
        + "; ".join(problems)
    )
    named = tuple((None, name) for name in [*missing, *extra, *repeated])
    return ExpectationFailure(kind, None, len(named) or None, named, detail)


def dtype_failure(kind: str, column: str, dtype: str, series: pd.Series) -> ExpectationFailure:
    """A column of a non-integer dtype: name the dtype and the values that are not whole numbers."""
    numbers = pd.to_numeric(series, errors="coerce")
    wrong = series.notna() & (numbers.isna() | (numbers % 1 != 0))
    examples = tuple((_plain(row), _plain(value)) for row, value in series[wrong].head(10).items())
    detail = f"column '{column}': dtype {dtype}, expected an integer dtype"
    if wrong.any():
        verb = "is not a whole number" if wrong.sum() == 1 else "are not whole numbers"
        detail += f"; {_count(int(wrong.sum()), 'value')} {verb}{_example_text(examples)}"
    elif series.dtype.kind == "f" and series.isna().any():
        detail += " (its nulls make pandas store the integers as floats)"
    return ExpectationFailure(kind, column, int(wrong.sum()) or None, examples, detail)


def values_failure(kind: str, column: str | None, kwargs: dict, result: dict) -> ExpectationFailure:
    """A column check that counted unexpected values: say how many, which values, in which rows."""
    count = result.get("unexpected_count")
    values = result.get("partial_unexpected_list") or []
    rows = result.get("partial_unexpected_index_list") or [None] * len(values)
    examples = tuple((_plain(row), _plain(value)) for row, value in zip(rows, values, strict=False))
    problem = CHECKS.get(kind, (kind, lambda kw: "unexpected"))[1](kwargs)
    shown = _example_text(examples, with_values=kind != "expect_column_values_to_not_be_null")
    detail = f"column '{column}': {_count(count, 'value')} {problem}{shown}"
    return ExpectationFailure(kind, column, count, examples, detail)


def _example_text(examples: tuple, with_values: bool = True) -> str:
    """', e.g. 17, -1 (rows 4, 90)' from (row, value) pairs."""
    values = list(dict.fromkeys(_show(value) for _, value in examples))[:SHOWN_EXAMPLES]
    rows = [str(row) for row, _ in examples if row is not None][:SHOWN_EXAMPLES]
    text = f", e.g. {', '.join(values)}" if values and with_values else ""
    return text + (f" (row{'s' if len(rows) > 1 else ''} {', '.join(rows)})" if rows else "")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so it prints as 17, not np.int64(17)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _show(value: Any) -> str:
    """Strings quoted, so a stray '17' reads differently from 17."""
    return repr(value) if isinstance(value, str) else str(_plain(value))


def _bound(value: float | None) -> str:
    """A range bound as written in the suite: GX stores 16 as 16.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _count(count: int | None, noun: str) -> str:
    """'1 value', '12 values', or 'some values' when GX gave no count."""
    if count is None:
        return f"some {noun}s"
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _set_text(values: list) -> str:
    """'0..9' for a run of integers, else '{a, b}'."""
    ints = sorted(v for v in values if isinstance(v, int))
    if len(ints) == len(values) > 1 and ints == list(range(ints[0], ints[-1] + 1)):
        return f"{ints[0]}..{ints[-1]}"
    return "{" + ", ".join(_show(v) for v in values) + "}"


def _names(names: list) -> str:
    """Up to five quoted column names, then how many more."""
    shown = ", ".join(f"'{name}'" for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
