"""A command whose temporary Prefect server does not start in time prints one line and exits 1 (a busy machine
made `greenlight rollback` die with Prefect's RuntimeError and its traceback); other RuntimeErrors are bugs and keep
theirs. Every command gives the temporary server the run's allowance instead of Prefect's 20 s."""

import os
from pathlib import Path

import pytest

import deployments.cli as cli

TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main() exports the store variables: all restored after the test."""
    for name in ("BENTOML_HOME", "PREFECT_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(name, os.environ[name])
    monkeypatch.setenv("GREENLIGHT_HOME", str(tmp_path))
    monkeypatch.delenv(TIMEOUT, raising=False)


def test_a_temporary_server_that_never_answers_is_one_line_and_exit_1(environment, monkeypatch, capsys) -> None:
    def never_answers(args, locations):
        assert os.environ[TIMEOUT] == str(cli.PREFECT_START_TIMEOUT_S)
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    monkeypatch.setattr(cli, "command_keygen", never_answers)
    assert cli.main(["keygen"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("greenlight keygen: Prefect's temporary server did not answer within 120 s")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_another_runtime_error_is_a_bug_and_keeps_its_traceback(environment, monkeypatch) -> None:
    def broken(args, locations):
        raise RuntimeError("something else")

    monkeypatch.setattr(cli, "command_keygen", broken)
    with pytest.raises(RuntimeError, match="something else"):
        cli.main(["keygen"])
