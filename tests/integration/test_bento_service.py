"""The serving bento end to end: register ONNX models in a tmp MLflow store, build, serve by tag, call HTTP."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import mlflow.onnx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from mlflow.models import infer_signature
from onnx import TensorProto, helper, numpy_helper

from bentos.serve import start_server, wait_until_ready
from tasks.schema import N_CLASSES, N_FEATURES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, PIXEL_MAX

pytestmark = pytest.mark.slow  # starts two BentoML servers

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "digits-classifier"
VERSIONS = ("1", "2")


@dataclass(frozen=True)
class Built:
    """One registered version, the ONNX model behind it and the bento built for it."""

    version: str
    onnx_model: bytes
    bento_tag: str
    model_tag: str


def linear_onnx(seed: int) -> onnx.ModelProto:
    """A random Gemm 64 -> 10 with the pipeline's input/output names and a dynamic batch axis."""
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
    return model


def register_versions(tmp: Path, tracking_uri: str) -> list[bytes]:
    """Log and register one model per entry of VERSIONS; return each version's ONNX bytes."""
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        experiment_id = mlflow.create_experiment("bento-test", artifact_location=(tmp / "artifacts").as_uri())
        example = np.zeros((2, N_FEATURES), np.float32)
        signature = infer_signature(example, np.zeros((2, N_CLASSES), np.float32))
        models = [linear_onnx(seed) for seed in range(len(VERSIONS))]
        # Serialized first: log_model moves the weights of the model object it is given to external data.
        serialized = [model.SerializeToString() for model in models]
        for model in models:
            with mlflow.start_run(experiment_id=experiment_id):
                mlflow.onnx.log_model(model, name="model", registered_model_name=MODEL_NAME, signature=signature)
        return serialized
    finally:
        mlflow.set_tracking_uri(previous_uri)


def run_build(version: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the build exactly as the pipeline does, as a subprocess (env already points at tmp)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "bentos.build", "--model-name", MODEL_NAME, "--model-version", version]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Fresh MLflow and BentoML stores under tmp, and tmp as cwd, for the whole module."""
    tmp = tmp_path_factory.mktemp("bento_service")
    with pytest.MonkeyPatch.context() as patch:
        # Servers must run from the bento alone: neither the repo on sys.path nor in the cwd.
        patch.delenv("PYTHONPATH", raising=False)
        patch.chdir(tmp)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        patch.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        patch.setenv("BENTOML_DO_NOT_TRACK", "true")
        patch.setenv("MLFLOW_ENABLE_TELEMETRY", "false")
        yield tmp


@pytest.fixture(scope="module")
def built(store: Path) -> list[Built]:
    """Both registered versions, each built into its own bento from a cwd outside the repo."""
    onnx_models = register_versions(store, os.environ["MLFLOW_TRACKING_URI"])
    results = []
    for version, onnx_model in zip(VERSIONS, onnx_models, strict=True):
        completed = run_build(version, cwd=store)
        assert completed.returncode == 0, completed.stderr
        tags = json.loads(completed.stdout)
        results.append(Built(version, onnx_model, tags["bento_tag"], tags["model_tag"]))
    return results


@pytest.fixture(scope="module")
def servers(built: list[Built]) -> Iterator[dict[str, str]]:
    """One `bentoml serve <tag>` per bento on 127.0.0.1, keyed by model version, started from tmp."""
    started = {item.version: (start_server(item.bento_tag, port=free_port()), item) for item in built}
    urls = {}
    try:
        for version, (server, _) in started.items():
            port = server.args[server.args.index("--port") + 1]
            urls[version] = f"http://127.0.0.1:{port}"
            wait_until_ready(server, urls[version], timeout_s=60)
        yield urls
    finally:
        for server, _ in started.values():
            server.terminate()
        for server, _ in started.values():
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


def test_build_prints_tags_and_labels_the_bento(built: list[Built], store: Path) -> None:
    for item in built:
        name, bento_version = item.bento_tag.split(":")
        assert name == "digits_classifier"
        assert bento_version.startswith(f"v{item.version}-")
        bento_yaml = yaml.safe_load((store / "bentoml" / "bentos" / name / bento_version / "bento.yaml").read_text())
        assert bento_yaml["labels"]["model_name"] == MODEL_NAME
        assert bento_yaml["labels"]["model_version"] == item.version
        assert bento_yaml["args"] == {"model_tag": item.model_tag}


def test_each_bento_serves_its_own_model_version(built: list[Built], servers: dict[str, str]) -> None:
    rows = np.random.default_rng(7).integers(0, PIXEL_MAX + 1, size=(32, N_FEATURES))
    expected = {item.version: reference(item.onnx_model, rows) for item in built}
    # Otherwise a bento answering with the other version's model would pass unnoticed.
    assert expected["1"][0] != expected["2"][0]
    for item in built:
        response = httpx.post(f"{servers[item.version]}/predict", json={"rows": rows.tolist()}, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        labels, probabilities = expected[item.version]
        assert body["model_version"] == item.version
        assert body["model_name"] == MODEL_NAME
        assert body["labels"] == labels
        np.testing.assert_allclose(body["probabilities"], probabilities, atol=1e-5)


@pytest.mark.parametrize("endpoint", ["/healthz", "/livez", "/readyz"])
def test_health_endpoints_answer(servers: dict[str, str], endpoint: str) -> None:
    assert httpx.get(f"{servers['1']}{endpoint}", timeout=5).status_code == 200


ROW = [1] * N_FEATURES


def rows_body(rows: object) -> bytes:
    """A request body; json.dumps writes NaN and Infinity literals, as careless clients do."""
    return json.dumps({"rows": rows}).encode()


def row_with(column: int, value: object) -> list[object]:
    """A valid row except for one pixel."""
    return [*ROW[:column], value, *ROW[column + 1 :]]


MALFORMED = {
    "not json": (b"{rows: [1, 2", [], "json_invalid"),
    "not an object": (b"[1, 2]", [], "model_type"),
    "missing rows": (json.dumps({"pixels": [ROW]}).encode(), ["rows"], "missing"),
    "empty batch": (rows_body([]), ["rows"], "too_short"),
    "rows null": (rows_body(None), ["rows"], "list_type"),
    "short row": (rows_body([ROW, ROW[:-1]]), ["rows", 1], "too_short"),
    "long row": (rows_body([[*ROW, 1]]), ["rows", 0], "too_long"),
    "string pixel": (rows_body([row_with(5, "3")]), ["rows", 0, 5], "float_type"),
    "null pixel": (rows_body([row_with(5, None)]), ["rows", 0, 5], "float_type"),
    "bool pixel": (rows_body([row_with(5, True)]), ["rows", 0, 5], "float_type"),
    "nan pixel": (rows_body([row_with(10, float("nan"))]), ["rows", 0, 10], "finite_number"),
    "inf pixel": (rows_body([row_with(10, float("inf"))]), ["rows", 0, 10], "finite_number"),
    "above 16": (rows_body([ROW, row_with(17, 16.5)]), ["rows", 1, 17], "less_than_equal"),
    "negative": (rows_body([row_with(3, -1)]), ["rows", 0, 3], "greater_than_equal"),
}


@pytest.mark.parametrize(("body", "location", "problem"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_400_naming_the_problem(
    servers: dict[str, str], body: bytes, location: list[str | int], problem: str
) -> None:
    response = httpx.post(
        f"{servers['1']}/predict", content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == 400, response.text
    assert [location, problem] in [[detail["loc"], detail["type"]] for detail in response.json()["detail"]]


def test_build_of_unknown_version_fails_with_one_line(built: list[Built], store: Path) -> None:
    completed = run_build("99", cwd=store)
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert "digits-classifier/99" in completed.stderr.splitlines()[-1]
    assert "not found" in completed.stderr.splitlines()[-1]
