"""PSI drift against the production version's data summary: scores, verdicts, and where the reference comes from."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from pydantic import ValidationError

from tasks.core.config import DriftConfig, ValidationConfig
from tasks.core.errors import DataRejected
from tasks.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from tasks.data.drift import DataSummary, DriftReference, load_drift_reference, measure_drift, psi, summarize
from tasks.data.files import digits_frame
from tasks.data.report import require_valid_dataset, write_data_report
from tasks.data.validation import validate_dataset
from tasks.registry.client import DATA_SUMMARY_TAG, ensure_registered_model, log_data_summary, start_tracking_run

MODEL = "drift-test-model"


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    return digits_frame()


@pytest.fixture(scope="module")
def reference(digits) -> DriftReference:
    return DriftReference("4", summarize(digits, "a" * 64), "production v4's training data")


def drift_of(frame: pd.DataFrame, reference: DriftReference, tmp_path: Path, **config):
    validation = validate_dataset.fn(frame=frame, source="new.csv", report_dir=tmp_path, config=ValidationConfig())
    drift = measure_drift.fn(frame, "b" * 64, validation, reference, DriftConfig(**config), tmp_path)
    return drift, write_data_report.fn(validation=validation, drift=drift, out_dir=tmp_path)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    counts = np.array([50, 30, 20])
    assert psi(counts, counts) == 0.0
    assert psi(counts * 3, counts) == pytest.approx(0.0, abs=1e-3)  # shares, not counts
    assert 0 < psi(np.array([45, 33, 22]), counts) < psi(np.array([20, 30, 50]), counts)


def test_summary_counts_each_pixel_value_and_label(digits):
    summary = summarize(digits, "a" * 64)

    assert summary.rows == 1797 and set(summary.feature_counts) == set(FEATURE_COLUMNS)
    assert summary.feature_counts["pixel_0_0"] == [1797] + [0] * 16  # always blank in the bundled digits
    assert sum(summary.label_counts.values()) == 1797 and summary.label_counts["0"] == 178


def test_same_data_does_not_drift_and_its_summary_is_written(digits, reference, tmp_path):
    drift, checks = drift_of(digits, reference, tmp_path)

    assert drift.status == "ok" and drift.max_feature_psi == 0.0 and drift.label_psi == 0.0
    assert DataSummary.read(drift.summary_json).feature_counts == reference.summary.feature_counts
    assert json.loads(drift.report_json.read_text())["status"] == "ok"
    assert not checks.blocked


def test_a_random_half_of_the_same_data_stays_below_the_warning(digits, reference, tmp_path):
    drift, _ = drift_of(digits.sample(900, random_state=1).reset_index(drop=True), reference, tmp_path)

    assert drift.status == "ok" and drift.max_feature_psi < DriftConfig().feature_warn_psi


def test_inverted_images_drift_far_and_block_with_the_top_pixels_named(digits, reference, tmp_path):
    inverted = digits.copy()
    inverted[list(FEATURE_COLUMNS)] = 16 - inverted[list(FEATURE_COLUMNS)]
    drift, checks = drift_of(inverted, reference, tmp_path)

    assert drift.status == "blocking" and drift.max_feature_psi > 10
    assert [f.psi for f in drift.features] == sorted((f.psi for f in drift.features), reverse=True)
    with pytest.raises(DataRejected) as raised:
        require_valid_dataset.fn(checks=checks)
    message = str(raised.value)
    assert "new.csv drifted too far from the production model's training data" in message
    assert f"most drifted pixels: {drift.features[0].name} PSI" in message and "production v4" in message
    assert f"full report: {checks.html}" in message and "drift.feature_block_psi" in message


def test_dropping_half_of_the_digits_blocks_on_the_labels(digits, reference, tmp_path):
    drift, checks = drift_of(digits[digits[TARGET_COLUMN] < 5].reset_index(drop=True), reference, tmp_path)

    assert drift.label_psi >= DriftConfig().label_block_psi and drift.status == "blocking"
    assert drift.label_shares["9"] == (0.0, pytest.approx(180 / 1797))
    assert checks.blocked


def test_a_rarer_digit_is_a_warning_and_the_run_goes_on(digits, reference, tmp_path, capsys):
    threes = digits.index[digits[TARGET_COLUMN] == 3]
    drift, checks = drift_of(digits.drop(index=threes[20:]).reset_index(drop=True), reference, tmp_path)

    assert drift.status == "warning"
    require_valid_dataset.fn(checks=checks)
    assert "passed with warnings" in capsys.readouterr().out
    assert checks.metrics()["drift_label_psi"] == pytest.approx(drift.label_psi)


def test_thresholds_come_from_the_configuration(digits, reference, tmp_path):
    inverted = digits.copy()
    inverted[list(FEATURE_COLUMNS)] = 16 - inverted[list(FEATURE_COLUMNS)]

    assert drift_of(inverted, reference, tmp_path, feature_block_psi=100.0)[0].status == "warning"
    assert drift_of(inverted, reference, tmp_path, enabled=False)[0].status == "skipped"


def test_no_reference_means_no_drift_check_and_says_so(digits, tmp_path):
    drift, checks = drift_of(digits, DriftReference(None, None, "no production version yet"), tmp_path)

    assert drift.status == "skipped" and drift.features == () and drift.summary_json.is_file()
    assert "drift: not measured: no production version yet" in checks.message()
    assert json.loads(drift.report_json.read_text())["note"] == "not measured: no production version yet"


def test_a_rejected_file_is_not_summarised(digits, reference, tmp_path):
    broken = digits.astype(float)
    broken.loc[3, "pixel_3_4"] = np.nan
    drift, _ = drift_of(broken, reference, tmp_path)

    assert drift.status == "skipped" and drift.summary_json is None


def test_warn_above_block_is_a_configuration_error():
    with pytest.raises(ValidationError, match="feature_warn_psi"):
        DriftConfig(feature_warn_psi=2.0, feature_block_psi=1.0)


def registered_version(tracking_uri: str, tmp_path: Path, summary: DataSummary | None) -> str:
    """A production version of MODEL, with or without a stored data summary (no model file needed here)."""
    run = start_tracking_run(tracking_uri, "drift-test", "run", {}, {})
    tags = {DATA_SUMMARY_TAG: log_data_summary(run, summary.write(tmp_path / "data_summary.json"))} if summary else {}
    client = MlflowClient(tracking_uri=tracking_uri)
    ensure_registered_model(client, MODEL)
    version = client.create_model_version(MODEL, source=f"runs:/{run.run_id}/model", run_id=run.run_id, tags=tags)
    client.set_registered_model_alias(MODEL, "production", version.version)
    return str(version.version)


def test_reference_is_the_production_versions_stored_summary(tmp_path, reference):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert "no production version" in load_drift_reference.fn(tracking_uri, MODEL, tmp_path / "dl").note

    old = registered_version(tracking_uri, tmp_path, None)
    found = load_drift_reference.fn(tracking_uri, MODEL, tmp_path / "dl")
    assert found.summary is None and f"production v{old} has no stored data summary" in found.note

    new = registered_version(tracking_uri, tmp_path, reference.summary)
    found = load_drift_reference.fn(tracking_uri, MODEL, tmp_path / "dl")
    assert found.version == new and found.summary == reference.summary
