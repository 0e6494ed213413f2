"""Fixtures the integration modules share."""

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and database for the session's flow runs (one start, ~10 s, not one per
    module); modules keep apart by their model names."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
