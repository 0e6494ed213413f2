"""`greenlight monitor` on a served model, as a user runs it: `greenlight serve` with capture at rate 1 answers
traffic drawn from the version's training data (the monitor finds no drift), then the same traffic with one number
moved by three standard deviations (the monitor names that feature first, records the check on the version and
sends greenlight.drift.detected with the training configuration, read back from the Prefect server)."""

import hashlib
import io
import math
import os
import time
from contextlib import redirect_stderr, redirect_stdout

import httpx
import numpy as np
import pandas as pd
import pytest
from endpoint_support import isolated_store, outputs, penguins_spec, table_onnx
from mlflow import MlflowClient
from registry_support import served as greenlight_served

from deployments.cli import main
from tasks.core.capture_store import CaptureStore
from tasks.core.config import RunConfig
from tasks.core.retry import wait_until
from tasks.data.drift import summarize
from tasks.monitoring.drift_watch import MonitorConfig
from tasks.registry.client import (
    DATA_SUMMARY_TAG,
    finish_tracking_run,
    log_data_summary,
    register_onnx_model,
    start_tracking_run,
    tag_model_version,
    version_model_id,
)
from tasks.registry.tracking import flatten

pytestmark = pytest.mark.slow  # a registry, `greenlight serve` and the Prefect harness

MODEL = "penguins-monitor"
LABELS = ["Adelie", "Chinstrap", "Gentoo"]
SHIFTED = "flipper_length_mm"
REQUESTS, RECORDS = 6, 50  # 300 rows a phase: PSI over ten bins with ~30 rows each


def training_frame(rows: int) -> pd.DataFrame:
    """Penguin-like rows, labelled by the toy model's own answers: a model that reproduces its training labels."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], rows),
            "bill_length_mm": np.round(rng.normal(44, 5, rows), 1),
            "flipper_length_mm": np.round(rng.normal(200, 14, rows)),
            "body_mass_g": np.round(rng.normal(4200, 800, rows), -1),
            "sex": rng.choice(["female", "male"], rows),
            "year": rng.choice([2007, 2008, 2009], rows),
            "penguin_id": [f"p{i}" for i in range(rows)],
        }
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_harness):
    """Version 1 registered as the pipeline registers it (its run's parameters, its training data's summary),
    in production, served by `greenlight serve` with every answered request captured."""
    tmp = tmp_path_factory.mktemp("monitoring")
    with isolated_store(tmp), pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENLIGHT_HOME", str(tmp))
        patch.setenv("PREFECT_HOME", os.environ.get("PREFECT_HOME", str(tmp / "prefect")))  # main() exports it
        spec, graph = penguins_spec(), table_onnx(penguins_spec(), 1)
        frame = training_frame(1000)
        logits = outputs(graph, spec.dataset.feeds({c: frame[c].tolist() for c in frame.columns}))
        frame["species"] = [LABELS[i] for i in logits.argmax(axis=1)]
        (tmp / "model.onnx").write_bytes(graph)
        config = RunConfig(data_path=str(tmp / "penguins.csv"), target="species", model_name=MODEL)
        params = flatten("", config.model_dump())
        run = start_tracking_run(os.environ["MLFLOW_TRACKING_URI"], "monitor-test", "train", params, {})
        tags = {"onnx_sha256": hashlib.sha256(graph).hexdigest()}
        ref = register_onnx_model(run, tmp / "model.onnx", MODEL, spec, tags, "a toy table model")
        summary = summarize(frame, "a" * 64, spec.dataset).write(tmp / "data_summary.json")
        tag_model_version(ref, {DATA_SUMMARY_TAG: log_data_summary(run, summary)})
        finish_tracking_run(run, succeeded=True)
        MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).set_registered_model_alias(
            MODEL, "production", "1"
        )
        capture = {"GREENLIGHT_CAPTURE_RATE": "1", "GREENLIGHT_CAPTURE_FILE_AGE_S": "0.5"}
        with greenlight_served(None, tmp / "serve.log", **capture) as url:
            yield {"url": url, "tmp": tmp, "frame": frame, "config": config, "ref": ref}


def captured_rows(served: dict) -> int:
    """Rows in the version's finished capture files."""
    store = CaptureStore.open(str(served["tmp"] / "capture"))
    return store.read(store.answers_folder(MODEL, "1")).rows


def send(served: dict, rows: pd.DataFrame) -> None:
    """The rows as JSON records, RECORDS a request, every one answered; then until their capture files are finished
    (closed after GREENLIGHT_CAPTURE_FILE_AGE_S)."""
    before = captured_rows(served)
    columns = [c for c in rows.columns if c != "species"]
    records = [
        {c: value.item() if hasattr(value, "item") else value for c, value in zip(columns, row, strict=True)}
        for row in rows[columns].itertuples(index=False)
    ]
    with httpx.Client(base_url=served["url"], timeout=30) as client:
        for start in range(0, len(records), RECORDS):
            answer = client.post(f"/models/{MODEL}/predict", json={"records": records[start : start + RECORDS]})
            assert answer.status_code == 200, answer.text
    assert wait_until(lambda: captured_rows(served) >= before + len(rows), 20, every_s=0.3)


def monitor(*flags: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["monitor", "--model-name", MODEL, *flags])
    return code, out.getvalue(), err.getvalue()


def drift_events() -> list[dict]:
    """greenlight.drift.detected events about version 1 that the Prefect server stored (written in batches)."""
    from prefect.client.orchestration import get_client

    query = {
        "filter": {
            "event": {"name": ["greenlight.drift.detected"]},
            "any_resource": {"id": [f"greenlight.model.{MODEL}.1"]},
        },
        "limit": 10,
    }
    with get_client(sync_client=True) as client:
        found: list[dict] = []

        def stored() -> bool:
            found[:] = client.request("POST", "/events/filter", json=query).json()["events"]
            return bool(found)

        wait_until(stored, 20, every_s=0.5)
        return found


def test_traffic_like_the_training_data_is_ok_and_one_shifted_number_is_named_and_alerted(served):
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    frame = served["frame"]
    like_training = frame.sample(REQUESTS * RECORDS, random_state=1)
    send(served, like_training)

    code, out, err = monitor("--since", "1h")
    assert code == 0, out + err
    assert f"{MODEL} v1: drift OK" in out and "300 rows from" in out, out
    assert "event        none (drift ok)" in out
    assert client.get_model_version(MODEL, "1").tags["monitor.drift_status"] == "ok"

    boundary = time.time()
    time.sleep(2.0)  # a window of whole seconds starts < 1 s after boundary (+ the command's own start-up, < 1 s)
    shifted = like_training.assign(**{SHIFTED: like_training[SHIFTED] + 3 * frame[SHIFTED].std()})
    send(served, shifted)

    window = f"{math.floor(time.time() - boundary)}s"
    code, out, err = monitor("--since", window)
    assert code == 0, out + err
    assert "300 rows from" in out, out
    features = next(line for line in out.splitlines() if line.strip().startswith("features"))
    assert features.split()[1] == SHIFTED, out
    assert "drift BLOCKING" in out or "drift WARNING" in out
    assert "event        greenlight.drift.detected sent to the Prefect server at" in out

    tags = client.get_model_version(MODEL, "1").tags
    assert tags["monitor.drift_status"] in ("warning", "blocking") and tags["monitor.rows"] == "300"
    assert tags["monitor.worst_features"].startswith(SHIFTED) and tags["monitor.report"].endswith("report.html")
    shown = io.StringIO()
    with redirect_stdout(shown):
        assert main(["show", "1", "--model-name", MODEL]) == 0
    assert f"live drift    {tags['monitor.drift_status']} at " in shown.getvalue()
    page = served["tmp"] / "runs"
    (html,) = [p for p in sorted(page.glob("monitor-*/report.html"))][-1:]
    assert SHIFTED in html.read_text() and "<svg" in html.read_text()
    model_id = version_model_id(served["ref"])  # the logged model the version was registered from
    assert {m.key for m in client.get_logged_model(model_id).metrics} >= {"max_feature_psi", "label_psi", "rows"}

    (event, *_) = drift_events()
    payload = event["payload"]
    assert payload["status"] == tags["monitor.drift_status"] and payload["rows"] == 300
    assert payload["worst_features"][0]["name"] == SHIFTED and payload["report"] == tags["monitor.report"]
    assert RunConfig.model_validate(payload["config"]) == served["config"]


def test_the_scheduled_flow_checks_every_production_model_and_leaves_prefect_artifacts(served):
    """The monitoring deployment's flow with its empty parameters' defaults (every production model), over the
    last hour's captured traffic: the check recorded as by the command, and its summary and link in the Prefect UI."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.monitoring import model_monitoring

    send(served, served["frame"].sample(REQUESTS * RECORDS, random_state=2))
    (recorded,) = [r for r in model_monitoring(config=MonitorConfig(since_hours=1)) if r.check.model == MODEL]
    assert recorded.check.rows >= REQUESTS * RECORDS and recorded.page.is_file()
    with get_client(sync_client=True) as client:
        keys = ArtifactFilter(key=ArtifactFilterKey(any_=["live-drift", "live-drift-report"]))
        found = {a.key: a for a in client.read_artifacts(artifact_filter=keys)}
    assert f"## Live drift of {MODEL} v1" in found["live-drift"].data
    assert found["live-drift-report"].data == f"[report.html]({recorded.report_link})"  # a link artifact's form


def test_bad_input_is_one_line_and_records_nothing(served):
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("monitoring")
    before = len(client.search_runs([experiment.experiment_id])) if experiment else 0
    code, out, err = monitor("--version", "9")
    assert code == 1 and f"'{MODEL}' has no version 9" in err and "(versions: 1)" in err
    code, out, err = monitor("--since", "yesterday")
    assert code == 1 and "--since 'yesterday': give a window like 24h, 90m or 7d" in err
    experiment = client.get_experiment_by_name("monitoring")
    assert (len(client.search_runs([experiment.experiment_id])) if experiment else 0) == before
