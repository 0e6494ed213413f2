"""The service image for real: `greenlight containerize` builds the production version's image with podman from a
base image made here (debootstrap), and it runs as the Kubernetes manifests run it: read-only root, a non-root user,
the API key from a mounted file. It answers /predict as the model does locally, refuses a request without the key,
and its digest is a tag on the version. podman is installed (Debian's packages) when missing; the base image is
made once per machine and reused."""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from container_support import install_podman
from endpoint_support import free_port, isolated_store, penguins_spec, register_onnx, table_onnx
from mlflow import MlflowClient

from deployments.cli import main
from tasks.core.contract import compile_contract, softmax
from tasks.core.retry import wait_until
from tasks.release.images import Podman

pytestmark = pytest.mark.slow  # builds a base image once per machine (~1 min) and the service image (~1 min)

KEY = "glk_container_test_key"
RECORDS = [
    {
        "island": island,
        "bill_length_mm": 40.0 + 3 * i,
        "flipper_length_mm": 190.0 + 8 * i,
        "body_mass_g": 3800.0 + 400 * i,
    }
    | {"sex": "male" if i % 2 else "female", "year": 2008}
    for i, island in enumerate(["Dream", "Biscoe", "Torgersen"])
]


@pytest.fixture(scope="module")
def containerized(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> Iterator[tuple[Path, Podman]]:
    install_podman()
    with isolated_store(tmp_path_factory.mktemp("containers")) as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENLIGHT_HOME", str(tmp))
        patch.setenv("PREFECT_HOME", os.environ.get("PREFECT_HOME", str(tmp / "prefect")))  # main() exports it
        (tmp / "model.onnx").write_bytes(table_onnx(penguins_spec(), 3))
        register_onnx(tmp, (tmp / "model.onnx").read_bytes(), penguins_spec(), name="penguins")
        MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).set_registered_model_alias(
            "penguins", "production", "1"
        )
        assert main(["containerize", "--model-name", "penguins"]) == 0
        podman = Podman.find(tmp)
        try:
            yield tmp, podman
        finally:
            tags = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).get_model_version("penguins", "1").tags
            if "image.reference" in tags:  # the service image is this test's; the base image stays for the next
                subprocess.run([podman.executable, "rmi", "-f", tags["image.reference"]], check=False)


@pytest.fixture()
def running(containerized) -> Iterator[tuple[str, str]]:
    """The image started as deployment.yaml runs it; its URL and container name. Removed after the test."""
    tmp, podman = containerized
    keys = tmp / "secret"
    keys.mkdir(exist_ok=True)
    (keys / "api-key").write_text(KEY)
    (keys / "api-key").chmod(0o644)  # the Secret's defaultMode 288 (0440) with the pod's group; here any reader
    reference = MlflowClient().get_model_version("penguins", "1").tags["image.reference"]
    port = free_port()
    name = f"greenlight-test-{port}"
    podman.run(
        *("run", "-d", "--name", name, "--runtime", "runc", "--read-only", "--user", "1034:1034", "--tmpfs", "/tmp"),
        *("--cap-drop", "ALL", "--security-opt", "no-new-privileges", "-v", f"{keys}:/var/run/secrets/greenlight:ro"),
        *("-e", "GREENLIGHT_API_KEY_FILE=/var/run/secrets/greenlight/api-key", "-e", "BENTOML_HOME=/tmp/bentoml"),
        *("-e", "HOME=/tmp", "-e", "BENTOML_DO_NOT_TRACK=true", "-p", f"127.0.0.1:{port}:3000", reference),
        what="starting the image",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_until(lambda: ready_status(url) == 200, timeout_s=90, every_s=0.5)
        assert ready, podman.run("logs", name, what="logs")[-3000:]
        yield url, name
    finally:
        subprocess.run([podman.executable, "rm", "-f", name], capture_output=True, check=False)


def ready_status(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_the_image_runs_read_only_as_non_root_and_answers_as_the_model_does(running, containerized) -> None:
    tmp, podman = containerized
    running, name = running
    refused = httpx.post(f"{running}/predict", json={"records": RECORDS}, timeout=30)
    assert refused.status_code == 401
    answer = httpx.post(
        f"{running}/predict", json={"records": RECORDS}, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    contract = compile_contract(penguins_spec().dataset)
    batch = contract.parse(json.dumps({"records": RECORDS}).encode())
    session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {name: batch.feeds[name] for name in (i.name for i in session.get_inputs())})[0]
    expected = softmax(logits.astype(np.float64))
    labels = contract.label_texts
    body = answer.json()
    assert body["predictions"] == [labels[i] for i in expected.argmax(axis=1)]
    found = np.array([[row[label] for label in labels] for row in body["probabilities"]])
    np.testing.assert_allclose(found, expected, atol=1e-6)
    assert podman.run("exec", name, "id", "-u", what="id").strip() == "1034"
    written = subprocess.run(
        [podman.executable, "exec", name, "touch", "/home/bentoml/x"], capture_output=True, text=True
    )
    assert written.returncode != 0 and "Read-only file system" in written.stderr


def test_the_images_digest_and_archive_are_recorded_on_the_version(containerized) -> None:
    tmp, podman = containerized
    tags = MlflowClient().get_model_version("penguins", "1").tags
    inspected = podman.run("image", "inspect", "--format", "{{.Digest}}", tags["image.reference"], what="inspect")
    assert tags["image.digest"] == inspected.strip() and tags["image.digest"].startswith("sha256:")
    archive = Path(tags["image.archive"])
    assert archive.parent == tmp / "images" and archive.stat().st_size > 10_000_000
    config = podman.run("image", "inspect", "--format", "{{.Config.User}}", tags["image.reference"], what="inspect")
    assert config.strip() == "bentoml"  # the image itself says non-root, as the manifests expect
