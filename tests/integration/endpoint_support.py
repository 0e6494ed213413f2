"""What the endpoint tests share: toy ONNX models registered the way the pipeline registers them (checksum
tag and spec metadata included) in a tmp MLflow store, bentos built from them, and servers started from them.

Two kinds of toy graph, both in the pipeline's ONNX hand-off (tasks.core.spec): the bundled digits (input
`pixels` [n, 64], a random Gemm to 10 logits) and a table (inputs `numeric` [n, k] with NaN imputed to 0 and
`categorical` [n, m] through an ai.onnx.ml LabelEncoder whose default code 0 is the out-of-vocabulary and
missing bucket, one-hot, then a random Gemm to logits, or to one prediction for regression).

Not a test module: test_bento_service.py and test_endpoint_*.py import it.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
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
from tasks.core.retry import wait_until
from tasks.core.spec import (
    CATEGORICAL_INPUT,
    DIGITS_COLUMNS,
    LOGITS_OUTPUT,
    NUMERIC_INPUT,
    PIXELS_INPUT,
    PREDICTION_OUTPUT,
    DatasetSpec,
    FeatureSpec,
    Spec,
    TargetSpec,
    value_text,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "digits-classifier"
DIGITS_LABELS = 10
PIXEL_MAX = 16


@dataclass(frozen=True)
class Built:
    """One registered version, the ONNX model behind it and the bento built for it."""

    version: str
    onnx_model: bytes
    bento_tag: str
    model_tag: str


def penguins_spec() -> Spec:
    """A palmerpenguins-like table: string categories, nullable numbers and categories, an id column."""
    features = [
        FeatureSpec(name="island", type="categorical", values=["Biscoe", "Dream", "Torgersen"]),
        FeatureSpec(name="bill_length_mm", type="numeric", nullable=True, min=32.1, max=59.6),
        FeatureSpec(name="flipper_length_mm", type="numeric", min=172, max=231),
        FeatureSpec(name="body_mass_g", type="numeric", nullable=True, min=2700, max=6300),
        FeatureSpec(name="sex", type="categorical", nullable=True, values=["female", "male"]),
        FeatureSpec(name="year", type="categorical", values=[2007, 2008, 2009]),
        FeatureSpec(name="penguin_id", type="id"),
    ]
    target = TargetSpec(name="species", task="classification", labels=["Adelie", "Chinstrap", "Gentoo"])
    return Spec(dataset=DatasetSpec(name="penguins", target=target, features=features))


def diabetes_spec() -> Spec:
    """A diabetes-like regression table: numbers and one binary category, the target in its own units."""
    features = [
        FeatureSpec(name="age", type="numeric", min=19, max=79),
        FeatureSpec(name="bmi", type="numeric", nullable=True, min=18, max=42.2),
        FeatureSpec(name="sex", type="binary", values=[1, 2]),
    ]
    target = TargetSpec(name="progression", task="regression")
    return Spec(dataset=DatasetSpec(name="diabetes", target=target, features=features))


def linear_onnx(seed: int) -> bytes:
    """The digits hand-off: a random Gemm 64 -> 10 from `pixels` to `logits`, dynamic batch, serialized."""
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(0, 0.1, (len(DIGITS_COLUMNS), DIGITS_LABELS)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(0, 1, DIGITS_LABELS).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Gemm", [PIXELS_INPUT, "W", "B"], [LOGITS_OUTPUT])],
        "digits_linear",
        [helper.make_tensor_value_info(PIXELS_INPUT, TensorProto.FLOAT, ["batch", len(DIGITS_COLUMNS)])],
        [helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT, ["batch", DIGITS_LABELS])],
        [weights, bias],
    )
    return finish(graph, ml=False)


def table_onnx(spec: Spec, seed: int) -> bytes:
    """A table's hand-off: NaN -> 0 for numbers, vocabulary codes one-hot for categories (code 0 = unseen or
    missing), then a random Gemm to the spec's output."""
    dataset = spec.dataset
    inputs = dataset.onnx_inputs()
    numeric, categorical = inputs.get(NUMERIC_INPUT, []), inputs.get(CATEGORICAL_INPUT, [])
    vocabulary = sorted({value_text(v) for f in dataset.of_type("categorical", "binary") for v in f.values or []})
    depth = len(vocabulary) + 1
    width = len(numeric) + len(categorical) * depth
    outputs = len(dataset.label_texts()) or 1
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 1, (width, outputs))
    # Each number weighted by its inverse scale, so every input moves the answer and none swamps it.
    weights[: len(numeric)] /= np.array([[max(abs(f.max or 1), 1)] for f in dataset.of_type("numeric")])
    constants = [
        numpy_helper.from_array(weights.astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.5, outputs).astype(np.float32), "B"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        numpy_helper.from_array(np.array(depth, np.int64), "depth"),
        numpy_helper.from_array(np.array([0, 1], np.float32), "off_on"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
    ]
    nodes, parts, graph_inputs = [], [], []
    if numeric:
        graph_inputs.append(helper.make_tensor_value_info(NUMERIC_INPUT, TensorProto.FLOAT, ["batch", len(numeric)]))
        nodes += [
            helper.make_node("IsNaN", [NUMERIC_INPUT], ["missing"]),
            helper.make_node("Where", ["missing", "zero", NUMERIC_INPUT], ["imputed"]),
        ]
        parts.append("imputed")
    if categorical:
        graph_inputs.append(
            helper.make_tensor_value_info(CATEGORICAL_INPUT, TensorProto.STRING, ["batch", len(categorical)])
        )
        codes = list(range(1, depth))
        nodes += [
            helper.make_node(
                "LabelEncoder",
                [CATEGORICAL_INPUT],
                ["codes"],
                domain="ai.onnx.ml",
                keys_strings=vocabulary,
                values_int64s=codes,
                default_int64=0,
            ),
            helper.make_node("OneHot", ["codes", "depth", "off_on"], ["one_hot"], axis=-1),
            helper.make_node("Reshape", ["one_hot", "flat"], ["encoded"]),
        ]
        parts.append("encoded")
    head = LOGITS_OUTPUT if dataset.task == "classification" else "scores"
    nodes += [
        helper.make_node("Concat", parts, ["features"], axis=1),
        helper.make_node("Gemm", ["features", "W", "B"], [head]),
    ]
    if dataset.task == "classification":
        output = helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT, ["batch", outputs])
    else:
        constants.append(numpy_helper.from_array(np.array([-1], np.int64), "column"))
        nodes.append(helper.make_node("Reshape", [head, "column"], [PREDICTION_OUTPUT]))
        output = helper.make_tensor_value_info(PREDICTION_OUTPUT, TensorProto.FLOAT, ["batch"])
    return finish(helper.make_graph(nodes, "table_linear", graph_inputs, [output], constants), ml=True)


def finish(graph: onnx.GraphProto, ml: bool) -> bytes:
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8  # readable by any onnxruntime the pipeline pins
    onnx.checker.check_model(model)
    return model.SerializeToString()


def register_onnx(
    tmp: Path, onnx_model: bytes, spec: Spec | None, checksum: bool = True, name: str = MODEL_NAME
) -> str:
    """Register one ONNX model as the pipeline does (one .onnx file, onnx_sha256 tag, the spec in the MLmodel
    metadata; spec None: a version registered before specs were recorded); its version.

    Through an explicit client only: the fluent API's global tracking URI would leak into other tests."""
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("endpoint-test")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment("endpoint-test", artifact_location=(tmp / "artifacts").as_uri())
    )
    run = client.create_run(experiment_id)
    metadata = {"greenlight_spec": spec.model_dump(mode="json")} if spec is not None else None
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory) / "model"
        mlflow.onnx.save_model(
            onnx.load_from_string(onnx_model),
            local,
            metadata=metadata,
            save_as_external_data=False,
            onnx_execution_providers=["CPUExecutionProvider"],
        )
        client.log_artifacts(run.info.run_id, str(local), "model")
    client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass  # registered by an earlier call
    created = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    version = str(created.version)
    if checksum:
        client.set_model_version_tag(name, version, "onnx_sha256", hashlib.sha256(onnx_model).hexdigest())
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
    """Point the test model's production alias at a version."""
    MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).set_registered_model_alias(
        MODEL_NAME, "production", version
    )


def run_build(version: str, cwd: Path, name: str = MODEL_NAME) -> subprocess.CompletedProcess[str]:
    """Run the build exactly as the pipeline does, as a subprocess (env already points at tmp)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "bentos.build", "--model-name", name, "--model-version", version]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def build(tmp: Path, onnx_model: bytes, spec: Spec | None, name: str = MODEL_NAME) -> Built:
    """Register one model with its spec and build its bento; the build must succeed."""
    version = register_onnx(tmp, onnx_model, spec, name=name)
    completed = run_build(version, cwd=tmp, name=name)
    assert completed.returncode == 0, completed.stderr
    tags = json.loads(completed.stdout)
    return Built(version, onnx_model, tags["bento_tag"], tags["model_tag"])


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def outputs(onnx_model: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The graph's raw output straight from onnxruntime, without the service."""
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def reference(onnx_model: bytes, rows: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Digits: labels and softmax probabilities straight from onnxruntime, without the service."""
    logits = outputs(onnx_model, {PIXELS_INPUT: rows.astype(np.float32)})
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits.argmax(axis=1).tolist(), exp / exp.sum(axis=1, keepdims=True)


def sample_rows(count: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, PIXEL_MAX + 1, size=(count, len(DIGITS_COLUMNS)))


def json_body(value: object) -> bytes:
    """A request body; json.dumps writes NaN and Infinity literals, as careless clients do."""
    return json.dumps(value).encode()


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

    def answering() -> bool:
        assert process.poll() is None, f"bentoml serve exited with {process.returncode}"
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200

    if not wait_until(answering, timeout_s, every_s=0.2, not_yet=(httpx.HTTPError,)):
        raise TimeoutError(f"{url}/healthz did not answer within {timeout_s:.0f} s")
