"""The serving bento end to end: register ONNX models in a tmp MLflow store, build, serve by tag, call HTTP."""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
import yaml
from endpoint_support import (
    MODEL_NAME,
    Built,
    RunningServer,
    build,
    isolated_store,
    linear_onnx,
    reference,
    register_onnx,
    run_build,
    sample_rows,
    serving,
    stored_model_dir,
)
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from bentos.contract import MAX_BODY_BYTES, MAX_ROWS
from tasks.core.schema import N_FEATURES

pytestmark = pytest.mark.slow  # builds bentos and starts two BentoML servers

VERSIONS = ("1", "2")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_store(tmp_path_factory.mktemp("bento_service")) as tmp:
        yield tmp


@pytest.fixture(scope="module")
def built(store: Path) -> list[Built]:
    """Two registered versions, each built into its own bento from a cwd outside the repo."""
    return [build(store, linear_onnx(seed)) for seed in range(len(VERSIONS))]


@pytest.fixture(scope="module")
def servers(built: list[Built], store: Path) -> Iterator[dict[str, RunningServer]]:
    """One `bentoml serve <tag>` per bento on 127.0.0.1, keyed by model version, started from tmp."""
    with (
        serving(built[0].bento_tag, store / "serve-1.log") as first,
        serving(built[1].bento_tag, store / "serve-2.log") as second,
    ):
        yield {"1": first, "2": second}


def test_build_prints_tags_and_carries_the_checksum(built: list[Built], store: Path) -> None:
    for item in built:
        name, bento_version = item.bento_tag.split(":")
        assert name == "digits_classifier"
        assert bento_version.startswith(f"v{item.version}-")
        bento_yaml = yaml.safe_load((store / "bentoml" / "bentos" / name / bento_version / "bento.yaml").read_text())
        assert bento_yaml["labels"]["model_name"] == MODEL_NAME
        assert bento_yaml["labels"]["model_version"] == item.version
        assert bento_yaml["args"] == {"model_tag": item.model_tag}
        model_yaml = yaml.safe_load((stored_model_dir(store, item.model_tag) / "model.yaml").read_text())
        assert model_yaml["labels"]["onnx_sha256"] == hashlib.sha256(item.onnx_model).hexdigest()


def test_each_bento_serves_its_own_model_version(built: list[Built], servers: dict[str, RunningServer]) -> None:
    rows = sample_rows(32)
    expected = {item.version: reference(item.onnx_model, rows) for item in built}
    # Otherwise a bento answering with the other version's model would pass unnoticed.
    assert expected["1"][0] != expected["2"][0]
    for item in built:
        response = httpx.post(f"{servers[item.version].url}/predict", json={"rows": rows.tolist()}, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        labels, probabilities = expected[item.version]
        assert body["model_version"] == response.headers["X-Model-Version"] == item.version
        assert body["model_name"] == MODEL_NAME
        assert body["labels"] == labels
        np.testing.assert_allclose(body["probabilities"], probabilities, atol=1e-5)


@pytest.mark.parametrize("endpoint", ["/healthz", "/livez", "/readyz"])
def test_health_endpoints_answer(servers: dict[str, RunningServer], endpoint: str) -> None:
    assert httpx.get(f"{servers['1'].url}{endpoint}", timeout=5).status_code == 200


ROW = [1] * N_FEATURES


def rows_body(rows: object) -> bytes:
    """A request body; json.dumps writes NaN and Infinity literals, as careless clients do."""
    return json.dumps({"rows": rows}).encode()


def row_with(column: int, value: object) -> list[object]:
    """A valid row except for one pixel."""
    return [*ROW[:column], value, *ROW[column + 1 :]]


# body, status, what the message must say
MALFORMED = {
    "not json": (b"{rows: [1, 2", 422, "body is not valid JSON"),
    "not an object": (b"[1, 2]", 422, 'body must be a JSON object {"rows"'),
    "empty body": (b"", 422, "body is empty"),
    "missing rows": (json.dumps({"pixels": [ROW]}).encode(), 422, 'field "rows" is missing'),
    "extra field": (json.dumps({"rows": [ROW], "threshold": 1}).encode(), 422, "unexpected field 'threshold'"),
    "empty batch": (rows_body([]), 422, "rows is empty"),
    "rows null": (rows_body(None), 422, "rows must be a list of rows, got null"),
    "short row": (rows_body([ROW, ROW[:-1]]), 422, "row 1 has 63 values; every row needs exactly 64"),
    "long row": (rows_body([[*ROW, 1]]), 422, "row 0 has 65 values"),
    "row not a list": (rows_body([ROW, 7]), 422, "row 1 must be a list of 64 numbers, got 7"),
    "string pixel": (rows_body([row_with(5, "3")]), 422, 'row 0, column pixel_0_5: "3" is not a number'),
    "null pixel": (rows_body([row_with(5, None)]), 422, "row 0, column pixel_0_5: null is not a number"),
    "bool pixel": (rows_body([row_with(5, True)]), 422, "row 0, column pixel_0_5: true is not a number"),
    "nan pixel": (rows_body([row_with(10, float("nan"))]), 422, "row 0, column pixel_1_2: NaN is not a finite"),
    "inf pixel": (rows_body([row_with(10, float("inf"))]), 422, "column pixel_1_2: Infinity is not a finite"),
    "above 16": (rows_body([ROW, row_with(17, 16.5)]), 422, "row 1, column pixel_2_1: 16.5 is above the maximum 16"),
    "negative": (rows_body([row_with(3, -1)]), 422, "row 0, column pixel_0_3: -1 is below the minimum 0"),
    "batch too large": (rows_body([ROW] * (MAX_ROWS + 1)), 413, f"{MAX_ROWS + 1} rows in one request; at most"),
}


@pytest.mark.parametrize(("body", "status", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_refused_naming_the_problem(
    servers: dict[str, RunningServer], body: bytes, status: int, message: str
) -> None:
    response = httpx.post(
        f"{servers['1'].url}/predict", content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_body_over_the_size_limit_gets_413(servers: dict[str, RunningServer]) -> None:
    body = b'{"rows": [' + b" " * MAX_BODY_BYTES + b"]}"
    response = httpx.post(
        f"{servers['1'].url}/predict", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 413
    assert f"larger than {MAX_BODY_BYTES} bytes" in response.json()["error"]


def test_body_that_is_not_json_media_gets_415(servers: dict[str, RunningServer]) -> None:
    response = httpx.post(f"{servers['1'].url}/predict", content=rows_body([ROW]), timeout=10)  # no content type
    assert response.status_code == 200  # JSON is the default when the client names no type
    response = httpx.post(
        f"{servers['1'].url}/predict", content=rows_body([ROW]), headers={"content-type": "text/csv"}, timeout=10
    )
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]


def test_metrics_count_requests_and_name_the_served_version(servers: dict[str, RunningServer]) -> None:
    server = servers["2"]
    assert httpx.post(f"{server.url}/predict", json={"rows": [ROW, ROW, ROW]}, timeout=10).status_code == 200
    assert httpx.post(f"{server.url}/predict", json={"rows": []}, timeout=10).status_code == 422
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert f'greenlight_model_info{{model_name="{MODEL_NAME}",model_version="2"}} 1.0' in metrics
    assert f'greenlight_predicted_rows_total{{model_name="{MODEL_NAME}",model_version="2"}}' in metrics
    requests = [line for line in metrics.splitlines() if line.startswith("bentoml_service_request_total{")]
    assert any('endpoint="/predict"' in line and 'http_response_code="200"' in line for line in requests)
    assert any('endpoint="/predict"' in line and 'http_response_code="422"' in line for line in requests)
    assert "bentoml_service_request_duration_seconds_bucket{" in metrics
    assert "greenlight_inference_seconds_bucket{" in metrics


def test_fuzzed_requests_never_get_a_server_error(servers: dict[str, RunningServer]) -> None:
    """Schemathesis generates bodies from /predict's OpenAPI schema, valid and invalid ones: none may get a 5xx."""
    url = servers["1"].url
    schema = schemathesis.openapi.from_dict(httpx.get(f"{url}/openapi.json", timeout=10).json())
    operation = schema["/predict"]["POST"]
    seen: set[int] = set()

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=url, timeout=30)
            seen.add(response.status_code)
            assert response.status_code < 500, f"{case.body!r:.300} -> {response.status_code} {response.text:.300}"

        call()
    assert 200 in seen and 422 in seen  # both kinds of body were generated and answered


def test_refused_requests_leave_no_traceback_in_the_log(servers: dict[str, RunningServer]) -> None:
    server = servers["1"]
    for body, _, _ in MALFORMED.values():
        httpx.post(f"{server.url}/predict", content=body, headers={"content-type": "application/json"}, timeout=10)
    log = server.log()
    assert "Traceback" not in log
    assert "[ERROR]" not in log


def test_build_refuses_a_version_without_a_checksum(built: list[Built], store: Path) -> None:
    version = register_onnx(store, linear_onnx(seed=11), checksum=False)
    completed = run_build(version, cwd=store)
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert f"digits-classifier/{version} has no onnx_sha256 tag" in completed.stderr.splitlines()[-1]


def test_build_of_unknown_version_fails_with_one_line(built: list[Built], store: Path) -> None:
    completed = run_build("99", cwd=store)
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert "digits-classifier/99" in completed.stderr.splitlines()[-1]
    assert "not found" in completed.stderr.splitlines()[-1]
