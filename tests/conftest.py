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
# Idle OpenMP threads (torch's) sleep instead of spinning: servers, subprocesses and training share 2 cores here, and
# spinning threads took ~40 % of the cores from the others (a pruning test: 29 s -> 21 s beside two busy processes;
# no change on an idle machine). Before torch is imported, which reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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


@pytest.fixture(scope="session")
def triton_model_config():
    """Triton's model-config schema (model_config.proto) as the protobuf module tritonclient ships, loaded by path:
    tritonclient's grpc package imports grpcio, which is not installed; the schema needs only protobuf."""
    import importlib.util

    import tritonclient

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
