"""The pre-promotion probe sends what the candidate service will require: the same key, from the same variables."""

from pathlib import Path

import pytest

from tasks.core.keys import SettingsRejected
from tasks.release.serving_check import client_headers


def test_the_probe_sends_the_key_from_a_mounted_secret_file(tmp_path: Path, monkeypatch) -> None:
    secret = tmp_path / "api-key"
    secret.write_text("gl-mounted-secret-7d1e\n")
    monkeypatch.delenv("GREENLIGHT_API_KEY", raising=False)
    monkeypatch.setenv("GREENLIGHT_API_KEY_FILE", str(secret))
    assert client_headers() == {"Authorization": "Bearer gl-mounted-secret-7d1e"}
    monkeypatch.setenv("GREENLIGHT_API_KEY", "the-variable-loses")  # the service reads the file first too
    assert client_headers() == {"Authorization": "Bearer gl-mounted-secret-7d1e"}


def test_an_unreadable_key_file_is_named_instead_of_failing_every_candidate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GREENLIGHT_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsRejected, match=r"GREENLIGHT_API_KEY_FILE=.*missing cannot be read"):
        client_headers()


def test_without_a_key_nothing_is_sent(monkeypatch) -> None:
    monkeypatch.delenv("GREENLIGHT_API_KEY", raising=False)
    monkeypatch.delenv("GREENLIGHT_API_KEY_FILE", raising=False)
    assert client_headers() == {}


def test_only_transient_failures_are_retried() -> None:
    import httpx

    from tasks.core.errors import ConfigRejected, DataRejected, is_transient, transient_only
    from tasks.registry.tracking import open_tracking_run, register_model

    class OperationalError(Exception):  # sqlalchemy's name for a database that is locked or gone
        pass

    assert is_transient(httpx.ConnectError("Connection refused"))
    assert is_transient(ConnectionResetError())
    assert is_transient(RuntimeError("API request failed: Max retries exceeded with url /api/2.0/mlflow/runs/get"))
    wrapped = RuntimeError("could not log the batch")
    wrapped.__cause__ = OperationalError("database is locked")
    assert is_transient(wrapped)
    for user_error in (
        DataRejected("column 'x' is missing"),
        ConfigRejected("bad"),
        ValueError("a bug"),
        KeyError("k"),
    ):
        assert not is_transient(user_error)
    for stage in (open_tracking_run, register_model):
        assert stage.retries == 2 and stage.retry_condition_fn is transient_only
