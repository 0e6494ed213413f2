"""PSI drift against the production version's data summary: per type, verdicts, and where the reference comes from."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from pydantic import ValidationError

from tasks.core.config import DriftConfig, ValidationConfig
from tasks.core.errors import DataRejected
from tasks.core.spec import DIGITS_COLUMNS, DatasetSpec, FeatureSpec, TargetSpec, digits_spec
from tasks.data.drift import (
    DataSummary,
    DriftReference,
    load_drift_reference,
    measure_drift,
    psi,
    score_drift,
    summarize,
)
from tasks.data.files import digits_frame
from tasks.data.report import require_valid_dataset, write_data_report
from tasks.data.validation import validate_dataset
from tasks.registry.client import DATA_SUMMARY_TAG, ensure_registered_model, log_data_summary, start_tracking_run

MODEL = "drift-test-model"
DIGITS = digits_spec().dataset
TARGET_COLUMN = DIGITS.target.name


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    return digits_frame()


@pytest.fixture(scope="module")
def reference(digits) -> DriftReference:
    return DriftReference("4", summarize(digits, "a" * 64, DIGITS), "production v4's training data")


def drift_of(frame: pd.DataFrame, reference: DriftReference, tmp_path: Path, spec: DatasetSpec = DIGITS, **config):
    validation = validate_dataset.fn(
        frame=frame, source="new.csv", report_dir=tmp_path, config=ValidationConfig(), spec=spec
    )
    drift = measure_drift.fn(frame, "b" * 64, validation, reference, DriftConfig(**config), tmp_path, spec)
    return drift, write_data_report.fn(validation=validation, drift=drift, out_dir=tmp_path)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    counts = np.array([50, 30, 20])
    assert psi(counts, counts) == 0.0
    assert psi(counts * 3, counts) == pytest.approx(0.0, abs=1e-3)  # shares, not counts
    assert 0 < psi(np.array([45, 33, 22]), counts) < psi(np.array([20, 30, 50]), counts)


def test_summary_counts_each_pixel_value_and_label(digits):
    summary = summarize(digits, "a" * 64, DIGITS)

    assert summary.rows == 1797 and set(summary.columns) == {*DIGITS_COLUMNS, TARGET_COLUMN}
    assert summary.columns["pixel_0_0"].counts == [1797] + [0] * 16  # always blank in the bundled digits
    labels = summary.columns[TARGET_COLUMN]
    assert labels.values == [str(d) for d in range(10)] and sum(labels.counts) == 1797 and labels.counts[0] == 178


def test_same_data_does_not_drift_and_its_summary_is_written(digits, reference, tmp_path):
    drift, checks = drift_of(digits, reference, tmp_path)

    assert drift.status == "ok" and drift.max_feature_psi == 0.0 and drift.label_psi == 0.0
    assert DataSummary.read(drift.summary_json).columns == reference.summary.columns
    assert json.loads(drift.report_json.read_text())["status"] == "ok"
    assert not checks.blocked


def test_a_random_half_of_the_same_data_stays_below_the_warning(digits, reference, tmp_path):
    drift, _ = drift_of(digits.sample(900, random_state=1).reset_index(drop=True), reference, tmp_path)

    assert drift.status == "ok" and drift.max_feature_psi < DriftConfig().feature_warn_psi


def test_inverted_images_drift_far_and_block_with_the_top_pixels_named(digits, reference, tmp_path):
    inverted = digits.copy()
    inverted[DIGITS_COLUMNS] = 16 - inverted[DIGITS_COLUMNS]
    drift, checks = drift_of(inverted, reference, tmp_path)

    assert drift.status == "blocking" and drift.max_feature_psi > 10
    assert [f.psi for f in drift.features] == sorted((f.psi for f in drift.features), reverse=True)
    with pytest.raises(DataRejected) as raised:
        require_valid_dataset.fn(checks=checks)
    message = str(raised.value)
    assert "new.csv drifted too far from the production model's training data" in message
    assert f"most drifted features: {drift.features[0].name} PSI" in message and "production v4" in message
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
    inverted[DIGITS_COLUMNS] = 16 - inverted[DIGITS_COLUMNS]

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


def test_a_format_1_digits_summary_still_serves_as_the_reference(digits, reference, tmp_path):
    """Versions registered before specs stored pixel and label counts only; drift keeps working against them."""
    labels = reference.summary.columns["target"]
    old = {
        "format": 1,
        "sha256": "c" * 64,
        "rows": 1797,
        "feature_counts": {name: reference.summary.columns[name].counts for name in DIGITS_COLUMNS},
        "label_counts": dict(zip(labels.values, labels.counts, strict=True)),
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    summary = DataSummary.read(tmp_path / "old.json")

    drift = score_drift(digits, DIGITS, DriftReference("1", summary, "v1"), DriftConfig())
    assert drift.status == "ok" and drift.max_feature_psi == 0.0 and drift.label_psi == 0.0


# A table with one column of each summarised type.
TABLE = DatasetSpec(
    name="customers",
    target=TargetSpec(name="churn", task="classification", labels=["no", "yes"]),
    features=[
        FeatureSpec(name="customer_id", type="id"),
        FeatureSpec(name="amount", type="numeric", nullable=True, min=0.0, max=100.0),
        FeatureSpec(name="plan", type="categorical", values=["basic", "plus", "pro"]),
        FeatureSpec(name="active", type="binary", values=[False, True]),
    ],
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = 2000
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "amount": np.where(np.arange(rows) % 20 == 0, np.nan, rng.normal(50, 10, rows)),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
            "active": rng.choice([True, False], rows),
            "churn": rng.choice(["no", "yes"], rows, p=[0.7, 0.3]),
        }
    )


def table_drift(frame: pd.DataFrame, reference_frame: pd.DataFrame, spec: DatasetSpec = TABLE):
    reference = DriftReference("2", summarize(reference_frame, "a" * 64, spec), "production v2's training data")
    return score_drift(frame, spec, reference, DriftConfig())


def test_table_summary_bins_numbers_by_decile_and_counts_categories(table):
    summary = summarize(table, "a" * 64, TABLE)

    amount = summary.columns["amount"]
    assert amount.kind == "bins" and len(amount.edges) == 9 and amount.missing == 100
    assert all(abs(count - 190) <= 1 for count in amount.counts)  # deciles: 1900 present rows in ten bins
    plan = summary.columns["plan"]
    assert plan.kind == "values" and plan.values == ["pro", "plus", "basic"] and sum(plan.counts) == 2000
    assert summary.columns["active"].values == ["true", "false"]
    assert "customer_id" not in summary.columns  # an id is not a feature: it drifts by construction


def test_the_same_table_does_not_drift(table):
    drift = table_drift(table, table)
    assert drift.status == "ok" and drift.max_feature_psi == 0.0 and drift.label_psi == 0.0
    assert {f.name for f in drift.features} == {"amount", "plan", "active"}


def test_a_shifted_numeric_column_is_the_most_drifted(table):
    shifted = table.assign(amount=table["amount"] + 10)  # one standard deviation
    drift = table_drift(shifted, table)

    assert drift.features[0].name == "amount" and drift.features[0].psi > DriftConfig().feature_warn_psi
    assert drift.status in ("warning", "blocking") and drift.features[1].psi < 0.01


def test_more_missing_values_drift_through_the_missing_bin(table):
    gappy = table.assign(amount=table["amount"].where(np.arange(len(table)) % 3 != 0))
    assert table_drift(gappy, table).features[0].name == "amount"


def test_a_new_category_is_flagged_with_its_unseen_share(table):
    changed = table.copy()
    changed.loc[changed.index[::5], "plan"] = "enterprise"  # 20% of the rows
    drift = table_drift(changed, table)

    plan = drift.features[0]
    assert plan.name == "plan" and plan.unseen_share == pytest.approx(0.2) and plan.psi > 0.5
    assert "plan PSI" in drift.top_text() and "(20% unseen)" in drift.top_text()


def test_the_report_names_the_drifted_table_columns_and_their_unseen_share(table, tmp_path, capsys):
    changed = table.copy()
    changed.loc[changed.index[::10], "plan"] = "enterprise"  # 10%: a warning, not a block
    reference = DriftReference("2", summarize(table, "a" * 64, TABLE), "production v2's training data")
    drift, checks = drift_of(changed, reference, tmp_path, spec=TABLE)

    require_valid_dataset.fn(checks=checks)  # a warning: the run goes on
    printed = capsys.readouterr().out
    assert "most drifted features: plan PSI" in printed and "(10% unseen)" in printed
    assert "column 'plan': 200 values not in {'basic', 'plus', 'pro'}" in printed
    page = checks.html.read_text()
    assert "<td>plan</td>" in page and "<td>10.0%</td>" in page and "pixel" not in page
    assert "| plan |" in checks.markdown("link") and checks.metrics()["drift_psi.plan"] == drift.features[0].psi


def test_a_regression_target_drifts_over_its_deciles(table):
    spec = TABLE.model_copy(update={"target": TargetSpec(name="spend", task="regression")})
    reference = table.assign(spend=np.linspace(0, 100, len(table)))
    same = table_drift(reference, reference, spec)
    higher = table_drift(reference.assign(spend=reference["spend"] + 30), reference, spec)

    assert same.label_psi == 0.0 and same.label_shares == {}
    assert higher.label_psi > DriftConfig().label_block_psi and higher.status == "blocking"


def test_a_reference_of_another_spec_is_skipped_with_the_reason(table, digits, reference):
    drift = score_drift(table, TABLE, reference, DriftConfig())

    assert drift.status == "skipped" and drift.features == ()
    assert "was made for another spec (new here: 'amount', 'plan', 'active', 'churn'; gone: 'pixel_0_0'" in drift.note


def registered_version(tracking_uri: str, tmp_path: Path, summary: DataSummary | None) -> str:
    """A production version of MODEL, with or without a stored data summary (no model file needed here)."""
    run = start_tracking_run(tracking_uri, "drift-test", "run", {}, {})
    tags = {DATA_SUMMARY_TAG: log_data_summary(run, summary.write(tmp_path / "data_summary.json"))} if summary else {}
    client = MlflowClient(tracking_uri=tracking_uri)
    ensure_registered_model(client, MODEL, digits_spec())
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
