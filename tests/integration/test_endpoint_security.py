"""The endpoint's guards on real servers: the API key, the checksum that keeps a changed model out, and the
spec without which a version's request contract is unknown."""

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from endpoint_support import (
    MODEL_NAME,
    PROJECT_ROOT,
    Built,
    RunningServer,
    build,
    free_port,
    isolated_store,
    linear_onnx,
    penguins_spec,
    register_onnx,
    registered_onnx_file,
    run_build,
    sample_rows,
    serving,
    stored_model_dir,
    table_onnx,
)
from mlflow import MlflowClient

from bentos.serve import wait_until_ready
from tasks.core.retry import wait_until
from tasks.core.spec import digits_spec
from tasks.onnx.verified import onnx_file

pytestmark = pytest.mark.slow  # builds bentos and starts BentoML servers

# Long and unusual, so finding it in a log cannot be a coincidence.
API_KEY = "gl-test-key-5f0c9a7e1b2d4c3a"
ROWS = {"rows": sample_rows(2).tolist()}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_store(tmp_path_factory.mktemp("endpoint_security")) as tmp:
        yield tmp


@pytest.fixture(scope="module")
def built(store: Path) -> list[Built]:
    return [build(store, linear_onnx(seed), digits_spec()) for seed in (0, 1)]


@pytest.fixture(scope="module")
def keyed(built: list[Built], store: Path) -> Iterator[RunningServer]:
    with serving(built[0].bento_tag, store / "keyed.log", GREENLIGHT_API_KEY=API_KEY) as server:
        yield server


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"X-API-Key": API_KEY[:-1]}, {"Authorization": API_KEY}],
    ids=["none", "wrong bearer", "wrong x-api-key", "no scheme"],
)
def test_predict_without_the_key_gets_401(keyed: RunningServer, headers: dict[str, str]) -> None:
    response = httpx.post(f"{keyed.url}/predict", json=ROWS, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "API key" in response.json()["error"]
    assert API_KEY not in response.text


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}])
def test_predict_with_the_key_answers(keyed: RunningServer, headers: dict[str, str]) -> None:
    response = httpx.post(f"{keyed.url}/predict", json=ROWS, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"


@pytest.mark.parametrize("endpoint", ["/healthz", "/livez", "/readyz", "/metrics"])
def test_health_and_metrics_need_no_key(keyed: RunningServer, endpoint: str) -> None:
    assert httpx.get(f"{keyed.url}{endpoint}", timeout=10).status_code == 200


def test_the_key_never_reaches_the_log(keyed: RunningServer) -> None:
    for headers in ({"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}, {"X-API-Key": API_KEY + "x"}):
        httpx.post(f"{keyed.url}/predict", json=ROWS, headers=headers, timeout=10)
        httpx.post(f"{keyed.url}/predict", json={"rows": []}, headers=headers, timeout=10)
    log = keyed.log()
    assert "Service GreenlightModel initialized" in log  # the log is the server's, and it was written
    assert API_KEY not in log


def test_a_bento_whose_model_changed_refuses_to_serve(built: list[Built], store: Path) -> None:
    """Version 2's stored file replaced by version 1's bytes: a valid model, but not the registered one."""
    stored = onnx_file(stored_model_dir(store, built[1].model_tag) / "mlflow_model")
    original = stored.read_bytes()
    shutil.copyfile(onnx_file(stored_model_dir(store, built[0].model_tag) / "mlflow_model"), stored)
    try:
        with serving(built[1].bento_tag, store / "tampered.log", ready=False) as server:
            assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 503
            response = httpx.post(f"{server.url}/predict", json=ROWS, timeout=10)
            assert response.status_code == 503
            assert "version 2" in response.json()["error"]
            assert "fails its checksum" in response.json()["error"]
            metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
            assert 'greenlight_model_load_failures_total{model_name="digits-classifier",model_version="2",' in metrics
            assert 'reason="checksum_mismatch"} 1.0' in metrics
            log = server.log()
    finally:
        stored.write_bytes(original)
    assert "not serving: digits-classifier version 2" in log
    assert "Traceback" not in log


def test_build_refuses_an_artifact_changed_after_registration(built: list[Built], store: Path) -> None:
    version = register_onnx(store, linear_onnx(seed=5), digits_spec())
    registered_onnx_file(version).write_bytes(built[0].onnx_model)
    completed = run_build(version, cwd=store)
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert "the artifact changed after registration" in completed.stderr.splitlines()[-1]


def test_a_version_registered_without_a_spec_is_not_served(store: Path) -> None:
    """A table model whose MLmodel records no spec: nobody can say what its requests hold, so it never serves."""
    unspecified = build(store, table_onnx(penguins_spec(), seed=3), spec=None)
    with serving(unspecified.bento_tag, store / "no-spec.log", ready=False) as server:
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 503
        response = httpx.post(f"{server.url}/predict", json={"records": [{"island": "Dream"}]}, timeout=10)
        assert response.status_code == 503
        assert f"version {unspecified.version}" in response.json()["error"]
        assert "records no spec" in response.json()["error"]
        assert httpx.get(f"{server.url}/", timeout=10).status_code == 503
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert 'reason="spec_missing"} 1.0' in metrics
        log = server.log()
    assert "Traceback" not in log


def test_a_service_given_a_verify_key_refuses_an_unsigned_model(built: list[Built], store: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = store / "verify.pem"
    public.write_bytes(
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with serving(
        built[0].bento_tag, store / "unsigned.log", ready=False, GREENLIGHT_VERIFY_KEY_FILE=str(public)
    ) as server:
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 503
        response = httpx.post(f"{server.url}/predict", json=ROWS, timeout=10)
        assert response.status_code == 503 and "is not signed" in response.json()["error"]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert 'reason="signature_missing"} 1.0' in metrics
        log = server.log()
    assert "not serving: digits-classifier version 1" in log and "only signed models" in log
    assert "Traceback" not in log


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill -9"])
def test_stopping_greenlight_serve_in_any_way_stops_the_server_it_started(
    built: list[Built], store: Path, stop_signal: int
) -> None:
    """A supervisor stops `greenlight serve` (systemd's SIGTERM, or a kill -9): nothing may keep answering on
    its port with its settings (here an API key)."""
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    client.set_model_version_tag(MODEL_NAME, built[0].version, "bento_tag", built[0].bento_tag)
    client.set_registered_model_alias(MODEL_NAME, "production", built[0].version)
    port = free_port()
    command = [sys.executable, "-m", "deployments.cli", "serve", "--model-name", MODEL_NAME, "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "GREENLIGHT_HOME": str(store), "GREENLIGHT_API_KEY": API_KEY}
    with (store / f"greenlight-serve-{stop_signal}.log").open("wb") as log:
        parent = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=store)
    try:
        wait_until_ready(parent, f"http://127.0.0.1:{port}", timeout_s=90)
        (server,) = children_of(parent.pid)
        parent.send_signal(stop_signal)
        parent.wait(timeout=30)
        wait_until(lambda: not group_alive(server), timeout_s=30, every_s=0.2)
        assert not group_alive(server), "the bentoml server outlived greenlight serve"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    finally:
        if parent.poll() is None:
            parent.kill()
