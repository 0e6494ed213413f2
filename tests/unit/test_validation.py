"""validate_dataset / require_valid_dataset on tiny frames: what a user sees when a file is wrong."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.errors import DataRejected
from tasks.schema import FEATURE_COLUMNS, TARGET_COLUMN
from tasks.validation import (
    DEFAULT_SUITE,
    ExpectationFailure,
    ValidationReport,
    load_suite,
    require_valid_dataset,
    validate_dataset,
)

SOURCE = "data/incoming/digits.csv"


@pytest.fixture
def frame() -> pd.DataFrame:
    """120 valid rows: random pixels in 0..16, every label 0..9 twelve times."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 17, size=(120, len(FEATURE_COLUMNS)))
    valid = pd.DataFrame(pixels, columns=list(FEATURE_COLUMNS))
    valid[TARGET_COLUMN] = np.arange(120) % 10
    return valid


def validate(frame: pd.DataFrame, tmp_path: Path) -> ValidationReport:
    return validate_dataset.fn(frame=frame, source=SOURCE, report_dir=tmp_path / "validation")


def failure_of(report: ValidationReport, expectation: str, column: str | None) -> ExpectationFailure:
    """The one failure of this expectation on this column; the test fails if there is none."""
    found = [f for f in report.failures if f.expectation == expectation and f.column == column]
    assert len(found) == 1, report.describe(SOURCE)
    return found[0]


def rejection(report: ValidationReport) -> str:
    """The message require_valid_dataset raises with, which is what the CLI prints."""
    assert report.success is False
    with pytest.raises(DataRejected) as raised:
        require_valid_dataset.fn(report=report, source=SOURCE)
    assert raised.value.exit_code == 2
    return str(raised.value)


def test_valid_frame_passes_and_writes_result_json_and_data_docs(frame, tmp_path):
    report = validate(frame, tmp_path)

    assert report.success, report.describe(SOURCE)
    assert report.failures == ()
    assert report.evaluated_expectations == len(load_suite(DEFAULT_SUITE).expectations)
    assert json.loads(report.result_json.read_text())["success"] is True
    assert report.data_docs_html.suffix == ".html" and report.data_docs_html.is_file()
    assert (tmp_path / "validation") in report.data_docs_html.parents
    require_valid_dataset.fn(report=report, source=SOURCE)


def test_failed_validation_still_writes_both_reports_and_names_them(frame, tmp_path):
    frame.loc[4, "pixel_3_4"] = 17
    report = validate(frame, tmp_path)

    assert json.loads(report.result_json.read_text())["success"] is False
    assert report.data_docs_html.is_file()
    message = rejection(report)
    assert SOURCE in message and str(report.result_json) in message and str(report.data_docs_html) in message


def test_missing_column_is_named_not_a_key_error(frame, tmp_path):
    report = validate(frame.drop(columns=["pixel_3_4"]), tmp_path)

    columns = failure_of(report, "expect_table_columns_to_match_ordered_list", None)
    assert "missing 'pixel_3_4'" in columns.detail
    assert report.failures[0] == columns  # the cause is listed before the checks it prevented
    skipped = failure_of(report, "expect_column_values_to_be_between", "pixel_3_4")
    assert "pixel_3_4' is missing" in skipped.detail
    assert "missing 'pixel_3_4'" in rejection(report)


def test_extra_column_is_named(frame, tmp_path):
    frame["brightness"] = 1
    report = validate(frame, tmp_path)

    assert failure_of(report, "expect_table_columns_to_match_ordered_list", None).examples == ((None, "brightness"),)
    assert len(report.failures) == 1
    assert "unexpected 'brightness'" in rejection(report)


def test_string_in_a_csv_pixel_column_is_shown_with_its_row(frame, tmp_path):
    frame["pixel_3_4"] = frame["pixel_3_4"].astype(object)
    frame.loc[5, "pixel_3_4"] = "x"
    frame.to_csv(tmp_path / "digits.csv", index=False)
    report = validate(pd.read_csv(tmp_path / "digits.csv"), tmp_path)  # as the loader reads it: a str column

    typed = failure_of(report, "expect_column_values_to_be_in_type_list", "pixel_3_4")
    assert typed.unexpected_count == 1 and typed.examples == ((5, "x"),)
    assert "'x' (row 5)" in typed.detail
    assert "pixel_3_4" in rejection(report)


def test_string_in_an_object_pixel_column_lists_only_the_string(frame, tmp_path):
    frame["pixel_3_4"] = frame["pixel_3_4"].astype(object)
    frame.loc[5, "pixel_3_4"] = "x"
    report = validate(frame, tmp_path)

    typed = failure_of(report, "expect_column_values_to_be_in_type_list", "pixel_3_4")
    assert typed.unexpected_count == 1 and typed.examples == ((5, "x"),)
    assert "'x' (row 5)" in rejection(report)


def test_nan_is_counted_with_its_rows(frame, tmp_path):
    frame["pixel_0_7"] = frame["pixel_0_7"].astype(float)
    frame.loc[[5, 7], "pixel_0_7"] = np.nan
    report = validate(frame, tmp_path)

    nulls = failure_of(report, "expect_column_values_to_not_be_null", "pixel_0_7")
    assert nulls.unexpected_count == 2 and [row for row, _ in nulls.examples] == [5, 7]
    assert "dtype float64" in failure_of(report, "expect_column_values_to_be_in_type_list", "pixel_0_7").detail
    assert "column 'pixel_0_7': 2 values missing (null/NaN) (rows 5, 7)" in rejection(report)


def test_pixel_of_17_is_out_of_range(frame, tmp_path):
    frame.loc[[4, 90], "pixel_3_4"] = 17
    report = validate(frame, tmp_path)

    above = failure_of(report, "expect_column_values_to_be_between", "pixel_3_4")
    assert above.unexpected_count == 2 and above.examples == ((4, 17), (90, 17))
    assert len(report.failures) == 1
    assert "column 'pixel_3_4': 2 values outside 0..16, e.g. 17 (rows 4, 90)" in rejection(report)


def test_negative_pixel_is_out_of_range(frame, tmp_path):
    frame.loc[11, "pixel_7_7"] = -1
    report = validate(frame, tmp_path)

    below = failure_of(report, "expect_column_values_to_be_between", "pixel_7_7")
    assert below.unexpected_count == 1 and below.examples == ((11, -1),)
    assert "column 'pixel_7_7': 1 value outside 0..16, e.g. -1 (row 11)" in rejection(report)


def test_label_10_is_not_a_digit(frame, tmp_path):
    frame.loc[9, TARGET_COLUMN] = 10
    report = validate(frame, tmp_path)

    label = failure_of(report, "expect_column_values_to_be_in_set", TARGET_COLUMN)
    assert label.unexpected_count == 1 and label.examples == ((9, 10),)
    assert "column 'target': 1 value not in 0..9, e.g. 10 (row 9)" in rejection(report)


def test_float_labels_are_rejected_by_type_and_set(frame, tmp_path):
    frame[TARGET_COLUMN] = frame[TARGET_COLUMN].astype(float)
    frame.loc[[9, 30], TARGET_COLUMN] = [2.5, 7.25]
    report = validate(frame, tmp_path)

    typed = failure_of(report, "expect_column_values_to_be_in_type_list", TARGET_COLUMN)
    assert typed.unexpected_count == 2 and typed.examples == ((9, 2.5), (30, 7.25))
    assert "dtype float64" in typed.detail
    assert failure_of(report, "expect_column_values_to_be_in_set", TARGET_COLUMN).unexpected_count == 2
    assert "column 'target'" in rejection(report) and "2.5" in rejection(report)


def test_too_few_rows(frame, tmp_path):
    report = validate(frame.head(50), tmp_path)

    rows = failure_of(report, "expect_table_row_count_to_be_between", None)
    assert rows.detail == "only 50 rows; at least 100 are required"
    assert len(report.failures) == 1
    assert "only 50 rows" in rejection(report)


def test_suite_with_a_mistyped_expectation_is_refused_not_silently_shortened(tmp_path):
    suite = json.loads(DEFAULT_SUITE.read_text())
    suite["expectations"][1]["type"] = "expect_table_row_count_to_be_betwen"
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(suite))

    with pytest.raises(ValueError, match="1 expectation"):
        load_suite(path)
