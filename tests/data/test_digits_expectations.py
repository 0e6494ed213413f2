"""The real dataset: scikit-learn's bundled digits, as the pipeline loads it by default, passes the whole suite."""

from tasks.core.config import ValidationConfig
from tasks.core.spec import digits_frame, digits_spec
from tasks.data.files import load_dataset
from tasks.data.validation import validate_dataset

DIGITS = digits_spec().dataset


def test_bundled_digits_pass_every_expectation(tmp_path):
    frame = digits_frame()
    report = validate_dataset.fn(
        frame=frame, source="sklearn:digits", report_dir=tmp_path, config=ValidationConfig(), spec=DIGITS
    )

    assert len(frame) == 1797
    assert report.passed and report.failures == (), [f.detail for f in report.failures]


def failures_after_loading(data_path: str | None, tmp_path) -> list[str]:
    """Load a file the way a run does, validate it against the digits spec, and return what failed."""
    loaded = load_dataset.fn(data_path, tmp_path / "datasets", DIGITS.file_columns)
    report = validate_dataset.fn(
        frame=loaded.frame,
        source=loaded.source,
        report_dir=tmp_path / "reports",
        config=ValidationConfig(),
        spec=DIGITS,
    )
    return [f.detail for f in report.failures]


def test_bundled_digits_pass_after_the_loaders_parquet_round_trip(tmp_path):
    assert failures_after_loading(None, tmp_path) == []


def test_bundled_digits_pass_after_a_csv_round_trip(tmp_path):
    path = tmp_path / "digits.csv"
    digits_frame().to_csv(path, index=False)
    assert failures_after_loading(str(path), tmp_path) == []
