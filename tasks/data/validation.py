"""Validation stage: run an expectation suite on a frame through a Great Expectations checkpoint.

The suite comes from the spec (tasks.data.suite), or from a file a person wrote (validation.suite_path).
Each expectation carries a GX 1.x severity (critical / warning / info, critical by default). Only critical
failures reject the file; the others are reported and the run goes on. The suite's multi-column types
live in tasks.data.gx_expectations, imported here so GX knows them before a suite file is parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import task

from tasks.core.cache import stage_cache_key
from tasks.core.config import ValidationConfig
from tasks.core.errors import ConfigRejected
from tasks.core.spec import DatasetSpec
from tasks.data.files import near_miss_hint
from tasks.data.suite import readable_json, set_text, suite_for_spec

if TYPE_CHECKING:  # GX takes ~2.6 s to import: only when a validation actually runs (not on a cached rerun)
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult
    from great_expectations.data_context import EphemeralDataContext

SEVERITIES = ("critical", "warning", "info")
# SUMMARY is the cheapest result format that still returns example values with their row index.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
# A message line shows this many examples; the result JSON keeps the 10 GX returned.
SHOWN_EXAMPLES = 3

# expectation type -> (name of the check, what is wrong with the unexpected values, from its kwargs)
CHECKS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "expect_columns_values_to_not_be_null": ("null check", lambda kw: "missing (null/NaN)"),
    "expect_columns_values_to_be_whole_numbers": ("number check", lambda kw: "not whole numbers"),
    "expect_columns_values_to_be_between": (
        "range check",
        lambda kw: f"outside {_bound(kw.get('min_value'))}..{_bound(kw.get('max_value'))}",
    ),
    "expect_column_values_to_not_be_null": ("null check", lambda kw: "missing (null/NaN)"),
    "expect_column_values_to_be_between": (
        "range check",
        lambda kw: f"outside {_bound(kw.get('min_value'))}..{_bound(kw.get('max_value'))}",
    ),
    "expect_column_values_to_be_in_set": ("label set check", lambda kw: f"not in {set_text(kw['value_set'])}"),
    "expect_columns_values_to_be_numbers": ("number check", lambda kw: "not numbers"),
    "expect_columns_values_to_be_within_ranges": ("range check", lambda kw: "outside the allowed range"),
    "expect_columns_values_to_be_in_sets": ("value set check", lambda kw: "not in the spec's values"),
    "expect_columns_values_to_be_texts": ("text check", lambda kw: "not text, or over max_chars"),
    "expect_columns_image_files_to_be_readable": ("image file check", lambda kw: "not readable images"),
    "expect_columns_image_files_to_fit_the_input": ("image size check", lambda kw: "not the model's input size"),
    "expect_columns_values_to_be_dates": ("date check", lambda kw: "not dates"),
    "expect_columns_dates_to_be_within_ranges": ("date range check", lambda kw: "outside the allowed span"),
    "expect_column_value_counts_to_be_at_least": ("label count check", lambda kw: f"under {kw['min_count']} rows"),
}
# Problem kinds of the multi-column types: (word before "value(s)", words after), e.g. "3 non-numeric values".
PROBLEMS = {
    "null": ("", " missing (null/NaN)"),
    "not_a_number": ("non-numeric ", ""),
    "infinite": ("infinite ", ""),
    "fractional": ("non-integer ", ""),
    "not_text": ("non-text ", ""),
}
# Problem kinds listed one example at a time with its note (why a file failed, a text's length): kind -> (what
# is counted, what to do), e.g. "2 files could not be read: row 7 /data/x.png (why); ...; replace or delete ...".
ITEMISED = {
    "too_long": ("text", "the service refuses such texts: shorten or drop these rows, or raise max_chars in the spec"),
    "unreadable": ("file", "replace or delete these files, or drop their rows"),
    "wrong_channels": ("file", "each is converted when read; check these are the images meant"),
    "too_small": ("file", "each is upscaled when read, inventing most of its pixels; check these belong here"),
}


@dataclass(frozen=True)
class ExpectationFailure:
    """One problem found by a failed expectation, as the person running the pipeline needs to see it."""

    expectation: str
    severity: str
    column: str | None
    unexpected_count: int | None
    examples: tuple  # (row index or None, unexpected value) pairs; column names for a column-set failure
    detail: str


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation of the suite as run: for the report's full list, passed or not."""

    expectation: str
    severity: str
    success: bool
    target: str
    observed: str
    why: str


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of one suite run: the problems by severity, every expectation's outcome, and the GX result JSON."""

    source: str
    suite: Path
    rows: int
    failures: tuple[ExpectationFailure, ...]
    outcomes: tuple[ExpectationOutcome, ...]
    result_json: Path

    @property
    def evaluated_expectations(self) -> int:
        return len(self.outcomes)

    @property
    def passed(self) -> bool:
        """No critical failure: warnings and info never stop a run."""
        return not self.of_severity("critical")

    def of_severity(self, severity: str) -> tuple[ExpectationFailure, ...]:
        return tuple(failure for failure in self.failures if failure.severity == severity)

    def failed_expectations(self, severity: str) -> int:
        return sum(1 for o in self.outcomes if not o.success and o.severity == severity)


def read_suite_json(path: Path) -> dict:
    """A suite file's JSON; an unreadable or unparseable file is refused naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigRejected(f"expectation suite {path} could not be read: {error}") from error


def great_expectations():
    """GX, imported on first use, with Greenlight's expectation types registered (tasks.data.gx_expectations)."""
    import great_expectations as gx

    import tasks.data.gx_expectations  # noqa: F401  importing it registers the types a suite may name

    return gx


def load_suite(path: Path) -> gx.ExpectationSuite:
    """Read a GX ExpectationSuite JSON file, refusing it where GX would silently drop an invalid expectation."""
    return build_suite(read_suite_json(path), str(path))


def build_suite(raw: dict, where: str) -> gx.ExpectationSuite:
    """A GX suite from its JSON dict, refusing it where GX would silently drop an invalid expectation."""
    suite = great_expectations().ExpectationSuite(**raw)
    # GX logs and skips expectations it cannot build; a typo must not quietly weaken the gate.
    dropped = len(raw.get("expectations", [])) - len(suite.expectations)
    if dropped:
        raise ConfigRejected(f"expectation suite {where}: {dropped} expectation(s) are invalid (GX logged why); fix it")
    return suite


def suite_to_run(spec: DatasetSpec, config: ValidationConfig, report_dir: Path, name: str) -> tuple[Path, dict]:
    """The suite file a person gave (validation.suite_path), or the spec's suite written under report_dir.

    The generated suite is written so the report can point at what was checked and a person can copy it.
    """
    if config.suite_path:
        path = Path(config.suite_path).expanduser()
        return path, read_suite_json(path)
    raw = suite_for_spec(spec)
    path = report_dir / f"{name}.suite.json"
    path.write_text(readable_json(raw) + "\n")
    return path, raw


def ephemeral_context() -> EphemeralDataContext:
    """An in-memory GX context: no great_expectations/ folder and no Data Docs site anywhere."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        # Data Docs pages load Bootstrap, jQuery and Font Awesome from CDNs; tasks.data.report writes an offline page.
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        # tqdm bars, one per expectation batch, would flood the Prefect logs.
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return great_expectations().get_context(mode="ephemeral", project_config=config)


def build_checkpoint(context: EphemeralDataContext, suite: gx.ExpectationSuite, asset_name: str) -> gx.Checkpoint:
    """Wire pandas datasource -> dataframe asset -> batch definition -> validation definition -> checkpoint."""
    gx = great_expectations()
    batch = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(asset_name)
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}_on_{asset_name}", data=batch, suite=context.suites.add(suite))
    )
    checkpoint = gx.Checkpoint(
        name="greenlight_validation", validation_definitions=[definition], actions=[], result_format=RESULT_FORMAT
    )
    return context.checkpoints.add(checkpoint)


# Cached on the frame's content, the spec, the settings and the code: a rerun of the same file skips GX.
@task(
    name="validate_dataset",
    cache_key_fn=stage_cache_key("validation", ignore=["report_dir"], files_of=lambda r: [r.suite, r.result_json]),
    persist_result=True,
)
def validate_dataset(
    frame: pd.DataFrame, source: str, report_dir: Path, config: ValidationConfig, spec: DatasetSpec
) -> ValidationReport:
    """Run the spec's suite (or validation.suite_path) via a GX Checkpoint and write the suite and its result
    JSON under report_dir; never raise on failures."""
    name = report_name(source)
    report_dir.mkdir(parents=True, exist_ok=True)
    suite_path, raw = suite_to_run(spec, config, report_dir, name)
    checkpoint = build_checkpoint(ephemeral_context(), build_suite(raw, str(suite_path)), asset_name=name)
    # An explicit run_time: without one GX tries to parse the run name as a date.
    run_id = great_expectations().RunIdentifier(run_name=name, run_time=datetime.now(UTC))
    outcome = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters={"max_duplicate_share": config.max_duplicate_share},
        run_id=run_id,
    )
    (result,) = outcome.run_results.values()
    failures = [f for item in result.results if not item.success for f in describe_failure(item, frame)]
    result_json = report_dir / f"{name}.validation.json"
    result_json.write_text(json.dumps(result.to_json_dict(), indent=2))
    return ValidationReport(
        source=source,
        suite=suite_path,
        rows=len(frame),
        # Critical first; table-level first within a severity: a missing column explains the checks after it.
        failures=tuple(sorted(failures, key=lambda f: (SEVERITIES.index(f.severity), f.column is not None))),
        outcomes=tuple(expectation_outcome(item) for item in result.results),
        result_json=result_json,
    )


def report_name(source: str) -> str:
    """A file-name-safe name for the source, so several datasets can share one report_dir."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source).name).strip("._") or "dataset"


def severity_of(item: ExpectationValidationResult) -> str:
    severity = item.expectation_config.severity
    return str(getattr(severity, "value", severity) or "critical")


def expectation_outcome(item: ExpectationValidationResult) -> ExpectationOutcome:
    """What the full list in the report shows for one expectation."""
    config, result = item.expectation_config, item.result or {}
    kwargs = config.kwargs
    # Greenlight's per-column types key their columns in a mapping (value_sets, ranges, images, dates).
    columns = kwargs.get("column_list") or list(
        kwargs.get("value_sets") or kwargs.get("ranges") or kwargs.get("images") or kwargs.get("dates") or []
    )
    named = ", ".join(columns[:3]) + (f" and {len(columns) - 3} more" if len(columns) > 3 else "")
    target = kwargs.get("column") or (named if columns else "table")
    observed = result.get("observed_value", result.get("unexpected_count", ""))
    return ExpectationOutcome(
        expectation=config.type,
        severity=severity_of(item),
        success=bool(item.success),
        target=str(target),
        observed=_short(observed),
        why=str((config.meta or {}).get("why", "")),
    )


def describe_failure(item: ExpectationValidationResult, frame: pd.DataFrame) -> list[ExpectationFailure]:
    """Turn one failed GX result into its problems: expectation, severity, column, count, examples, detail."""
    kind, kwargs, severity = item.expectation_config.type, item.expectation_config.kwargs, severity_of(item)
    result, column = item.result or {}, kwargs.get("column")
    error = exception_message(item.exception_info)
    if error is not None:
        return [ExpectationFailure(kind, severity, column, None, (), not_run_detail(kind, column, error, frame))]
    if "problems" in result.get("details", {}):
        return column_list_failures(kind, severity, kwargs, result["details"])
    describe = TABLE_FAILURES.get(kind)
    if describe is not None:
        return [ExpectationFailure(kind, severity, None, *describe(kwargs, result, frame))]
    if kind == "expect_column_unique_value_count_to_be_between":
        return [single_class_failure(kind, severity, column, kwargs, frame)]
    if kind == "expect_column_distinct_values_to_contain_set":
        absent = result.get("partial_missing_list") or []
        detail = f"column '{column}' has no rows for {set_text(absent)} of the expected {set_text(kwargs['value_set'])}"
        return [ExpectationFailure(kind, severity, column, len(absent), tuple((None, v) for v in absent), detail)]
    if kind == "expect_column_value_shares_to_be_between":
        return [shares_failure(kind, severity, column, result)]
    if kind == "expect_column_value_counts_to_be_at_least":
        return [rare_labels_failure(kind, severity, column, kwargs, result)]
    return [values_failure(kind, severity, column, kwargs, result)]


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
    dtype = first_column(frame, column).dtype if column is not None else None
    if dtype is not None and not pd.api.types.is_numeric_dtype(dtype):
        return f"column '{column}' holds non-numbers (dtype {dtype}), so its {check} did not run"
    return f"{check} {f'of column {column!r} ' if column else ''}could not run: {error}"


def first_column(frame: pd.DataFrame, column: str) -> pd.Series:
    """The column by name; the first one where a file repeats the name (the column check reports the repeat)."""
    selected = frame[column]
    return selected.iloc[:, 0] if isinstance(selected, pd.DataFrame) else selected


def column_list_failures(kind: str, severity: str, kwargs: dict, details: dict) -> list[ExpectationFailure]:
    """One failure per (column, problem) of a multi-column expectation, plus one for its missing columns."""
    check = CHECKS.get(kind, (kind, lambda kw: "unexpected"))
    failures = []
    for found in details["problems"]:
        examples = tuple((row, value) for row, value in found["examples"])
        if found["problem"] in ITEMISED:
            detail = itemised_detail(found, *ITEMISED[found["problem"]])
        else:
            # Per-column expectations word their own expected values ("not in {'a', 'b'}", "outside 0..9").
            before, after = PROBLEMS.get(found["problem"]) or ("", f" {found.get('expected') or check[1](kwargs)}")
            shown = _example_text(examples, with_values=found["problem"] != "null")
            detail = f"column '{found['column']}': {_count(found['count'], before + 'value')}{after}{shown}"
        failures.append(ExpectationFailure(kind, severity, found["column"], found["count"], examples, detail))
    missing = details.get("missing_columns") or []
    if missing:
        detail = f"{_count(len(missing), 'column')} missing ({_names(missing)}), so the {check[0]} did not run on them"
        failures.append(
            ExpectationFailure(kind, severity, None, len(missing), tuple((None, m) for m in missing), detail)
        )
    return failures


def itemised_detail(found: dict, noun: str, what_to_do: str) -> str:
    """'column 'image': 2 files could not be read: row 7 /data/x.png (why); row 9 ...; replace or delete ...'."""
    pairs = list(zip(found["examples"], found.get("notes") or [], strict=False))[:SHOWN_EXAMPLES]
    # A path reads best bare; a text quoted, so its opening and its end are visible.
    items = [f"row {row} {value if noun == 'file' else show_value(value)} ({note})" for (row, value), note in pairs]
    more = f"; and {found['count'] - len(items)} more" if found["count"] > len(items) else ""
    head = f"column '{found['column']}': {_count(found['count'], noun)} {found.get('expected', '')}"
    return f"{head}: {'; '.join(items)}{more}; {what_to_do}"


def columns_failure(kwargs: dict, result: dict, frame: pd.DataFrame) -> tuple:
    """Name the missing, unexpected, duplicated or misplaced columns instead of dumping both lists."""
    expected, observed = list(kwargs["column_list"]), list(result.get("observed_value") or [])
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
        f"columns do not match the suite's list ({expected[0]} .. {expected[-1]}, {len(expected)} in this order): "
        + "; ".join(problems)
    )
    named = tuple((None, name) for name in [*missing, *extra, *repeated])
    return len(named) or None, named, detail


def column_set_failure(kwargs: dict, result: dict, frame: pd.DataFrame) -> tuple:
    """Name the columns the spec needs that the file lacks, with a hint for near-miss names."""
    mismatched = (result.get("details") or {}).get("mismatched") or {}
    expected = list(kwargs["column_set"])
    missing = [name for name in expected if name in set(mismatched.get("missing") or [])]
    others = [str(name) for name in frame.columns if name not in expected]
    detail = (
        f"missing {_names(missing)}, which the spec names ({len(expected)} columns the model reads, target"
        f" included){near_miss_hint(missing, others)}"
    )
    return len(missing), tuple((None, name) for name in missing), detail


def row_count_failure(kwargs: dict, result: dict, frame: pd.DataFrame) -> tuple:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    bound = f"at least {low}" if high is None else f"{low}..{high}" if low is not None else f"at most {high}"
    return None, (), f"{result.get('observed_value')} rows; {bound} expected"


def duplicates_failure(kwargs: dict, result: dict, frame: pd.DataFrame) -> tuple:
    """How many rows repeat an earlier one, which, and the allowed share."""
    count, rows = result.get("unexpected_count", 0), result.get("element_count", 0)
    pairs = (result.get("details") or {}).get("examples") or []
    shown = ", ".join(f"row {row} = row {first}" for row, first in pairs[:SHOWN_EXAMPLES])
    allowed = (result.get("details") or {}).get("max_share", kwargs.get("max_share"))
    detail = (
        f"{count} of {rows} rows ({count / max(rows, 1):.1%}) repeat an earlier row exactly"
        f"{f', e.g. {shown}' if shown else ''}; at most {float(allowed):.1%} allowed (validation.max_duplicate_share)"
    )
    return count, tuple((row, first) for row, first in pairs), detail


TABLE_FAILURES: dict[str, Callable[[dict, dict, pd.DataFrame], tuple]] = {
    "expect_table_columns_to_match_ordered_list": columns_failure,
    "expect_table_columns_to_match_set": column_set_failure,
    "expect_table_row_count_to_be_between": row_count_failure,
    "expect_table_duplicate_row_share_to_be_at_most": duplicates_failure,
}


def single_class_failure(
    kind: str, severity: str, column: str, kwargs: dict, frame: pd.DataFrame
) -> ExpectationFailure:
    """Too few distinct labels: name them, since 'observed 1' alone does not say which class is left."""
    values = first_column(frame, column).dropna().unique()[:5] if column in frame.columns else []
    shown = ", ".join(show_value(v) for v in values)
    detail = (
        f"column '{column}' holds {_count(len(values), 'distinct value')} ({shown}); at least"
        f" {kwargs.get('min_value')} classes are needed to train a classifier"
    )
    return ExpectationFailure(kind, severity, column, len(values), tuple((None, _plain(v)) for v in values), detail)


def shares_failure(kind: str, severity: str, column: str, result: dict) -> ExpectationFailure:
    """Each value whose share of the rows is outside its bounds, with the share found."""
    outside = (result.get("details") or {}).get("outside") or []
    parts = [f"{o['value']} holds {o['share']:.1%} (expected {o['min']:.0%}..{o['max']:.0%})" for o in outside]
    detail = f"column '{column}': {'; '.join(parts[:5]) or 'column missing or empty'}"
    return ExpectationFailure(kind, severity, column, len(outside), tuple((None, o["value"]) for o in outside), detail)


def rare_labels_failure(kind: str, severity: str, column: str, kwargs: dict, result: dict) -> ExpectationFailure:
    """Name each label with too few rows and its count: the split would refuse them later, less clearly."""
    below = (result.get("details") or {}).get("below") or []
    parts = ", ".join(f"{b['value']} ({_count(b['count'], 'row')})" for b in below[:5])
    more = f" and {len(below) - 5} more" if len(below) > 5 else ""
    detail = (
        f"column '{column}': {_count(len(below), 'label')} with under {kwargs['min_count']} rows:"
        f" {parts or 'column missing or empty'}{more}; a stratified split needs each label in train, validation"
        " and test: add rows, merge the label into another, or drop its rows"
    )
    return ExpectationFailure(kind, severity, column, len(below), tuple((None, b["value"]) for b in below), detail)


def values_failure(kind: str, severity: str, column: str | None, kwargs: dict, result: dict) -> ExpectationFailure:
    """A column check that counted unexpected values: say how many, which values, in which rows."""
    count = result.get("unexpected_count")
    values = result.get("partial_unexpected_list") or []
    rows = result.get("partial_unexpected_index_list") or [None] * len(values)
    examples = tuple((_plain(row), _plain(value)) for row, value in zip(rows, values, strict=False))
    problem = CHECKS.get(kind, (kind, lambda kw: f"unexpected (observed {_short(result.get('observed_value'))})"))[1](
        kwargs
    )
    shown = _example_text(examples, with_values="not_be_null" not in kind)
    detail = f"column '{column}': {_count(count, 'value')} {problem}{shown}"
    return ExpectationFailure(kind, severity, column, count, examples, detail)


def _example_text(examples: tuple, with_values: bool = True) -> str:
    """', e.g. 17, -1 (rows 4, 90)' from (row, value) pairs."""
    values = list(dict.fromkeys(show_value(value) for _, value in examples))[:SHOWN_EXAMPLES]
    rows = [str(row) for row, _ in examples if row is not None][:SHOWN_EXAMPLES]
    text = f", e.g. {', '.join(values)}" if values and with_values else ""
    return text + (f" (row{'s' if len(rows) > 1 else ''} {', '.join(rows)})" if rows else "")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so it prints as 17, not np.int64(17)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def show_value(value: Any) -> str:
    """Strings quoted, so a stray '17' reads differently from 17; 'inf' and 'nan' as the numbers they stand for."""
    if value in ("inf", "-inf", "nan"):
        return value
    return repr(value) if isinstance(value, str) else str(_plain(value))


def _short(value: Any, limit: int = 120) -> str:
    """A result's observed value in one short line: 0.143, not 0.1430615164520744."""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bound(value: float | None) -> str:
    """A range bound as written in the suite: GX stores 16 as 16.0."""
    if value is None:
        return ""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _count(count: int | None, noun: str) -> str:
    """'1 value', '12 values', or 'some values' when GX gave no count."""
    if count is None:
        return f"some {noun}s"
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _names(names: list) -> str:
    """Up to five quoted column names, then how many more."""
    shown = ", ".join(f"'{name}'" for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
