"""Fixtures the integration modules share."""

import pytest


@pytest.fixture(scope="module")
def prefect_harness():
    """A temporary Prefect server and database for one test module's flow runs."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
