"""Where drift's reference comes from: the data summary stored with the production version in MLflow."""

from mlflow import MlflowClient

from tasks.core.records import ProductionFile
from tasks.core.spec import digits_frame, digits_spec
from tasks.data.drift import read_drift_reference, summarize
from tasks.registry.client import DATA_SUMMARY_TAG, ensure_registered_model, log_data_summary, start_tracking_run
from tasks.registry.tracking import fetch_production_data_summary

MODEL = "drift-reference-model"


def register_production(tracking_uri: str, summary_path) -> str:
    """A production version of MODEL, with or without a stored data summary (no model file needed here)."""
    run = start_tracking_run(tracking_uri, "drift-test", "run", {}, {})
    tags = {DATA_SUMMARY_TAG: log_data_summary(run, summary_path)} if summary_path else {}
    client = MlflowClient(tracking_uri=tracking_uri)
    ensure_registered_model(client, MODEL, digits_spec())
    version = client.create_model_version(MODEL, source=f"runs:/{run.run_id}/model", run_id=run.run_id, tags=tags)
    client.set_registered_model_alias(MODEL, "production", version.version)
    return str(version.version)


def test_the_reference_is_the_production_versions_stored_summary(tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = summarize(digits_frame(), "a" * 64, digits_spec().dataset)

    assert fetch_production_data_summary.fn(tracking_uri, MODEL, tmp_path / "dl") == ProductionFile(MODEL, None, None)
    old = register_production(tracking_uri, None)
    found = fetch_production_data_summary.fn(tracking_uri, MODEL, tmp_path / "dl")
    assert found == ProductionFile(MODEL, old, None)

    new = register_production(tracking_uri, summary.write(tmp_path / "data_summary.json"))
    found = fetch_production_data_summary.fn(tracking_uri, MODEL, tmp_path / "dl")
    assert found.version == new and found.path is not None and found.path.is_relative_to(tmp_path / "dl")
    reference = read_drift_reference.fn(found)
    assert reference.version == new and reference.summary == summary
