"""`greenlight profile`: a starting suite from a trusted file, which that file then passes."""

import json

import numpy as np
import pandas as pd
import pytest

from deployments.cli import main
from tasks.core.config import ValidationConfig
from tasks.core.errors import GreenlightError
from tasks.data.files import digits_frame
from tasks.data.profiling import profile_suite, write_profile
from tasks.data.validation import load_suite, validate_dataset


def by_type(suite: dict, kind: str) -> list[dict]:
    return [e for e in suite["expectations"] if e["type"] == kind]


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "digits.csv"
    digits_frame().to_csv(path, index=False)
    return path


def test_profile_records_columns_types_ranges_nulls_and_labels(digits_csv, tmp_path):
    written = write_profile(digits_csv, tmp_path / "suite.json")
    suite = json.loads(written.path.read_text())

    assert written.rows == 1797 and written.expectations == len(suite["expectations"])
    assert by_type(suite, "expect_table_columns_to_match_ordered_list")[0]["kwargs"]["column_list"][-1] == "target"
    assert len(by_type(suite, "expect_columns_values_to_be_whole_numbers")[0]["kwargs"]["column_list"]) == 65
    assert len(by_type(suite, "expect_columns_values_to_not_be_null")[0]["kwargs"]["column_list"]) == 65
    ranges = {
        (e["kwargs"]["min_value"], e["kwargs"]["max_value"])
        for e in by_type(suite, "expect_columns_values_to_be_between")
    }
    assert (0, 0) in ranges and (0, 16) in ranges  # pixel_0_0 is always blank: a person widens that
    assert by_type(suite, "expect_column_values_to_be_in_set")[0]["kwargs"]["value_set"] == list(range(10))
    shares = by_type(suite, "expect_column_value_shares_to_be_between")[0]
    assert shares["severity"] == "warning" and shares["kwargs"]["shares"]["0"] == [0.0495, 0.1981]
    assert all(e["meta"]["why"] for e in suite["expectations"])


def test_the_profiled_file_passes_its_own_suite(digits_csv, tmp_path):
    path = write_profile(digits_csv, tmp_path / "suite.json").path
    load_suite(path)  # GX builds every expectation in it
    report = validate_dataset.fn(
        frame=pd.read_csv(digits_csv),
        source=str(digits_csv),
        report_dir=tmp_path,
        config=ValidationConfig(suite_path=str(path)),
    )

    assert report.failures == () and report.evaluated_expectations == len(json.loads(path.read_text())["expectations"])


def test_columns_with_nulls_get_a_lenient_warning_not_a_critical_check():
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0] * 25, "target": [0, 1] * 50})
    suite = profile_suite(frame, "x.csv", "0" * 64)

    nulls = by_type(suite, "expect_columns_values_to_not_be_null")
    assert nulls[0]["kwargs"]["column_list"] == ["target"] and nulls[0]["severity"] == "critical"
    assert nulls[1]["kwargs"] == {"column_list": ["a"], "mostly": 0.5} and nulls[1]["severity"] == "warning"


def test_an_edited_suite_is_never_overwritten_silently(digits_csv, tmp_path):
    (tmp_path / "suite.json").write_text("{}")
    with pytest.raises(GreenlightError, match="already exists; pass --force"):
        write_profile(digits_csv, tmp_path / "suite.json")
    assert (tmp_path / "suite.json").read_text() == "{}"


def test_the_cli_writes_the_suite_and_says_how_to_use_it(digits_csv, tmp_path, capsys):
    out = tmp_path / "digits.expectations.json"
    assert main(["profile", "--data", str(digits_csv), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and f"validation: {{suite_path: {out}}}" in printed
    assert load_suite(out).name == "digits"


def test_the_cli_refuses_a_bad_file_with_exit_2(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a;b;c\n1;2;3\n")
    assert main(["profile", "--data", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "s.json")]) == 2
    assert "looks like ';'-delimited" in capsys.readouterr().err
