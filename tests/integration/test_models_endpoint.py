"""`greenlight serve` without --model-name, as a user runs it: every production model behind one endpoint, by
POST /models/{name}/predict and by a Triton client over the Open Inference Protocol; keys scoped per model with
rates and an audit log; a promotion of one model that moves only that one, under load, without a failed request."""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from endpoint_support import (
    PROJECT_ROOT,
    diabetes_spec,
    isolated_store,
    linear_onnx,
    outputs,
    penguins_spec,
    register_onnx,
    table_onnx,
)
from mlflow import MlflowClient
from registry_support import served as greenlight_served
from tritonclient.utils import InferenceServerException

from tasks.core.retry import wait_until
from tasks.core.spec import PIXELS_INPUT, digits_spec

pytestmark = pytest.mark.slow  # starts a BentoML server
POLL_S = "0.5"  # how often the service looks at the registry: a promotion shows within a second
PENGUIN = {
    "island": "Dream",
    "bill_length_mm": 40.0,
    "flipper_length_mm": 190.0,
    "body_mass_g": None,
    "sex": "male",
    "year": 2008,
}


@dataclass(frozen=True)
class Served:
    url: str
    home: Path
    keys: dict[str, str]  # "all": any model, no rate; "penguins": only penguins, 2 requests/s
    models: dict[str, bytes]  # "penguins/1" -> its ONNX bytes

    def client(self, key: str | None = "all") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def audit(self) -> list[dict]:
        path = self.home / "audit" / "serving.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with isolated_store(tmp_path_factory.mktemp("models_endpoint")) as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENLIGHT_HOME", str(tmp))
        models = {
            "penguins/1": table_onnx(penguins_spec(), 1),
            "penguins/2": table_onnx(penguins_spec(), 2),
            "diabetes/1": table_onnx(diabetes_spec(), 3),
            "digits/1": linear_onnx(4),
        }
        specs = {"penguins": penguins_spec(), "diabetes": diabetes_spec(), "digits": digits_spec()}
        client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
        for key, onnx_model in models.items():
            name = key.split("/")[0]
            assert register_onnx(tmp, onnx_model, specs[name], name=name) == key.split("/")[1]
        for name in specs:
            client.set_registered_model_alias(name, "production", "1")
        yield from serve(tmp, models)


def serve(tmp: Path, models: dict[str, bytes]) -> Iterator[Served]:
    """Two keys made with `greenlight keys add` (each printed once), then `greenlight serve` on a free port."""
    keys = {}
    for label, scope, rate in (("all", "*", None), ("penguins", "penguins", "2")):
        limit = ["--rate", rate] if rate else []
        completed = subprocess.run(
            [sys.executable, "-m", "deployments.cli", "keys", "add", "--models", scope, *limit],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            check=True,
        )
        keys[label] = next(word for word in completed.stdout.split() if word.startswith("glk_"))
    environment = {
        "GREENLIGHT_ALIAS_POLL_S": POLL_S,
        "GREENLIGHT_CAPTURE_RATE": "1",
        "GREENLIGHT_CAPTURE_FILE_AGE_S": "1",
    }
    with greenlight_served(None, tmp / "serve.log", **environment) as url:
        yield Served(url, tmp, keys, models)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_one_endpoint_lists_and_answers_every_production_model(served: Served) -> None:
    with served.client() as client:
        listing = client.get("/models").json()
        by_name = {model["name"]: model for model in listing["models"]}
        assert {name: model["version"] for name, model in by_name.items()} == {
            "penguins": "1",
            "diabetes": "1",
            "digits": "1",
        }
        assert [f["name"] for f in by_name["diabetes"]["contract"]["fields"]] == ["age", "bmi", "sex"]
        assert by_name["penguins"]["contract"]["labels"] == ["Adelie", "Chinstrap", "Gentoo"]

        penguins = client.post("/models/penguins/predict", json={"records": [PENGUIN]})
        diabetes = client.post("/models/diabetes/predict", json={"records": [{"age": 50, "bmi": 30.0, "sex": 1}]})
        rows = np.arange(128, dtype=np.float32).reshape(2, 64) % 17
        digits = client.post("/models/digits/predict", json={"rows": rows.tolist()})
        page = client.get("/")
    assert penguins.status_code == 200 and penguins.json()["model_name"] == "penguins"
    assert penguins.json()["predictions"][0] in {"Adelie", "Chinstrap", "Gentoo"}
    assert diabetes.status_code == 200 and isinstance(diabetes.json()["predictions"][0], float)
    expected = softmax(outputs(served.models["digits/1"], {PIXELS_INPUT: rows}).astype(np.float64)).argmax(axis=1)
    assert digits.json()["predictions"] == expected.tolist()
    assert all(f"/models/{name}/predict" in page.text for name in ("penguins", "diabetes", "digits"))


def test_a_triton_client_talks_to_the_open_inference_protocol(served: Served) -> None:
    client = triton.InferenceServerClient(served.url.removeprefix("http://"))
    key = {"Authorization": f"Bearer {served.keys['all']}"}

    def headers() -> dict[str, str]:  # tritonclient writes its binary header length into the dict it is given
        return dict(key)

    assert client.is_server_ready() and client.is_model_ready("digits", headers=headers())
    metadata = client.get_model_metadata("penguins", headers=headers())
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]}["island"] == "BYTES"
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]}["flipper_length_mm"] == "FP32"

    rows = (np.arange(3 * 64).reshape(3, 64) % 17).astype(np.float32)
    for binary in (True, False):  # tritonclient's default binary tensors, and the JSON form
        pixels = triton.InferInput(PIXELS_INPUT, [3, 64], "FP32").set_data_from_numpy(rows, binary_data=binary)
        result = client.infer("digits", [pixels], headers=headers())
        expected = softmax(outputs(served.models["digits/1"], {PIXELS_INPUT: rows}).astype(np.float64))
        assert [int(label) for label in result.as_numpy("label")] == expected.argmax(axis=1).tolist()
        assert np.allclose(result.as_numpy("probabilities"), expected, atol=1e-6)

    tensors = []
    for name, value in PENGUIN.items():
        if value is None:
            continue  # a nullable input may be left out
        datatype = "FP32" if isinstance(value, float) else "BYTES"
        array = np.array([value], dtype=np.float32 if datatype == "FP32" else object)
        if datatype == "BYTES":
            array = np.array([str(value).encode()], dtype=object)
        tensors.append(triton.InferInput(name, [1], datatype).set_data_from_numpy(array))
    answer = client.infer("penguins", tensors, headers=headers())
    with served.client() as http:
        same = http.post("/models/penguins/predict", json={"records": [PENGUIN]}).json()
    assert answer.as_numpy("label")[0].decode() == same["predictions"][0]

    with pytest.raises(InferenceServerException, match="input 'flipper_length_mm' is missing"):
        client.infer("penguins", [t for t in tensors if t.name() != "flipper_length_mm"], headers=headers())
    text = np.array([b"long"], dtype=object)  # a string for a number: refused, naming the input
    flipper = triton.InferInput("flipper_length_mm", [1], "BYTES").set_data_from_numpy(text)
    others = [t for t in tensors if t.name() != "flipper_length_mm"]
    with pytest.raises(InferenceServerException, match="input 'flipper_length_mm' is BYTES; it takes FP32"):
        client.infer("penguins", [flipper, *others], headers=headers())


def test_keys_are_scoped_per_model_rate_limited_and_audited(served: Served) -> None:
    body = {"records": [PENGUIN]}
    with served.client(key=None) as anonymous, served.client("penguins") as scoped:
        assert anonymous.post("/models/penguins/predict", json=body).status_code == 401
        assert anonymous.get("/models").status_code == 401
        assert [model["name"] for model in scoped.get("/models").json()["models"]] == ["penguins"]  # its own only
        wrong = anonymous.post("/models/penguins/predict", json=body, headers={"X-API-Key": "glk_not-a-key"})
        assert wrong.status_code == 401
        other_model = scoped.post("/models/diabetes/predict", json={"records": [{"age": 50, "sex": 1}]})
        assert other_model.status_code == 403 and "diabetes" in other_model.json()["error"]
        statuses = [scoped.post("/models/penguins/predict", json=body) for _ in range(6)]
    codes = [response.status_code for response in statuses]
    assert codes[0] == 200 and 429 in codes, codes
    limited = next(response for response in statuses if response.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1

    def audited() -> bool:
        return {(line["model"], line["status"]) for line in served.audit()} >= {
            ("penguins", 401),
            ("diabetes", 403),
            ("penguins", 429),
            ("penguins", 200),
        }

    assert wait_until(audited, 5, every_s=0.2), served.audit()[-10:]
    line = next(line for line in served.audit() if line["status"] == 200 and line["model"] == "penguins")
    assert line["version"] == "1" and line["rows"] == 1 and line["key"].startswith("k_")
    assert "records" not in json.dumps(served.audit())  # no payloads


def keys_command(*arguments: str) -> str:
    """`greenlight keys ...` as an operator runs it beside the running server; what it printed."""
    command = [sys.executable, "-m", "deployments.cli", "keys", *arguments]
    return subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, check=True).stdout


def test_a_key_added_or_revoked_while_serving_counts_without_a_restart(served: Served) -> None:
    printed = keys_command("add", "--models", "diabetes", "--name", "late")
    key = next(word for word in printed.split() if word.startswith("glk_"))
    key_id = next(word for word in printed.split() if word.startswith("k_"))
    body = {"records": [{"age": 50, "bmi": 30.0, "sex": 1}]}
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        assert wait_until(
            lambda: client.post("/models/diabetes/predict", json=body).status_code == 200, 10, every_s=0.2
        )
        keys_command("revoke", key_id)
        assert wait_until(
            lambda: client.post("/models/diabetes/predict", json=body).status_code == 401, 10, every_s=0.2
        )
        assert "revoked" in client.post("/models/diabetes/predict", json=body).json()["error"]


class Traffic(threading.Thread):
    """One client posting to one model back to back until stopped, keeping (status, version) of each answer."""

    def __init__(self, served: Served, model: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.served, self.model, self.body = served, model, body
        self.answers: list[tuple[int, str | None]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        with self.served.client() as client:
            while not self.stopped.is_set():
                try:
                    response = client.post(f"/models/{self.model}/predict", json=self.body)
                except httpx.HTTPError as error:
                    self.answers.append((0, repr(error)))
                    continue
                self.answers.append((response.status_code, response.headers.get("X-Model-Version")))


def test_promoting_one_model_moves_only_that_one_without_a_failed_request(served: Served) -> None:
    traffic = [
        Traffic(served, "penguins", {"records": [PENGUIN] * 8}),
        Traffic(served, "penguins", {"records": [PENGUIN]}),
        Traffic(served, "diabetes", {"records": [{"age": 50, "bmi": 30.0, "sex": 1}]}),
    ]
    for thread in traffic:
        thread.start()
    time.sleep(1)
    MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).set_registered_model_alias(
        "penguins", "production", "2"
    )
    moved = wait_until(lambda: traffic[0].answers and traffic[0].answers[-1][1] == "2", 30, every_s=0.1)
    time.sleep(1)
    for thread in traffic:
        thread.stopped.set()
        thread.join(timeout=15)
    assert moved, traffic[0].answers[-3:]
    answers = [answer for thread in traffic for answer in thread.answers]
    failed = [answer for answer in answers if answer[0] != 200]
    assert not failed, f"{len(failed)} of {len(answers)} failed, first {failed[0]}"
    assert {version for _, version in traffic[2].answers} == {"1"}  # diabetes stayed where it was
    assert traffic[1].answers[-1][1] == "2"


def captured(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(folder.rglob("*.parquet")):
        try:
            rows += pq.read_table(path).to_pylist()
        except Exception:  # the file being written has no footer yet: read it when it is finished
            continue
    return rows


def test_captured_requests_carry_the_request_id_the_caller_got(served: Served) -> None:
    """Capture at rate 1: each answered request's rows land under capture/<model>/<version>/ with its request id,
    fields and answer (a file is readable once finished: here after a second)."""
    with served.client() as client:
        answer = client.post("/models/penguins/predict", json={"records": [PENGUIN, PENGUIN]})
    request_id = answer.headers["X-Request-Id"]
    assert request_id and answer.status_code == 200
    folder = served.home / "capture" / "penguins"

    def rows() -> list[dict]:
        return [row for row in captured(folder) if row["request_id"] == request_id]

    assert wait_until(lambda: len(rows()) == 2, 15, every_s=0.3), captured(folder)[-3:]
    first = rows()[0]
    assert (first["island"], first["flipper_length_mm"], first["year"]) == ("Dream", 190.0, "2008")
    assert (
        first["prediction"] == answer.json()["predictions"][0]
        and first["model_version"] == answer.headers["X-Model-Version"]
    )


def test_a_capture_folder_that_cannot_be_written_drops_samples_not_requests(served: Served, tmp_path: Path) -> None:
    blocked = tmp_path / "full-disk"
    blocked.write_text("a file where the capture folder should be: every write fails, as on a full disk")
    capture = {"GREENLIGHT_CAPTURE_RATE": "1", "GREENLIGHT_CAPTURE_DIR": str(blocked)}
    with greenlight_served(None, tmp_path / "serve.log", **capture) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {served.keys['all']}"}) as client:
            codes = [
                client.post("/models/penguins/predict", json={"records": [PENGUIN]}).status_code for _ in range(20)
            ]

            def dropped() -> float:
                metrics = client.get("/metrics").text
                line = next((x for x in metrics.splitlines() if 'outcome="write_error"' in x), "x 0")
                return float(line.split()[-1])

            assert codes == [200] * 20
            assert wait_until(lambda: dropped() >= 20, 10, every_s=0.3)
    assert "capture: dropping samples" in (tmp_path / "serve.log").read_text()
