"""Test-wide isolation: every store (MLflow, BentoML, Prefect, data) lives in a temporary folder.

Set at import, before any test module imports Prefect, which reads PREFECT_HOME when imported.
"""

import os
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="greenlight-tests-"))
os.environ["GREENLIGHT_HOME"] = str(_HOME)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_HOME / 'mlflow.db'}"
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ.pop("PREFECT_API_URL", None)  # never talk to a developer's running server
for key, value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_TELEMETRY": "false",
}.items():
    os.environ[key] = value


@pytest.fixture(scope="session")
def greenlight_home() -> Path:
    return _HOME
