"""The real dataset: scikit-learn's bundled digits, as the pipeline loads it by default, passes the suite."""

import pandas as pd

from tasks.data import digits_frame
from tasks.validation import require_valid_dataset, validate_dataset


def test_bundled_digits_pass_the_suite(tmp_path):
    frame = digits_frame()
    report = validate_dataset.fn(frame=frame, source="sklearn:digits", report_dir=tmp_path)

    assert len(frame) == 1797
    assert report.success, report.describe("sklearn:digits")
    require_valid_dataset.fn(report=report, source="sklearn:digits")


def test_bundled_digits_pass_after_a_parquet_round_trip(tmp_path):
    path = tmp_path / "digits.parquet"
    digits_frame().to_parquet(path, index=False)
    report = validate_dataset.fn(frame=pd.read_parquet(path), source=str(path), report_dir=tmp_path / "reports")

    assert report.success, report.describe(str(path))
