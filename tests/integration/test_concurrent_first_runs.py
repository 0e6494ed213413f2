"""Two `greenlight run` started at the same moment on a fresh GREENLIGHT_HOME both finish: one process at a time
creates the MLflow store's tables (and Prefect's database), where before each migrated the empty database at once
and one died on the other's tables ("table _alembic_tmp_experiments already exists") or was saved only by retries.

The runs are child processes with their own stores under a temporary folder, trained for one epoch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# What the other's half-made tables looked like before (MLflow's migrations; Prefect's temporary server).
RACE_SIGNS = ("already exists", "Timed out while attempting to connect to ephemeral Prefect API server")


def first_run(home: Path, model: str, log: Path) -> subprocess.Popen:
    """`greenlight run` of one epoch; serving latency and smaller models are not what this test is about."""
    config = home.parent / "one-epoch.yaml"
    config.write_text(
        "gate: {serving: {max_p99_latency_ms: 5000}}\n"
        "compression: {pruning: {levels: []}, distillation: {enabled: false}}\n"
    )
    command = [sys.executable, "-m", "deployments.cli", "run", "--model-name", model, "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "BENTOML_"))}
    env |= {"GREENLIGHT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        return subprocess.Popen([*command, "--max-epochs", "1"], cwd=ROOT, env=env, stdout=out, stderr=out)


def test_two_first_runs_at_once_on_a_fresh_store_both_finish(tmp_path):
    home = tmp_path / "home"
    runs = {model: first_run(home, model, tmp_path / f"{model}.log") for model in ("first-a", "first-b")}
    for model, run in runs.items():
        run.wait(timeout=900)
        output = (tmp_path / f"{model}.log").read_text()
        assert run.returncode == 0, output[-6000:]
        assert f"Registered        models:/{model}/1" in output
        assert not [sign for sign in RACE_SIGNS if sign in output], output[:6000]
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "greenlight"]
    assert {r.info.status for r in client.search_runs([experiment.experiment_id])} == {"FINISHED"}
    assert {m: client.get_registered_model(m).aliases for m in runs} == {m: {"production": 1} for m in runs}
