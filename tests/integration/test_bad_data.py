"""Bad input through the `greenlight` CLI, as a user meets it: exit 2, a message to act on, nothing changed.

Each rejected run must leave the registry as it was (no new version, `production` where it was, no new
bento) while its MLflow run and Prefect flow run both record why. A file with only warnings is trained.
"""

import os
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
from mlflow import MlflowClient
from registry_support import MODEL, bentos, registry_state

from deployments.cli import main
from tasks.core.retry import wait_until
from tasks.core.spec import DIGITS_COLUMNS as FEATURE_COLUMNS
from tasks.core.spec import digits_frame

pytestmark = pytest.mark.slow
TARGET_COLUMN = "target"


@pytest.fixture(scope="module")
def client(prefect_harness, greenlight_home) -> MlflowClient:
    """The registry with a production version to protect (made here when this module runs alone)."""
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    if registry_state(client)[1] is None:
        # Not the default run: test_pipeline's default run after this one would be production's own model, which
        # the gate keeps as a duplicate instead of promoting (issue 26 item 5).
        assert main(["run", "--max-epochs", "12"]) == 0
    return client


def latest_run(client: MlflowClient):
    experiment = client.get_experiment_by_name("greenlight")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]


def write_strings(path: Path) -> None:
    frame = digits_frame()
    frame["pixel_3_4"] = frame["pixel_3_4"].astype(object)
    frame.loc[[5, 17, 900], "pixel_3_4"] = "dark"
    frame.to_csv(path, index=False)


def write_truncated(path: Path) -> None:
    digits_frame().to_parquet(path, index=False)
    path.write_bytes(path.read_bytes()[:-100])


def write_inverted(path: Path) -> None:
    frame = digits_frame()
    frame[list(FEATURE_COLUMNS)] = 16 - frame[list(FEATURE_COLUMNS)]
    frame.to_parquet(path, index=False)


def write_single_class(path: Path) -> None:
    digits_frame().assign(target=7).to_csv(path, index=False)


CASES = {
    "nonexistent.csv": (lambda path: None, "does not exist"),
    "semicolons.csv": (lambda path: digits_frame().to_csv(path, index=False, sep=";"), "looks like ';'-delimited"),
    "truncated.parquet": (write_truncated, "truncated or corrupt Parquet file"),
    "no_pixel_3_4.csv": (
        lambda p: digits_frame().drop(columns="pixel_3_4").to_csv(p, index=False),
        "missing 'pixel_3_4'",
    ),
    "strings.csv": (write_strings, "column 'pixel_3_4': 3 non-numeric values, e.g. 'dark' (rows 5, 17, 900)"),
    "single_class.csv": (write_single_class, "column 'target' holds 1 distinct value (7)"),
    "inverted.parquet": (write_inverted, "drifted too far from the production model's training data"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_and_changes_nothing(client, tmp_path, capsys, name):
    write, expected = CASES[name]
    path = tmp_path / name
    write(path)
    before, bentos_before = registry_state(client), bentos()

    assert main(["run", "--data", str(path)]) == 2
    message = capsys.readouterr().err
    assert expected in message and str(path) in message
    assert registry_state(client) == before
    assert bentos() == bentos_before


def test_a_rejected_run_records_why_in_mlflow_and_prefect(client, tmp_path, capsys):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter

    write_strings(tmp_path / "strings.csv")
    assert main(["run", "--data", str(tmp_path / "strings.csv")]) == 2
    message = capsys.readouterr().err.split("greenlight run: ", 1)[1].strip()

    run = latest_run(client)
    assert run.info.status == "FAILED" and run.data.tags["data_check"] == "rejected"
    assert run.data.metrics["validation_critical_failures"] == 1.0
    (page,) = [
        a.path for a in client.list_artifacts(run.info.run_id, "validation/validation") if a.path.endswith(".html")
    ]
    html = Path(client.download_artifacts(run.info.run_id, page, str(tmp_path))).read_text()
    assert "pixel_3_4" in html and "http://" not in html and "https://" not in html

    flow_run_id = UUID(run.data.tags["prefect_flow_run_id"])
    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(flow_run_id)
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        logs: list[str] = []

        def flow_run_logged_its_end() -> bool:
            found = prefect.read_logs(LogFilter(flow_run_id={"any_": [flow_run_id]}))
            logs[:] = [log.message for log in found]
            return any(log.task_run_id is None and log.message.startswith("Finished in state") for log in found)

        # Logs reach the API in batches, a moment after the run: wait for the flow run's own last line.
        wait_until(flow_run_logged_its_end, timeout_s=30, every_s=0.5)
    assert flow_run.state.is_failed()
    # An expected error reads as its message in the Prefect UI's logs, once, with no traceback around it.
    assert not [line for line in logs if "Traceback" in line]
    assert sum(1 for line in logs if message.splitlines()[0] in line) == 1
    assert message in flow_run.state.message  # the same words in the terminal and the Prefect UI
    by_key = {artifact.key: artifact for artifact in artifacts}
    assert page.split("/")[-1] in str(by_key["data-report"].data)
    assert "column 'pixel_3_4'" in str(by_key["data-check"].data)


def test_warnings_never_stop_a_run(client, tmp_path):
    frame = digits_frame()
    threes = frame.index[frame[TARGET_COLUMN] == 3]
    rare = frame.drop(index=threes[20:]).reset_index(drop=True)  # 20 threes: label drift and share warnings
    rare.to_parquet(tmp_path / "rare_threes.parquet", index=False)
    versions_before, _ = registry_state(client)
    # No pruning or distillation: the data checks' warnings are the subject, not the smaller models (~5 s a run).
    small = tmp_path / "small-run.yaml"
    small.write_text("compression: {pruning: {levels: []}, distillation: {enabled: false}}\n")

    argv = ["run", "--data", str(tmp_path / "rare_threes.parquet"), "--max-epochs", "3", "--config", str(small)]
    assert main(argv) in (0, 3)
    versions_after, _ = registry_state(client)
    (new_version,) = set(versions_after) - set(versions_before)
    run = latest_run(client)
    assert run.data.tags["data_check"] == "passed with warnings" and run.data.tags["drift_status"] == "warning"
    assert run.data.metrics["validation_warning_failures"] == 1.0
    assert 0.15 <= run.data.metrics["drift_label_psi"] < 0.5
    assert np.isfinite(run.data.metrics["drift_psi.pixel_3_4"])
    assert {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "validation/validation")} >= {
        "drift.json",
        "data_summary.json",
    }
    tags = client.get_model_version(MODEL, new_version).tags
    assert tags["data_summary"] == "reference/data_summary.json"
