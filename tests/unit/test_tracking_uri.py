"""fluent_tracking_uri leaves MLflow's fluent API as it found it: a store used for one command must not stay
pinned for the next (a test module, or a command in the same process, with another MLFLOW_TRACKING_URI)."""

import threading

import mlflow
from mlflow.tracking._tracking_service import utils

from tasks.registry.client import fluent_tracking_uri


def test_the_fluent_uri_follows_the_variable_again_after_the_block(monkeypatch, tmp_path):
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setattr(utils, "_tracking_uri", None)  # as a fresh process finds it, whatever ran here before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)
    with fluent_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}"):
        assert mlflow.get_tracking_uri().endswith("elsewhere.db")
    assert mlflow.get_tracking_uri() == first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", second)  # the next module's store
    assert mlflow.get_tracking_uri() == second


def test_blocks_in_two_threads_do_not_pin_a_store(monkeypatch, tmp_path):
    """Two threads' blocks (Prefect tasks in a thread pool, a poll beside a command) leave the setting unset."""
    monkeypatch.setattr(utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a.db'}")
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with fluent_tracking_uri(f"sqlite:///{tmp_path / 'a.db'}"):
            inside.set()
            leave.wait(5)

    other = threading.Thread(target=hold)
    other.start()
    inside.wait(5)
    threading.Timer(0.2, leave.set).start()  # the other block ends while this one waits for its turn
    with fluent_tracking_uri(f"sqlite:///{tmp_path / 'b.db'}"):
        assert mlflow.get_tracking_uri().endswith("b.db")
    other.join(5)
    assert utils._tracking_uri is None
