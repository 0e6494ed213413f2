"""`greenlight feedback` on a registered model's captured answers (files written by bentos.capture.Capture from real
parsed requests, on two UTC days): labels fed back become live accuracy on the version (its tags, the metric history
of the monitoring run and of the version's logged model); wrong labels for most of a day, sent later, win over the
first ones and send greenlight.performance.dropped, read back from the Prefect server; a bad file keeps nothing."""

import io
import json
import os
import re
import time
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta

import pytest
from endpoint_support import isolated_store, penguins_spec, table_onnx
from mlflow import MlflowClient

from bentos.capture import Capture, CaptureSettings, Sample
from deployments.cli import main
from tasks.core.capture_store import CaptureStore
from tasks.core.contract import compile_contract
from tasks.onnx.runtime import open_session
from tasks.onnx.verified import ServedModel
from tasks.registry.client import finish_tracking_run, register_onnx_model, start_tracking_run

pytestmark = pytest.mark.slow  # a registry, capture files and the Prefect harness; about 15 s

MODEL = "penguins-feedback"
DAY = 86_400
ISLANDS, SEXES, YEARS = ["Biscoe", "Dream", "Torgersen"], ["female", "male", None], [2007, 2008, 2009]


def record(n: int) -> dict:
    """A penguin as a client sends it; n varies every field."""
    return {
        "island": ISLANDS[n % 3],
        "bill_length_mm": 33.0 + (n * 7) % 26,
        "flipper_length_mm": 173 + (n * 11) % 58,
        "body_mass_g": 2800 + (n * 131) % 3400,
        "sex": SEXES[n % 3],
        "year": YEARS[(n // 3) % 3],
    }


@pytest.fixture(scope="module")
def captured(tmp_path_factory, prefect_harness) -> dict:
    """Version 1 registered as the pipeline registers it (a logged model, test_accuracy 0.95), and its answers to
    40 one-record requests yesterday and 40 today plus one of three records, captured by Capture itself."""
    tmp = tmp_path_factory.mktemp("feedback")
    with isolated_store(tmp), pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENLIGHT_CAPTURE_DIR", str(tmp / "capture"))
        patch.setenv("GREENLIGHT_HOME", str(tmp / "home"))
        spec, graph = penguins_spec(), table_onnx(penguins_spec(), 3)
        (tmp / "model.onnx").write_bytes(graph)
        run = start_tracking_run(os.environ["MLFLOW_TRACKING_URI"], "feedback-test", "register", {}, {})
        tags = {"task": "classification", "test_accuracy": "0.950000"}
        ref = register_onnx_model(run, tmp / "model.onnx", MODEL, spec, tags, "a toy table model")
        finish_tracking_run(run, succeeded=True)
        model = ServedModel(MODEL, ref.version, "", open_session(graph), compile_contract(spec.dataset))
        capture = Capture(CaptureSettings(rate=1.0, folder=tmp / "capture"))
        now = time.time()
        for n in range(81):
            records = [record(n), record(n + 100), record(n + 200)] if n == 80 else [record(n)]
            batch = model.contract.parse(json.dumps({"records": records}).encode())
            if n < 40:  # yesterday's requests: the sample as keep() makes it, a day earlier
                outputs = model.predict(batch)
                sample = Sample(MODEL, ref.version, f"y-{n}", now - DAY, model.contract, batch.feeds, outputs)
                capture.pending.append(sample)
            else:
                capture.keep(model, f"t-{n}", batch.feeds, model.predict(batch))
        capture.close()
        store = CaptureStore.open(str(tmp / "capture"))
        answers = store.read(store.answers_folder(MODEL, ref.version)).table
        predicted = {(r["request_id"], r["row"]): r["prediction"] for r in answers.to_pylist()}
        yield {"tmp": tmp, "ref": ref, "predicted": predicted, "today": datetime.fromtimestamp(now, UTC).date()}


def feedback(path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["feedback", "--model-name", MODEL, "--data", str(path)])
    return code, out.getvalue(), err.getvalue()


def other_label(label: str) -> str:
    return next(name for name in ("Adelie", "Chinstrap", "Gentoo") if name != label)


def labels_folder_files(captured) -> list:
    folder = captured["tmp"] / "capture" / MODEL / "labels"
    return sorted(folder.iterdir()) if folder.exists() else []


def drop_events(version: str) -> list[dict]:
    """greenlight.performance.dropped events about the version the Prefect server stored (it writes them in
    batches: polled for a while)."""
    from prefect.client.orchestration import get_client

    query = {
        "filter": {
            "event": {"name": ["greenlight.performance.dropped"]},
            "any_resource": {"id": [f"greenlight.model.{MODEL}.{version}"]},
        },
        "limit": 10,
    }
    deadline = time.monotonic() + 20
    with get_client(sync_client=True) as client:
        while True:
            events = client.request("POST", "/events/filter", json=query).json()["events"]
            if events or time.monotonic() > deadline:
                return events
            time.sleep(0.5)


def test_labels_become_live_accuracy_and_a_planted_drop_sends_the_event(captured):
    tmp, ref, predicted, today = captured["tmp"], captured["ref"], captured["predicted"], captured["today"]
    rows = ["request_id,row,species"] + [f"{rid},{row},{label}" for (rid, row), label in sorted(predicted.items())]
    rows += [f"never-captured-{n},0,Adelie" for n in range(5)]  # capture is a sample: these match nothing
    (tmp / "week.csv").write_text("\n".join(rows) + "\n")
    code, out, err = feedback(tmp / "week.csv")
    assert code == 0, out + err
    assert "labels kept in all: 88 (from 1 file(s)); matched to captured answers: 83; never captured: 5" in out
    assert re.search(rf"{today - timedelta(days=1)} +40 +1\.0000 +\+0\.0500\n", out) and "no drop" in out

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    tags = client.get_model_version(MODEL, ref.version).tags
    assert (tags["live.accuracy"], tags["live.labels"]) == ("1.000000", "83")
    assert tags["live.report"].endswith("feedback/live_accuracy.png")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("monitoring").experiment_id], "tags.kind = 'feedback'", max_results=5
    )
    assert (run.data.tags["model"], run.data.tags["version"]) == (MODEL, ref.version)
    history = sorted(client.get_metric_history(run.info.run_id, "live_accuracy"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [
        ((today - timedelta(days=1)).toordinal(), 1.0),
        (today.toordinal(), 1.0),
    ]
    assert datetime.fromtimestamp(history[-1].timestamp / 1000, UTC).date() == today
    # The version's logged model (a SQL registry names it only in the source, models:/<model id>) lists them too.
    model_id = client.get_model_version(MODEL, ref.version).source.removeprefix("models:/")
    assert {m.key for m in client.get_logged_model(model_id).metrics} >= {"live_accuracy", "live_labels"}

    # A week later the true labels of most of today's requests turn out to be otherwise: the later file wins.
    wrong = [(rid, row, other_label(label)) for (rid, row), label in sorted(predicted.items()) if rid.startswith("t-")]
    (tmp / "corrections.csv").write_text(
        "request_id,row,label\n" + "".join(f"{rid},{row},{label}\n" for rid, row, label in wrong[:30])
    )
    code, out, err = feedback(tmp / "corrections.csv")
    assert code == 0, out + err
    assert f"DROP: live accuracy 0.3023 on {today} (43 labelled rows) is below the limit 0.9000" in out
    assert "event greenlight.performance.dropped sent to" in out
    (event,) = drop_events(ref.version)  # one: the first feedback run sent none
    assert event["payload"] == {
        "model": MODEL,
        "version": ref.version,
        "metric": "accuracy",
        "day": today.isoformat(),
        "live": pytest.approx(13 / 43, abs=1e-6),
        "test": 0.95,
        "labelled_rows": 43,
        "threshold": 0.9,
        "max_accuracy_drop": 0.05,
    }
    assert client.get_model_version(MODEL, ref.version).tags["live.accuracy"] == f"{13 / 43:.6f}"


def test_a_bad_labels_file_is_refused_and_nothing_is_kept(captured):
    tmp, before = captured["tmp"], labels_folder_files(captured)
    (tmp / "bad.csv").write_text("request_id,species\nt-41,Gentoo\nt-42,Emperor\n")
    code, out, err = feedback(tmp / "bad.csv")
    assert code == 1 and out == ""
    assert f"{tmp / 'bad.csv'}, column 'species': 1 label(s) the model never knew at line 3 ('Emperor')" in err
    assert labels_folder_files(captured) == before
