"""Stores as users meet them: a mistyped location, a server that is down, a data folder moved elsewhere.

Each command answers within seconds with the address and what to do, and leaves nothing behind.
"""

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from deployments.cli import main


@pytest.fixture
def stores(tmp_path, monkeypatch) -> Path:
    """Point every store at tmp_path/home (which does not exist yet)."""
    home = tmp_path / "home"
    monkeypatch.setenv("GREENLIGHT_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.setenv("BENTOML_HOME", str(home / "bentoml"))
    monkeypatch.setenv("PREFECT_HOME", str(home / "prefect"))
    return home


@pytest.mark.parametrize("command", [["status"], ["history"], ["show", "1"], ["serve"], ["rollback"]])
def test_read_commands_on_a_mistyped_store_say_nothing_is_there_and_create_nothing(stores, capsys, command):
    assert main(command) == 1
    assert f"nothing is registered at sqlite:///{stores / 'mlflow.db'}" in capsys.readouterr().err
    assert not stores.exists()


def test_a_missing_data_file_is_refused_before_any_store_is_touched(stores, tmp_path, capsys):
    assert main(["run", "--data", str(tmp_path / "nope.csv")]) == 2
    assert f"data file {tmp_path / 'nope.csv'} does not exist" in capsys.readouterr().err
    assert not stores.exists()


@pytest.mark.parametrize(
    "variable, value, what",
    [
        ("MLFLOW_TRACKING_URI", "http://127.0.0.1:9", "the MLflow tracking server at http://127.0.0.1:9"),
        ("PREFECT_API_URL", "http://127.0.0.1:9/api", "the Prefect API at http://127.0.0.1:9/api"),
    ],
)
def test_a_server_that_does_not_answer_is_named_and_nothing_starts(stores, monkeypatch, capsys, variable, value, what):
    monkeypatch.setenv(variable, value)
    assert main(["run"]) == 1
    message = capsys.readouterr().err
    assert what in message and "does not answer" in message and f"point {variable}" in message
    assert not stores.exists()


def test_a_moved_store_stops_with_what_to_do_and_relocate_makes_it_work(tmp_path, monkeypatch, capsys):
    old, new = tmp_path / "old-home", tmp_path / "restored-home"
    old.mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{old / 'mlflow.db'}")
    experiment = client.create_experiment("greenlight", artifact_location=(old / "mlartifacts").as_uri())
    run = client.create_run(experiment)
    (tmp_path / "report.txt").write_text("kept across the move")
    client.log_artifact(run.info.run_id, str(tmp_path / "report.txt"))
    client.set_terminated(run.info.run_id)
    shutil.move(old, new)
    monkeypatch.setenv("GREENLIGHT_HOME", str(new))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{new / 'mlflow.db'}")

    assert main(["run"]) == 1
    message = capsys.readouterr().err
    assert f"records its artifacts under {old / 'mlartifacts'}, which does not exist" in message
    assert f"greenlight relocate --from {old}" in message
    assert not old.exists()  # nothing re-created at the old place

    assert main(["relocate", "--from", str(old)]) == 0
    moved = MlflowClient(tracking_uri=f"sqlite:///{new / 'mlflow.db'}")
    local = moved.download_artifacts(run.info.run_id, "report.txt", str(tmp_path))
    assert Path(local).read_text() == "kept across the move"
    assert moved.get_experiment(experiment).artifact_location == (new / "mlartifacts").as_uri()
    assert main(["status"]) == 0 and not old.exists()


def test_an_unusable_signing_key_is_refused_before_anything_is_trained(stores, tmp_path, monkeypatch, capsys):
    key = tmp_path / "signing.pem"
    key.write_text("not a key\n")
    monkeypatch.setenv("GREENLIGHT_SIGNING_KEY_FILE", str(key))
    assert main(["run"]) == 1
    assert f"GREENLIGHT_SIGNING_KEY_FILE={key} is not an unencrypted PEM private key" in capsys.readouterr().err
    assert not stores.exists()
