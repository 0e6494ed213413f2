"""validate_dataset on tiny frames: what a user sees when a file is wrong, and which problems stop a run.

The digits cases check the bundled spec's suite (an image grid); the table cases each feature type's checks.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import DriftConfig, ValidationConfig
from tasks.core.errors import ConfigRejected, DataRejected
from tasks.core.spec import DIGITS_COLUMNS, DatasetSpec, FeatureSpec, TargetSpec, digits_spec
from tasks.data.drift import DriftReference, measure_drift, score_drift
from tasks.data.report import DataCheckReport, require_valid_dataset, write_data_report
from tasks.data.suite import suite_for_spec
from tasks.data.validation import ExpectationFailure, ValidationReport, load_suite, validate_dataset

SOURCE = "data/incoming/digits.csv"
DIGITS = digits_spec().dataset
TARGET_COLUMN = DIGITS.target.name


@pytest.fixture
def frame() -> pd.DataFrame:
    """120 valid rows: random pixels in 0..16, every label 0..9 twelve times."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 17, size=(120, len(DIGITS_COLUMNS)))
    valid = pd.DataFrame(pixels, columns=DIGITS_COLUMNS)
    valid[TARGET_COLUMN] = np.arange(120) % 10
    return valid


def validate(frame: pd.DataFrame, tmp_path: Path, spec: DatasetSpec = DIGITS, **config) -> ValidationReport:
    return validate_dataset.fn(
        frame=frame, source=SOURCE, report_dir=tmp_path / "validation", config=ValidationConfig(**config), spec=spec
    )


def failure_of(report: ValidationReport, expectation: str, column: str | None) -> ExpectationFailure:
    """The one failure of this expectation on this column; the test fails if there is none."""
    found = [f for f in report.failures if f.expectation == expectation and f.column == column]
    assert len(found) == 1, [f.detail for f in report.failures]
    return found[0]


def checked(
    report: ValidationReport, tmp_path: Path, frame: pd.DataFrame | None = None, spec: DatasetSpec = DIGITS
) -> DataCheckReport:
    """The report as the flow builds it with no production version yet, HTML page included."""
    reference = DriftReference(None, None, "no production version yet")
    if frame is None:  # a rejected file: drift is never measured on it
        drift = score_drift(None, spec, reference, DriftConfig())
    else:
        drift = measure_drift.fn(frame, "0" * 64, report, reference, DriftConfig(), tmp_path / "validation", spec)
    return write_data_report.fn(validation=report, drift=drift, out_dir=tmp_path / "validation")


def rejection(report: ValidationReport, tmp_path: Path) -> str:
    """The message require_valid_dataset raises with, which is what the CLI prints."""
    assert report.passed is False
    checks = checked(report, tmp_path)
    with pytest.raises(DataRejected) as raised:
        require_valid_dataset.fn(checks=checks)
    assert raised.value.exit_code == 2
    message = str(raised.value)
    assert SOURCE in message and str(checks.html) in message
    return message


def test_valid_frame_passes_and_writes_the_result_json(frame, tmp_path):
    report = validate(frame, tmp_path)

    assert report.passed, [f.detail for f in report.failures]
    assert report.of_severity("critical") == report.of_severity("warning") == ()
    assert report.evaluated_expectations == len(suite_for_spec(DIGITS)["expectations"]) == 11
    assert json.loads(report.result_json.read_text())["statistics"]["evaluated_expectations"] == 11
    assert load_suite(report.suite).name == "digits"  # the generated suite is written beside the result
    require_valid_dataset.fn(checks=checked(report, tmp_path, frame))


def test_under_1000_rows_is_info_only(frame, tmp_path):
    report = validate(frame, tmp_path)

    info = failure_of(report, "expect_table_row_count_to_be_between", None)
    assert info.severity == "info" and info.detail == "120 rows; at least 1000 expected"
    assert report.passed


def test_the_offline_report_page_has_no_network_reference(frame, tmp_path):
    frame.loc[4, "pixel_3_4"] = 17
    checks = checked(validate(frame, tmp_path), tmp_path)
    page = checks.html.read_text()

    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert "pixel_3_4" in page and "REJECTED" in page and "expect_columns_values_to_be_between" in page


def test_missing_column_is_named_not_a_key_error(frame, tmp_path):
    report = validate(frame.drop(columns=["pixel_3_4"]), tmp_path)

    columns = failure_of(report, "expect_table_columns_to_match_set", None)
    assert "missing 'pixel_3_4', which the spec names" in columns.detail
    assert report.failures[0] == columns  # the cause is listed before the checks it prevented
    skipped = failure_of(report, "expect_columns_values_to_be_between", None)
    assert "1 column missing ('pixel_3_4'), so the range check did not run" in skipped.detail
    assert "missing 'pixel_3_4'" in rejection(report, tmp_path)


def test_extra_columns_are_not_an_error(frame, tmp_path):
    frame["brightness"] = 1
    assert validate(frame, tmp_path).passed


def test_string_in_a_csv_pixel_column_is_shown_with_its_row(frame, tmp_path):
    frame["pixel_3_4"] = frame["pixel_3_4"].astype(object)
    frame.loc[[5, 17], "pixel_3_4"] = "dark"
    frame.to_csv(tmp_path / "digits.csv", index=False)
    report = validate(pd.read_csv(tmp_path / "digits.csv"), tmp_path)  # as the loader reads it: a str column

    typed = failure_of(report, "expect_columns_values_to_be_whole_numbers", "pixel_3_4")
    assert typed.unexpected_count == 2 and typed.examples == ((5, "dark"), (17, "dark"))
    assert "column 'pixel_3_4': 2 non-numeric values, e.g. 'dark' (rows 5, 17)" in rejection(report, tmp_path)


def test_nan_is_counted_with_its_rows(frame, tmp_path):
    frame["pixel_0_7"] = frame["pixel_0_7"].astype(float)
    frame.loc[[5, 7], "pixel_0_7"] = np.nan
    report = validate(frame, tmp_path)

    nulls = failure_of(report, "expect_columns_values_to_not_be_null", "pixel_0_7")
    assert nulls.unexpected_count == 2 and [row for row, _ in nulls.examples] == [5, 7]
    assert len(report.of_severity("critical")) == 1  # whole floats like 3.0 are fine, only the NaNs are not
    assert "column 'pixel_0_7': 2 values missing (null/NaN) (rows 5, 7)" in rejection(report, tmp_path)


def test_none_in_a_text_column_is_a_null(frame, tmp_path):
    frame["pixel_2_2"] = frame["pixel_2_2"].astype(object)
    frame.loc[3, "pixel_2_2"] = None
    report = validate(frame, tmp_path)

    assert failure_of(report, "expect_columns_values_to_not_be_null", "pixel_2_2").examples == ((3, None),)


def test_infinity_is_named(frame, tmp_path):
    frame["pixel_6_1"] = frame["pixel_6_1"].astype(float)
    frame.loc[[8, 9], "pixel_6_1"] = [np.inf, -np.inf]
    report = validate(frame, tmp_path)

    infinite = failure_of(report, "expect_columns_values_to_be_whole_numbers", "pixel_6_1")
    assert infinite.examples == ((8, "inf"), (9, "-inf"))
    assert len(report.of_severity("critical")) == 1  # said once, not again as "outside 0..16"
    assert "column 'pixel_6_1': 2 infinite values, e.g. inf, -inf (rows 8, 9)" in rejection(report, tmp_path)


def test_pixel_of_17_is_out_of_range(frame, tmp_path):
    frame.loc[[4, 90], "pixel_3_4"] = 17
    report = validate(frame, tmp_path)

    above = failure_of(report, "expect_columns_values_to_be_between", "pixel_3_4")
    assert above.unexpected_count == 2 and above.examples == ((4, 17), (90, 17))
    assert len(report.of_severity("critical")) == 1
    assert "column 'pixel_3_4': 2 values outside 0..16, e.g. 17 (rows 4, 90)" in rejection(report, tmp_path)


def test_negative_pixel_is_out_of_range(frame, tmp_path):
    frame.loc[11, "pixel_7_7"] = -1
    report = validate(frame, tmp_path)

    below = failure_of(report, "expect_columns_values_to_be_between", "pixel_7_7")
    assert below.examples == ((11, -1),)
    assert "column 'pixel_7_7': 1 value outside 0..16, e.g. -1 (row 11)" in rejection(report, tmp_path)


def test_label_10_is_not_a_digit(frame, tmp_path):
    frame.loc[9, TARGET_COLUMN] = 10
    report = validate(frame, tmp_path)

    label = failure_of(report, "expect_columns_values_to_be_in_sets", TARGET_COLUMN)
    assert label.unexpected_count == 1 and label.examples == ((9, 10),)
    assert "column 'target': 1 value not in 0..9, e.g. 10 (row 9)" in rejection(report, tmp_path)


def test_non_integer_labels_are_named(frame, tmp_path):
    frame[TARGET_COLUMN] = frame[TARGET_COLUMN].astype(float)
    frame.loc[[9, 30], TARGET_COLUMN] = [3.5, 7.25]
    report = validate(frame, tmp_path)

    fractional = failure_of(report, "expect_columns_values_to_be_in_sets", TARGET_COLUMN)
    assert fractional.unexpected_count == 2 and fractional.examples == ((9, 3.5), (30, 7.25))
    assert "column 'target': 2 values not in 0..9, e.g. 3.5, 7.25 (rows 9, 30)" in rejection(report, tmp_path)


def test_whole_float_labels_are_fine(frame, tmp_path):
    frame[TARGET_COLUMN] = frame[TARGET_COLUMN].astype(float)  # what a CSV with "3.0" gives
    assert validate(frame, tmp_path).passed


def test_a_single_class_is_refused(frame, tmp_path):
    frame[TARGET_COLUMN] = 7
    report = validate(frame, tmp_path)

    single = failure_of(report, "expect_column_unique_value_count_to_be_between", TARGET_COLUMN)
    assert single.severity == "critical"
    assert "column 'target' holds 1 distinct value (7); at least 2 classes are needed" in rejection(report, tmp_path)


def test_too_few_rows(frame, tmp_path):
    report = validate(frame.head(50), tmp_path)

    rows = [f for f in report.of_severity("critical") if f.expectation == "expect_table_row_count_to_be_between"]
    assert [f.detail for f in rows] == ["50 rows; at least 100 expected"]
    assert "50 rows; at least 100 expected" in rejection(report, tmp_path)


def test_a_large_share_of_duplicated_rows_is_refused(frame, tmp_path):
    doubled = pd.concat([frame, frame.head(30)], ignore_index=True)
    report = validate(doubled, tmp_path)

    duplicates = failure_of(report, "expect_table_duplicate_row_share_to_be_at_most", None)
    assert duplicates.unexpected_count == 30 and duplicates.examples[0] == (120, 0)
    assert "30 of 150 rows (20.0%) repeat an earlier row exactly, e.g. row 120 = row 0" in rejection(report, tmp_path)
    assert "at most 10.0% allowed (validation.max_duplicate_share)" in duplicates.detail


def test_the_duplicate_threshold_comes_from_the_run_configuration(frame, tmp_path):
    doubled = pd.concat([frame, frame.head(30)], ignore_index=True)
    assert validate(doubled, tmp_path, max_duplicate_share=0.25).passed
    assert validate(pd.concat([frame, frame.head(5)], ignore_index=True), tmp_path).passed  # 4% < 10%


def test_warnings_are_reported_and_never_stop_a_run(frame, tmp_path, capsys):
    frame.loc[frame[TARGET_COLUMN] == 3, TARGET_COLUMN] = 4  # no 3 at all, and twice as many 4s
    report = validate(frame, tmp_path)

    assert report.passed
    warnings = report.of_severity("warning")
    assert {f.expectation for f in warnings} == {
        "expect_column_distinct_values_to_contain_set",
        "expect_column_value_shares_to_be_between",
    }
    assert "column 'target' has no rows for {3}" in warnings[0].detail + warnings[1].detail
    require_valid_dataset.fn(checks=checked(report, tmp_path, frame))  # does not raise
    printed = capsys.readouterr().out
    assert "passed with warnings" in printed and "3 holds 0.0% (expected 5%..20%)" in printed
    assert "drift: not measured: no production version yet" in printed


def test_severity_comes_from_the_suite_file(frame, tmp_path):
    suite = suite_for_spec(DIGITS)
    for expectation in suite["expectations"]:
        if expectation["type"] == "expect_columns_values_to_be_between":
            expectation["severity"] = "warning"
    (tmp_path / "lenient.json").write_text(json.dumps(suite))
    frame.loc[4, "pixel_3_4"] = 17
    report = validate(frame, tmp_path, suite_path=str(tmp_path / "lenient.json"))

    assert (
        report.passed and failure_of(report, "expect_columns_values_to_be_between", "pixel_3_4").severity == "warning"
    )


def test_every_problem_of_a_wrong_file_is_kept_but_the_message_stays_short(frame, tmp_path):
    wrong = frame.astype(float) + 0.5
    report = validate(wrong, tmp_path)
    message = rejection(report, tmp_path)

    assert len(report.of_severity("critical")) > 60
    assert "... and" in message and "more, listed in the full report" in message


def test_suite_with_a_mistyped_expectation_is_refused_not_silently_shortened(tmp_path):
    suite = suite_for_spec(DIGITS)
    suite["expectations"][1]["type"] = "expect_table_row_count_to_be_betwen"
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(suite))

    with pytest.raises(ConfigRejected, match="1 expectation"):
        load_suite(path)


def test_missing_suite_file_is_a_config_error(tmp_path, frame):
    with pytest.raises(ConfigRejected, match="could not be read"):
        validate(frame, tmp_path, suite_path=str(tmp_path / "nope.json"))


# A table of every feature type: what each type's checks say about a bad value, naming column, row and value.
TABLE = DatasetSpec(
    name="customers",
    target=TargetSpec(name="churn", task="classification", labels=["no", "yes"]),
    features=[
        FeatureSpec(name="customer_id", type="id"),
        FeatureSpec(name="notes", type="ignore"),
        FeatureSpec(name="amount", type="numeric", min=0.0, max=100.0),
        FeatureSpec(name="score", type="numeric", nullable=True, min=-1.0, max=1.0),
        FeatureSpec(name="plan", type="categorical", values=["basic", "plus", "pro"]),
        FeatureSpec(name="active", type="binary", nullable=True, values=[False, True]),
    ],
)


@pytest.fixture
def table() -> pd.DataFrame:
    """200 rows a file for TABLE holds: all checks pass on it."""
    rng = np.random.default_rng(3)
    rows = 200
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "notes": ["called twice"] * rows,
            "amount": rng.uniform(0, 100, rows).round(2),
            "score": np.where(np.arange(rows) % 10 == 0, np.nan, rng.uniform(-1, 1, rows)),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "active": rng.choice([True, False], rows),
            "churn": np.where(np.arange(rows) % 3 == 0, "yes", "no"),
        }
    )


def table_problems(frame: pd.DataFrame, tmp_path: Path, spec: DatasetSpec = TABLE) -> dict[str, list[str]]:
    """severity -> the failure details of validating frame against spec."""
    report = validate(frame, tmp_path, spec=spec)
    return {severity: [f.detail for f in report.of_severity(severity)] for severity in ("critical", "warning")}


def test_a_good_table_passes_every_type_check(table, tmp_path):
    report = validate(table, tmp_path, spec=TABLE)
    assert report.passed and report.of_severity("warning") == (), [f.detail for f in report.failures]


def test_id_and_ignored_columns_need_not_be_in_the_file(table, tmp_path):
    assert table_problems(table.drop(columns=["customer_id", "notes"]), tmp_path)["critical"] == []


def test_a_missing_model_column_is_critical_and_named(table, tmp_path):
    critical = table_problems(table.drop(columns=["plan"]), tmp_path)["critical"]
    assert critical[0].startswith("missing 'plan', which the spec names")


def test_text_in_a_numeric_column_is_critical(table, tmp_path):
    table["amount"] = table["amount"].astype(object)
    table.loc[7, "amount"] = "n/a?"
    assert "column 'amount': 1 non-numeric value, e.g. 'n/a?' (row 7)" in table_problems(table, tmp_path)["critical"]


def test_a_missing_value_in_a_non_nullable_numeric_column_is_critical(table, tmp_path):
    table.loc[[4, 9], "amount"] = np.nan
    assert table_problems(table, tmp_path)["critical"] == ["column 'amount': 2 values missing (null/NaN) (rows 4, 9)"]


def test_a_nullable_column_warns_only_when_most_of_it_is_missing(table, tmp_path):
    assert table_problems(table, tmp_path) == {"critical": [], "warning": []}  # 10% missing is data
    table.loc[:120, "score"] = np.nan
    (warning,) = table_problems(table, tmp_path)["warning"]
    assert warning.startswith(f"column 'score': {table['score'].isna().sum()} values missing (null/NaN)")


def test_a_value_far_outside_the_training_range_is_a_warning_naming_the_allowed_range(table, tmp_path):
    table.loc[11, "amount"] = 1000.0  # seen 0..100: allowed -50..150
    table.loc[12, "amount"] = 140.0  # outside what was seen, inside the margin: fine
    problems = table_problems(table, tmp_path)

    assert problems["critical"] == []
    assert problems["warning"] == [
        "column 'amount': 1 value outside the allowed -50..150 (seen when the spec was made: 0..100),"
        " e.g. 1000.0 (row 11)"
    ]


def test_new_categories_are_answered_but_warned_about_past_five_percent(table, tmp_path):
    table.loc[[3], "plan"] = "enterprise"  # 0.5% of the rows: the model's unseen bucket answers it
    assert table_problems(table, tmp_path) == {"critical": [], "warning": []}
    table.loc[[3, 5, 8, 13, 21, 34, 55, 89, 144, 199, 150], "plan"] = "enterprise"  # 5.5%
    (warning,) = table_problems(table, tmp_path)["warning"]
    assert warning.startswith("column 'plan': 11 values not in {'basic', 'plus', 'pro'} (up to 5% allowed")
    assert "e.g. 'enterprise' (rows 3, 5, 8)" in warning


def test_a_binary_column_compares_values_as_the_model_reads_them(table, tmp_path):
    table["active"] = table["active"].map({True: "true", False: "false"})  # text from a CSV: same values
    assert table_problems(table, tmp_path) == {"critical": [], "warning": []}


def test_a_label_outside_the_spec_is_critical(table, tmp_path):
    table.loc[[2, 6], "churn"] = "maybe"
    assert (
        "column 'churn': 2 values not in {'no', 'yes'}, e.g. 'maybe' (rows 2, 6)"
        in (table_problems(table, tmp_path)["critical"])
    )


def test_a_missing_target_is_critical(table, tmp_path):
    table.loc[5, "churn"] = None
    assert "column 'churn': 1 value missing (null/NaN) (row 5)" in table_problems(table, tmp_path)["critical"]


def test_rows_repeating_on_the_model_columns_are_duplicates_even_with_distinct_ids(table, tmp_path):
    repeated = pd.concat([table, table.head(40).assign(customer_id=range(1000, 1040))], ignore_index=True)
    (critical,) = table_problems(repeated, tmp_path)["critical"]
    assert critical.startswith("40 of 240 rows (16.7%) repeat an earlier row exactly, e.g. row 200 = row 0")


def test_a_regression_target_must_be_numbers(table, tmp_path):
    spec = TABLE.model_copy(update={"target": TargetSpec(name="spend", task="regression")})
    table["spend"] = table["amount"] * 3
    table = table.astype({"spend": object})
    table.loc[9, "spend"] = "lots"
    problems = table_problems(table, tmp_path, spec=spec)
    assert problems["critical"] == ["column 'spend': 1 non-numeric value, e.g. 'lots' (row 9)"]
