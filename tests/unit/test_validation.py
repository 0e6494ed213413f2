"""validate_dataset on tiny frames: what a user sees when a file is wrong, and which problems stop a run.

The digits cases check the bundled spec's suite (an image grid); the table cases each feature type's checks;
the text and image cases free text and image files (written with Pillow into tmp_path).
"""

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import DriftConfig, ValidationConfig
from tasks.core.errors import ConfigRejected, DataRejected
from tasks.core.images import image_facts
from tasks.core.spec import DIGITS_COLUMNS, DatasetSpec, FeatureSpec, TargetSpec, digits_spec
from tasks.data.drift import DriftReference, measure_drift, score_drift
from tasks.data.image_folders import read_image_folder
from tasks.data.report import DataCheckReport, require_valid_dataset, write_data_report
from tasks.data.split import MIN_ROWS_PER_CLASS
from tasks.data.suite import SPLIT_ROWS_PER_LABEL, suite_for_spec
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
    assert report.evaluated_expectations == len(suite_for_spec(DIGITS)["expectations"]) == 12
    assert json.loads(report.result_json.read_text())["statistics"]["evaluated_expectations"] == 12
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


def test_a_column_name_and_value_that_look_like_markup_reach_the_page_as_text(table, tmp_path):
    hostile = "<script>alert(1)</script> & \"quoted\" 'name'"
    plan = next(f for f in TABLE.features if f.name == "plan")
    spec = TABLE.model_copy(update={"features": [*TABLE.features, plan.model_copy(update={"name": hostile})]})
    table[hostile] = table["plan"].where(table.index % 2 == 0, hostile)  # half of it a category never seen
    checks = checked(validate(table, tmp_path, spec=spec), tmp_path, table, spec)
    page = checks.html.read_text()

    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; " in page
    shown = PageText()
    shown.feed(page)
    assert f"column '{hostile}': 100 values not in" in shown.text  # what a browser shows: the name as written
    assert f"<td>{hostile}</td>" not in page and hostile in shown.cells


class PageText(HTMLParser):
    """The text a browser shows, and each table cell's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text, self.cells = "", []

    def handle_data(self, data: str) -> None:
        self.text += data
        if self.lasttag == "td":
            self.cells.append(data)


def test_a_binary_column_compares_values_as_the_model_reads_them(table, tmp_path):
    table["active"] = table["active"].map({True: "true", False: "false"})  # text from a CSV: same values
    assert table_problems(table, tmp_path) == {"critical": [], "warning": []}


DATED = TABLE.model_copy(
    update={
        "features": [
            *TABLE.features,
            FeatureSpec(name="joined", type="datetime", format="%d/%m/%Y", min="2022-01-01", max="2023-12-31"),
        ]
    }
)


def test_dates_in_iso_or_the_spec_format_pass_and_other_text_is_critical_naming_it(table, tmp_path):
    days = [np.datetime64("2022-01-01") + int(d) for d in np.random.default_rng(4).integers(0, 730, len(table))]
    table["joined"] = [str(d) if i % 2 else pd.Timestamp(d).strftime("%d/%m/%Y") for i, d in enumerate(days)]
    assert table_problems(table, tmp_path, DATED) == {"critical": [], "warning": []}

    table.loc[5, "joined"] = "next week"
    critical = table_problems(table, tmp_path, DATED)["critical"]
    assert critical == ["column 'joined': 1 value not dates (ISO 8601 or %d/%m/%Y), e.g. 'next week' (row 5)"]


def test_a_date_far_outside_the_training_span_is_a_warning_naming_the_allowed_span(table, tmp_path):
    table["joined"] = "2023-06-01"
    table.loc[3, "joined"] = "1900-01-01"
    (warning,) = table_problems(table, tmp_path, DATED)["warning"]
    assert warning.startswith("column 'joined': 1 value outside the allowed 2021-01-01..2024-12-29")
    assert "(seen when the spec was made: 2022-01-01..2023-12-31)" in warning and "'1900-01-01' (row 3)" in warning


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


def test_records_alike_on_a_few_discrete_columns_are_told_apart_by_their_names(table, tmp_path):
    """Titanic's shape: class, sex and a rounded age repeat by nature; the passengers' names differ."""
    spec = TABLE.model_copy(update={"features": [f for f in TABLE.features if f.name not in ("amount", "score")]})
    alike = table.drop(columns=["amount", "score"])
    assert alike.drop(columns=["customer_id", "notes"]).duplicated().mean() > 0.9
    assert table_problems(alike, tmp_path, spec=spec)["critical"] == []

    copied = pd.concat([alike, alike.head(40)], ignore_index=True)  # the same passengers twice: copies
    (critical,) = table_problems(copied, tmp_path, spec=spec)["critical"]
    assert critical.startswith("40 of 240 rows (16.7%) repeat an earlier row exactly, e.g. row 200 = row 0")


def test_a_regression_target_must_be_numbers(table, tmp_path):
    spec = TABLE.model_copy(update={"target": TargetSpec(name="spend", task="regression")})
    table["spend"] = table["amount"] * 3
    table = table.astype({"spend": object})
    table.loc[9, "spend"] = "lots"
    problems = table_problems(table, tmp_path, spec=spec)
    assert problems["critical"] == ["column 'spend': 1 non-numeric value, e.g. 'lots' (row 9)"]


def test_a_label_with_too_few_rows_for_the_split_is_critical(table, tmp_path):
    table.loc[table["churn"] == "yes", "churn"] = "no"
    table.loc[[5, 50, 150], "churn"] = "yes"  # 3 rows: the split cannot put one in train, validation and test
    critical = table_problems(table, tmp_path)["critical"]
    assert critical == [
        "column 'churn': 1 label with under 5 rows: yes (3 rows); a stratified split needs each label in train,"
        " validation and test: add rows, merge the label into another, or drop its rows"
    ]


def test_the_suite_asks_for_as_many_rows_per_label_as_the_split_needs():
    assert SPLIT_ROWS_PER_LABEL == MIN_ROWS_PER_CLASS


# Free text: each present cell a string, within max_chars.
REVIEWS = DatasetSpec(
    name="reviews",
    target=TargetSpec(name="sentiment", task="classification", labels=["negative", "positive"]),
    features=[FeatureSpec(name="review", type="text", tokenizer="pretrained", max_length=64, max_chars=80)],
)


@pytest.fixture
def reviews() -> pd.DataFrame:
    """40 short reviews a file for REVIEWS holds: all checks pass on it."""
    return pd.DataFrame(
        {
            "review": [f"Review {i}: {'works well' if i % 2 else 'broke in a week'}." for i in range(40)],
            "sentiment": ["positive" if i % 2 else "negative" for i in range(40)],
        }
    )


def test_good_texts_pass(reviews, tmp_path):
    assert table_problems(reviews, tmp_path, spec=REVIEWS) == {"critical": [], "warning": []}


def test_a_number_or_a_boolean_in_a_text_column_is_critical(reviews, tmp_path):
    reviews["review"] = reviews["review"].astype(object)  # cells of mixed types, as a shifted column holds them
    reviews.loc[[4, 9], "review"] = [3.5, True]
    report = validate(reviews, tmp_path, spec=REVIEWS)

    typed = failure_of(report, "expect_columns_values_to_be_texts", "review")
    assert typed.severity == "critical" and typed.unexpected_count == 2 and typed.examples == ((4, 3.5), (9, True))
    assert "column 'review': 2 non-text values, e.g. 3.5, True (rows 4, 9)" in rejection(report, tmp_path)


def test_a_text_over_max_chars_is_critical_naming_its_row_and_length(reviews, tmp_path):
    reviews.loc[6, "review"] = "This blender " * 10  # 130 characters; the spec allows 80
    report = validate(reviews, tmp_path, spec=REVIEWS)

    long = failure_of(report, "expect_columns_values_to_be_texts", "review")
    assert long.severity == "critical" and long.unexpected_count == 1
    assert long.detail == (
        "column 'review': 1 text longer than max_chars 80: row 6 'This blender This blender This blender T...'"
        " (130 characters); the service refuses such texts: shorten or drop these rows, or raise max_chars in the spec"
    )
    assert long.detail in rejection(report, tmp_path)


def test_a_blank_text_is_missing(reviews, tmp_path):
    reviews.loc[2, "review"] = "   "
    assert table_problems(reviews, tmp_path, spec=REVIEWS)["critical"] == [
        "column 'review': 1 value missing (null/NaN) (row 2)"
    ]
    nullable = REVIEWS.model_copy(update={"features": [REVIEWS.features[0].model_copy(update={"nullable": True})]})
    reviews.loc[:24, "review"] = ""  # 25 of 40 blank: past half, the text no longer drives the feature
    (warning,) = table_problems(reviews, tmp_path, spec=nullable)["warning"]
    assert warning.startswith("column 'review': 25 values missing (null/NaN)")


# Image files: each path a PNG or JPEG that decodes (critical), of the model's channels and not far under its
# input size (warning).
PETS = DatasetSpec(
    name="pets",
    target=TargetSpec(name="label", task="classification", labels=["cat", "dog"]),
    features=[FeatureSpec(name="image", type="image", height=64, width=64, channels=3, resize="stretch")],
)


def write_image(path: Path, side: int = 64, mode: str = "RGB", seed: int = 0) -> str:
    """A PNG of random pixels (so no two files are alike); its path as the table holds it."""
    from PIL import Image

    bands = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, bands), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(), mode).save(path)
    return str(path)


@pytest.fixture
def pets(tmp_path) -> pd.DataFrame:
    """24 readable 64x64 RGB images, cats and dogs alternating: all checks pass on it."""
    labels = ["cat" if i % 2 else "dog" for i in range(24)]
    paths = [write_image(tmp_path / "photos" / label / f"{i}.png", seed=i) for i, label in enumerate(labels)]
    return pd.DataFrame({"image": paths, "label": labels})


def test_readable_images_of_the_input_size_pass(pets, tmp_path):
    report = validate(pets, tmp_path, spec=PETS)

    assert report.passed and report.of_severity("warning") == (), [f.detail for f in report.failures]
    assert '"expect_columns_image_files_to_be_readable"' in report.suite.read_text()  # the suite a person reviews
    assert load_suite(report.suite).name == "pets"


def test_corrupt_truncated_and_missing_files_are_critical_naming_row_path_and_why(pets, tmp_path):
    corrupt, truncated, missing = tmp_path / "corrupt.png", tmp_path / "truncated.png", tmp_path / "gone.png"
    corrupt.write_bytes(np.random.default_rng(1).bytes(600))
    whole = Path(write_image(tmp_path / "whole.png")).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    pets.loc[[3, 5, 11], "image"] = [str(corrupt), str(truncated), str(missing)]
    report = validate(pets, tmp_path, spec=PETS)

    unreadable = failure_of(report, "expect_columns_image_files_to_be_readable", "image")
    assert unreadable.severity == "critical" and unreadable.unexpected_count == 3
    assert unreadable.examples == ((3, str(corrupt)), (5, str(truncated)), (11, str(missing)))
    message = rejection(report, tmp_path)
    assert (
        f"column 'image': 3 files could not be read: row 3 {corrupt} (not a readable PNG or JPEG image (cannot"
        f" identify image file)); row 5 {truncated} (not a readable PNG or JPEG image (" in message
    )
    assert f"row 11 {missing} (cannot open (No such file or directory)); replace or delete these files" in message


def test_an_rgba_image_for_an_rgb_model_is_a_warning(pets, tmp_path):
    pets.loc[7, "image"] = write_image(tmp_path / "logo.png", mode="RGBA")
    report = validate(pets, tmp_path, spec=PETS)

    channels = failure_of(report, "expect_columns_image_files_to_fit_the_input", "image")
    assert report.passed and channels.severity == "warning"
    assert channels.unexpected_count == 1 and channels.examples == ((7, pets.loc[7, "image"]),)
    assert channels.detail.startswith(
        "column 'image': 1 file with other channels than the model's 3 (colour):"
        f" row 7 {pets.loc[7, 'image']} (4 channels: colour + alpha, or CMYK); each is converted when read"
    )


def test_an_image_far_under_the_input_size_is_a_warning(pets, tmp_path):
    pets.loc[9, "image"] = write_image(tmp_path / "icon.png", side=4)
    pets.loc[10, "image"] = write_image(tmp_path / "quarter.png", side=16)  # a quarter of 64: still fine
    report = validate(pets, tmp_path, spec=PETS)

    small = failure_of(report, "expect_columns_image_files_to_fit_the_input", "image")
    assert report.passed and small.severity == "warning" and small.examples == ((9, pets.loc[9, "image"]),)
    assert small.detail.startswith(
        "column 'image': 1 file under a quarter of the model's 64x64 input (under 16 pixels wide or 16 high):"
        f" row 9 {pets.loc[9, 'image']} (4x4 pixels); each is upscaled when read"
    )


def test_each_image_file_is_opened_once_for_both_image_checks(pets, tmp_path, monkeypatch):
    import tasks.data.gx_expectations as expectations

    opened = []
    monkeypatch.setattr(expectations, "image_facts", lambda path: opened.append(path) or image_facts(path))
    pets = pd.concat([pets, pets.head(2).assign(label="dog")], ignore_index=True)  # a path twice: read once
    validate(pets, tmp_path, spec=PETS)

    assert sorted(opened) == sorted(set(pets["image"]))


def test_a_class_folder_of_two_images_is_critical_naming_the_label(tmp_path):
    for i in range(30):
        write_image(tmp_path / "photos" / ("cat" if i % 2 else "dog") / f"{i}.png", seed=i)
    for i in range(2):
        write_image(tmp_path / "photos" / "bird" / f"{i}.png", seed=100 + i)
    frame, _, _ = read_image_folder(tmp_path / "photos")
    spec = PETS.model_copy(
        update={"target": TargetSpec(name="label", task="classification", labels=["bird", "cat", "dog"])}
    )
    report = validate(frame, tmp_path, spec=spec)

    rare = failure_of(report, "expect_column_value_counts_to_be_at_least", "label")
    assert rare.severity == "critical" and rare.examples == ((None, "bird"),)
    assert "column 'label': 1 label with under 5 rows: bird (2 rows)" in rejection(report, tmp_path)
