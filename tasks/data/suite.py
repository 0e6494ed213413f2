"""The expectation suite of a spec: what a file must hold before anything is trained on it, per feature type.

Critical when a breach means the file cannot be trained on or is not this dataset, warning when a person should
look, info for facts worth knowing (docs/data-checks.md). Each type's own expectations live in tasks.core.features.
"""

import json
from typing import Any

from tasks.core.features import FEATURE_TYPES
from tasks.core.features.contract import expectation
from tasks.core.spec import DatasetSpec

# The spec records that a column may miss values, not how many did: past half the rows, the imputed value
# rather than the data drives the feature.
MAX_NULL_SHARE = 0.5
# A class needs 5 rows for the stratified split (one each in train, validation and test, tasks.data.split);
# twice that is the least worth training on. The bundled digits: 10 labels -> 100 rows.
ROWS_PER_LABEL = 10
# A label the file holds at all needs 5 rows, or the stratified split cannot put it in train, validation and
# test: tasks.data.split.MIN_ROWS_PER_CLASS, repeated rather than imported (split loads scikit-learn, ~1.4 s).
SPLIT_ROWS_PER_LABEL = 5
# Regression: under 50 rows the 20% test split holds under 10 rows and R^2 moves by ~0.1 per row.
MIN_REGRESSION_ROWS = 50
# Under 1000 rows the 20% test split holds under 200 rows, so accuracy moves 0.5 points per row.
INFO_ROWS = 1000
# Each label's share may halve or double from an even split before the warning fires (digits: 5%..20%).
SHARE_SLACK = 2.0
SUITE_NOTES = (
    "Generated from the spec by tasks.data.suite. severity: critical failures reject the file (exit code 2,"
    " nothing trained); warning and info failures are reported (console, Prefect artifact, MLflow run) and"
    " the run goes on. To change a check, edit the spec (types, nullable, min/max, values, labels), or save"
    " this suite, edit it and set validation.suite_path."
)


def table_expectations(spec: DatasetSpec) -> list[dict]:
    """Presence of every column the model reads (extras are fine), row counts, and exact repeats."""
    columns = [*spec.input_columns, spec.target.name]
    labels = len(spec.target.labels or [])
    minimum = ROWS_PER_LABEL * labels if spec.task == "classification" else MIN_REGRESSION_ROWS
    least = (
        f"{ROWS_PER_LABEL} rows per label ({labels} labels): 5 put each label in train, validation and test"
        if spec.task == "classification"
        else "under 50 rows the test split holds under 10 and R^2 moves by ~0.1 per row"
    )
    return [
        expectation(
            "expect_table_columns_to_match_set",
            {"column_set": columns, "exact_match": False},
            "critical",
            "The model reads these columns by name and learns from the target; other columns are ignored.",
        ),
        expectation(
            "expect_table_row_count_to_be_between",
            {"min_value": minimum, "max_value": None},
            "critical",
            f"Fewer rows means a truncated or wrong file: {least}.",
        ),
        expectation(
            "expect_table_row_count_to_be_between",
            {"min_value": INFO_ROWS, "max_value": None},
            "info",
            f"Under {INFO_ROWS} rows the 20% test split holds under 200 rows, so the gate's metric moves by 0.5"
            " points per row: worth knowing, not worth stopping for.",
        ),
        expectation(
            "expect_table_duplicate_row_share_to_be_at_most",
            {
                "max_share": {"$PARAMETER": "max_duplicate_share"},
                "column_list": columns,
                "key_columns": [column for f in spec.of_type("id") for column in f.source_columns],
            },
            "critical",
            "Exact repeats (on the columns the model reads) mean a copy-paste or a join gone wrong, and they leak"
            " between the train and test splits, inflating the metric the gate trusts. Where none of those columns"
            " is nearly unique (a few categories and small numbers repeat by nature), the id and name columns are"
            " compared too: two passengers of the same class, sex and age with different names are two records."
            " The share comes from the run configuration (validation.max_duplicate_share).",
        ),
    ]


def null_expectations(spec: DatasetSpec) -> list[dict]:
    """Not-null (critical) for every column that may not miss values; a missing-share warning for the others."""
    features = spec.model_features
    required = [c for f in features if not f.nullable for c in f.source_columns] + [spec.target.name]
    nullable = [c for f in features if f.nullable for c in f.source_columns]
    found = [
        expectation(
            "expect_columns_values_to_not_be_null",
            {"column_list": required},
            "critical",
            "The spec says these columns are never missing (nullable: false), and a row without its target"
            " teaches nothing; set nullable: true in the spec for a feature that may miss values.",
        )
    ]
    if nullable:
        found.append(
            expectation(
                "expect_columns_values_to_not_be_null",
                {"column_list": nullable, "mostly": 1.0 - MAX_NULL_SHARE},
                "warning",
                f"These may miss values (nullable: true) and the model imputes them; past {MAX_NULL_SHARE:.0%}"
                " missing, the imputed value rather than the data drives the feature.",
            )
        )
    return found


def feature_expectations(spec: DatasetSpec) -> list[dict]:
    """Each feature type's expectations for the spec's features of that type, in the registry's order; types that
    share one expectations function (binary inherits categorical's) are checked together, by one expectation."""
    checks = dict.fromkeys(kind.expectations.__func__ for kind in FEATURE_TYPES.values())
    found = []
    for check in checks:
        features = [f for f in spec.model_features if type(f).expectations.__func__ is check]
        if features:
            found += type(features[0]).expectations(features)
    return found


def target_expectations(spec: DatasetSpec) -> list[dict]:
    """Classification: the label set and two classes (critical), every label present and balanced (warning).
    Regression: numbers (critical)."""
    target = spec.target
    if spec.task == "regression":
        why = "A regression target must be a finite number in every row."
        return [expectation("expect_columns_values_to_be_numbers", {"column_list": [target.name]}, "critical", why)]
    labels = list(target.labels or [])
    even = 1.0 / len(labels)
    shares = {
        text: [round(even / SHARE_SLACK, 4), round(min(1.0, even * SHARE_SLACK), 4)] for text in spec.label_texts()
    }
    return [
        expectation(
            "expect_columns_values_to_be_in_sets",
            {"value_sets": {target.name: labels}, "max_unseen_share": 0.0},
            "critical",
            f"The model has one output per label of the spec ({len(labels)}); any other label has no output to"
            " train. Add it to target.labels in the spec if it is real.",
        ),
        expectation(
            "expect_column_unique_value_count_to_be_between",
            {"column": target.name, "min_value": 2, "max_value": None},
            "critical",
            "A single class teaches the model nothing: it would score 100% on its own test rows and be useless.",
        ),
        expectation(
            "expect_column_value_counts_to_be_at_least",
            {"column": target.name, "value_set": labels, "min_count": SPLIT_ROWS_PER_LABEL},
            "critical",
            f"A label the file holds needs {SPLIT_ROWS_PER_LABEL} rows, or the stratified split cannot put it in"
            " train, validation and test. Add rows, merge the label into another, or drop its rows (and remove it"
            " from target.labels).",
        ),
        expectation(
            "expect_column_distinct_values_to_contain_set",
            {"column": target.name, "value_set": labels},
            "warning",
            "A label with no rows is one the model will never predict; the run goes on, but the gate's metric"
            " says nothing about that label.",
        ),
        expectation(
            "expect_column_value_shares_to_be_between",
            {"column": target.name, "shares": shares},
            "warning",
            f"An even split halved and doubled ({even / SHARE_SLACK:.1%}..{min(1.0, even * SHARE_SLACK):.0%} per"
            " label): outside it the model leans towards the common labels. Training goes on; look at the"
            " per-class recall in the gate report.",
        ),
    ]


def suite_for_spec(spec: DatasetSpec) -> dict[str, Any]:
    """The GX suite (a JSON-ready dict) that a file for this spec must pass, per feature type."""
    found = [
        *table_expectations(spec),
        *null_expectations(spec),
        *feature_expectations(spec),
        *target_expectations(spec),
    ]
    return {
        "name": spec.name,
        "notes": SUITE_NOTES,
        "meta": {"generated_from": "spec", "dataset": spec.name, "target": spec.target.name, "task": spec.task},
        "expectations": found,
    }


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


def set_text(values: list) -> str:
    """'0..9' for a run of integers, else '{a, b}' (text quoted, so '17' reads differently from 17)."""
    ints = sorted(v for v in values if isinstance(v, int) and not isinstance(v, bool))
    if len(ints) == len(values) > 1 and ints == list(range(ints[0], ints[-1] + 1)):
        return f"{ints[0]}..{ints[-1]}"
    shown = [repr(v) if isinstance(v, str) else str(v) for v in values[:12]]
    return "{" + ", ".join(shown) + (f", ... {len(values) - 12} more" if len(values) > 12 else "") + "}"
