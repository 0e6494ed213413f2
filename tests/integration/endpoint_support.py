"""What the endpoint tests share: toy ONNX models registered the way the pipeline registers them
(checksum tag included) in a tmp MLflow store, bentos built from them, and servers started from the bentos.

Not a test module: test_bento_service.py and test_endpoint_*.py import it.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import mlflow
import mlflow.onnx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mlflow import MlflowClient
from onnx import TensorProto, helper, numpy_helper

from bentos.serve import serve_environment, start_server, wait_until_ready
from tasks.core.schema import N_CLASSES, N_FEATURES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, PIXEL_MAX

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "digits-classifier"


@dataclass(frozen=True)
class Built:
    """One registered version, the ONNX model behind it and the bento built for it."""

    version: str
    onnx_model: bytes
    bento_tag: str
    model_tag: str


def linear_onnx(seed: int) -> bytes:
    """A random Gemm 64 -> 10 with the pipeline's input/output names and a dynamic batch axis, serialized."""
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(0, 0.1, (N_FEATURES, N_CLASSES)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(0, 1, N_CLASSES).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Gemm", [ONNX_INPUT_NAME, "W", "B"], [ONNX_OUTPUT_NAME])],
        "digits_linear",
        [helper.make_tensor_value_info(ONNX_INPUT_NAME, TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info(ONNX_OUTPUT_NAME, TensorProto.FLOAT, ["batch", N_CLASSES])],
        [weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any onnxruntime the pipeline pins
    onnx.checker.check_model(model)
    return model.SerializeToString()


def register_onnx(tmp: Path, onnx_model: bytes, checksum: bool = True) -> str:
    """Register one ONNX model as the pipeline does (one .onnx file, onnx_sha256 tag); its version.

    Through an explicit client only: the fluent API's global tracking URI would leak into other tests."""
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("endpoint-test")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment("endpoint-test", artifact_location=(tmp / "artifacts").as_uri())
    )
    run = client.create_run(experiment_id)
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory) / "model"
        mlflow.onnx.save_model(
            onnx.load_from_string(onnx_model),
            local,
            save_as_external_data=False,
            onnx_execution_providers=["CPUExecutionProvider"],
        )
        client.log_artifacts(run.info.run_id, str(local), "model")
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(MODEL_NAME)
    except mlflow.exceptions.MlflowException:
        pass  # registered by an earlier call
    created = client.create_model_version(MODEL_NAME, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    version = str(created.version)
    if checksum:
        client.set_model_version_tag(MODEL_NAME, version, "onnx_sha256", hashlib.sha256(onnx_model).hexdigest())
    return version


def registered_onnx_file(version: str) -> Path:
    """The .onnx file in the artifact store that a registered version points to (to tamper with it)."""
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    run_id = client.get_model_version(MODEL_NAME, version).run_id
    return next(Path(urlparse(client.get_run(run_id).info.artifact_uri).path, "model").rglob("*.onnx"))


def stored_model_dir(tmp: Path, model_tag: str) -> Path:
    """Where the BentoML store under tmp keeps a model (read from disk: BentoML's in-process store
    remembers the first BENTOML_HOME it saw, and each test module has its own)."""
    name, version = model_tag.split(":")
    return tmp / "bentoml" / "models" / name / version


def set_alias(version: str) -> None:
    MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).set_registered_model_alias(
        MODEL_NAME, "production", version
    )


def run_build(version: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the build exactly as the pipeline does, as a subprocess (env already points at tmp)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "bentos.build", "--model-name", MODEL_NAME, "--model-version", version]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def build(tmp: Path, onnx_model: bytes) -> Built:
    """Register one model and build its bento; the build must succeed."""
    version = register_onnx(tmp, onnx_model)
    completed = run_build(version, cwd=tmp)
    assert completed.returncode == 0, completed.stderr
    tags = json.loads(completed.stdout)
    return Built(version, onnx_model, tags["bento_tag"], tags["model_tag"])


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reference(onnx_model: bytes, rows: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Labels and softmax probabilities straight from onnxruntime, without the service."""
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    (logits,) = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: rows.astype(np.float32)})
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits.argmax(axis=1).tolist(), exp / exp.sum(axis=1, keepdims=True)


def sample_rows(count: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, PIXEL_MAX + 1, size=(count, N_FEATURES))


@contextmanager
def isolated_store(tmp: Path) -> Iterator[Path]:
    """Fresh MLflow and BentoML stores under tmp, and tmp as cwd."""
    with pytest.MonkeyPatch.context() as patch:
        # Servers must run from the bento alone: neither the repo on sys.path nor in the cwd.
        patch.delenv("PYTHONPATH", raising=False)
        patch.delenv("GREENLIGHT_API_KEY", raising=False)
        patch.chdir(tmp)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        patch.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        patch.setenv("BENTOML_DO_NOT_TRACK", "true")
        patch.setenv("MLFLOW_ENABLE_TELEMETRY", "false")
        yield tmp


@dataclass
class RunningServer:
    """A `bentoml serve` child process, its URL and its log file."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@contextmanager
def serving(
    bento_tag: str, log_path: Path, follow: str | None = None, ready: bool = True, **env: str
) -> Iterator[RunningServer]:
    """Serve a bento on a free port with extra environment; wait for /readyz unless ready=False; stop after."""
    port = free_port()
    with log_path.open("wb") as log:
        process = start_server(bento_tag, port=port, env=serve_environment(follow_alias=follow, **env), log=log)
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        if ready:
            wait_until_ready(process, server.url, timeout_s=90)
        else:
            wait_until_answering(process, server.url)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_answering(process: subprocess.Popen[bytes], url: str, timeout_s: float = 90) -> None:
    """Until /healthz answers: the service is up, ready or not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"bentoml serve exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}/healthz did not answer within {timeout_s:.0f} s")
