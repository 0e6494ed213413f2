"""A run killed with -9 leaves its Prefect flow run Running; the first command that looks (`greenlight status`
here; `show` and `history` run the same recovery) marks it Crashed, saying the process is gone, and says so.
Before, only the next `greenlight run` marked it, and only if no `status` had looked first.

The run and the commands are child processes with their own stores (test_crash.py's helpers)."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_crash import ROOT, environment, flow_run_state, kill_when, start_run

pytestmark = pytest.mark.slow


def greenlight(home: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deployments.cli", *args]
    return subprocess.run(command, cwd=ROOT, env=environment(home), capture_output=True, text=True, timeout=300)


def flow_run_message(home: Path, flow_run_id: str) -> str:
    with sqlite3.connect(home / "prefect" / "prefect.db") as db:
        query = "select s.message from flow_run f join flow_run_state s on s.id = f.state_id where f.id = ?"
        return db.execute(query, (flow_run_id,)).fetchone()[0]


def test_status_marks_the_flow_run_of_a_killed_run_crashed(tmp_path):
    home, model, log = tmp_path / "home", "crashed-flow-run", tmp_path / "killed.log"
    home.mkdir()
    kill_when(start_run(home, model, log), lambda: b"training image_cnn" in log.read_bytes())
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    (killed,) = client.search_runs([client.get_experiment_by_name("greenlight").experiment_id])
    flow_run_id = killed.data.tags["prefect_flow_run_id"]
    assert flow_run_state(home, flow_run_id) == "RUNNING"  # what the dead run left

    status = greenlight(home, "status", "--model-name", model)
    assert status.returncode == 0, status.stdout + status.stderr
    assert flow_run_state(home, flow_run_id) == "CRASHED"
    assert "found by `greenlight status`" in flow_run_message(home, flow_run_id)
    assert "is gone" in flow_run_message(home, flow_run_id)
    (marked,) = [line for line in status.stdout.splitlines() if "Prefect flow run" in line]
    assert f"({flow_run_id}) Crashed (was Running)" in marked
    assert client.get_run(killed.info.run_id).info.status == "KILLED"

    again = greenlight(home, "history", "--model-name", model)  # found and marked once: nothing more to say
    assert again.returncode == 0 and "marked" not in again.stdout, again.stdout + again.stderr
