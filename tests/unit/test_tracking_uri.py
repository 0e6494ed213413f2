"""fluent_tracking_uri leaves MLflow's fluent API as it found it: a store used for one command must not stay
pinned for the next (a test module, or a command in the same process, with another MLFLOW_TRACKING_URI)."""

import mlflow

from tasks.registry.client import fluent_tracking_uri


def test_the_fluent_uri_follows_the_variable_again_after_the_block(monkeypatch, tmp_path):
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)
    with fluent_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}"):
        assert mlflow.get_tracking_uri().endswith("elsewhere.db")
    assert mlflow.get_tracking_uri() == first
    monkeypatch.setenv("MLFLOW_TRACKING_URI", second)  # the next module's store
    assert mlflow.get_tracking_uri() == second
