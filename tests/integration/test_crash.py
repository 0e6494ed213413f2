"""kill -9 of `greenlight run` at any moment, as a supervisor or an OOM killer does it: nothing is left that looks
finished or keeps running, the next look marks what the dead run left, and a rerun finishes reusing what is done.

The runs are child processes with their own stores under a temporary folder (a kill must not touch the
session's stores), and each waits for a moment in the pipeline before it is killed.
"""

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from tasks.core.retry import wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# Long enough to be killed mid-training; early stopping ends it sooner when a rerun trains for real.
ARGS = ["--max-epochs", "400"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("crash-home")


def environment(home: Path) -> dict[str, str]:
    stores = {
        "GREENLIGHT_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PREFECT_HOME": str(home / "prefect"),
        "BENTOML_HOME": str(home / "bentoml"),
        "PYTHONPATH": str(ROOT),
    }
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}, **stores}


def run_command(home: Path, model: str) -> list[str]:
    """`greenlight run` for model; serving latency and smaller models are not what these tests are about (a busy
    machine; no pruning or distillation, which a rerun would otherwise redo)."""
    config = home / "relaxed-latency.yaml"
    config.write_text(
        "gate: {serving: {max_p99_latency_ms: 5000}}\n"
        "compression: {pruning: {levels: []}, distillation: {enabled: false}}\n"
    )
    return [sys.executable, "-m", "deployments.cli", "run", "--model-name", model, "--config", str(config), *ARGS]


def start_run(home: Path, model: str, log: Path) -> subprocess.Popen:
    command = run_command(home, model)
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=environment(home), stdout=out, stderr=subprocess.STDOUT)


def kill_when(run: subprocess.Popen, ready: Callable[[], bool], timeout_s: float = 240) -> list[psutil.Process]:
    """kill -9 the run once ready() holds; returns the processes it had started at that moment."""

    def reached() -> bool:
        if ready():
            return True
        assert run.poll() is None, "the run ended before the moment it was to be killed at"
        return False

    assert wait_until(reached, timeout_s, every_s=0.2), "the run never reached the moment it was to be killed at"
    started = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    return started


def assert_all_stopped(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, f"outlived the killed run: {[' '.join(p.cmdline())[:120] for p in alive]}"


def flow_run_state(home: Path, flow_run_id: str) -> str:
    with sqlite3.connect(home / "prefect" / "prefect.db") as db:
        return db.execute("select state_type from flow_run where id = ?", (flow_run_id,)).fetchone()[0]


def test_killed_mid_training_leaves_nothing_running_and_the_rerun_reuses_the_validation(home, tmp_path):
    model = "crash-training"
    log = tmp_path / "killed.log"
    started = kill_when(start_run(home, model, log), lambda: b"training image_cnn" in log.read_bytes())
    assert_all_stopped(started)  # Prefect's temporary server among them

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    (killed,) = client.search_runs([client.get_experiment_by_name("greenlight").experiment_id])
    assert killed.info.status == "RUNNING"  # what the dead run left: found and marked by the rerun
    assert client.search_model_versions(f"name = '{model}'") == []

    rerun = subprocess.run(
        run_command(home, model),
        cwd=ROOT,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-6000:]
    assert f"marked MLflow run {killed.info.run_id} KILLED" in output
    finished = {
        line.split("Task run '")[1].split("-")[0]: line
        for line in output.splitlines()
        if "Finished in" in line and "Task run '" in line
    }
    assert "Cached" in finished["validate_dataset"]  # done before the kill and still valid: not redone
    assert "Completed()" in finished["train_model"]  # never finished before: trained now
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    assert flow_run_state(home, killed.data.tags["prefect_flow_run_id"]) == "CRASHED"
    assert client.get_registered_model(model).aliases == {"production": 1}


def test_killed_mid_build_leaves_an_abandoned_version_that_nothing_can_promote(home, tmp_path, capsys):
    from deployments.cli import main

    model = "crash-build"
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")

    def registered() -> bool:
        try:
            return bool(client.search_model_versions(f"name = '{model}'"))
        except Exception:  # the store is being created by the run
            return False

    started = kill_when(start_run(home, model, tmp_path / "killed.log"), registered)
    assert_all_stopped(started)  # the bento build (or the candidate server) went with it
    assert client.get_model_version(model, "1").tags["gate_verdict"] == "pending"

    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment(home).items():
            patch.setenv(key, value)
        assert main(["status", "--model-name", model]) == 0
        assert f"marked models:/{model}/1 abandoned" in capsys.readouterr().out
        assert main(["promote", "1", "--model-name", model, "--reason", "try anyway"]) == 1
        assert "has no gate verdict (abandoned" in capsys.readouterr().err
    tags = client.get_model_version(model, "1").tags
    assert tags["gate_verdict"] == "abandoned" and "died before the gate decided" in tags["gate_reason"]
    assert "production" not in client.get_registered_model(model).aliases
    assert client.get_run(client.get_model_version(model, "1").run_id).info.status == "KILLED"
