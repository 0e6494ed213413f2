"""The serving bento end to end: register ONNX models with their specs in a tmp MLflow store, build, serve by
tag, call HTTP. One bento serves the bundled digits (rows and records), one a penguins-like table (records of
numbers, string and integer categories, nulls, an id column)."""

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
    json_body,
    linear_onnx,
    outputs,
    penguins_spec,
    reference,
    register_onnx,
    run_build,
    sample_rows,
    serving,
    stored_model_dir,
    table_onnx,
)
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from tasks.core.contract import MAX_BODY_BYTES, MAX_ROWS
from tasks.core.spec import DIGITS_COLUMNS, digits_spec

pytestmark = pytest.mark.slow  # builds bentos and starts two BentoML servers

PENGUINS = "penguins"
PENGUIN = {
    "island": "Dream",
    "bill_length_mm": 39.5,
    "flipper_length_mm": 190,
    "body_mass_g": 3650.0,
    "sex": "female",
    "year": 2008,
    "penguin_id": "N12A1",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_store(tmp_path_factory.mktemp("bento_service")) as tmp:
        yield tmp


@pytest.fixture(scope="module")
def built(store: Path) -> dict[str, Built]:
    """The digits model and a penguins table model, each built into its own bento from a cwd outside the repo."""
    return {
        MODEL_NAME: build(store, linear_onnx(seed=0), digits_spec()),
        PENGUINS: build(store, table_onnx(penguins_spec(), seed=0), penguins_spec(), name=PENGUINS),
    }


@pytest.fixture(scope="module")
def servers(built: dict[str, Built], store: Path) -> Iterator[dict[str, RunningServer]]:
    """One `bentoml serve <tag>` per bento on 127.0.0.1, keyed by model name, started from tmp."""
    with (
        serving(built[MODEL_NAME].bento_tag, store / "serve-digits.log") as digits,
        serving(built[PENGUINS].bento_tag, store / "serve-penguins.log") as penguins,
    ):
        yield {MODEL_NAME: digits, PENGUINS: penguins}


def post(server: RunningServer, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json=body, timeout=10)


def test_build_names_the_bento_after_the_model_and_carries_the_checksum(built: dict[str, Built], store: Path) -> None:
    for model_name, bento_name in ((MODEL_NAME, "digits_classifier"), (PENGUINS, "penguins")):
        item = built[model_name]
        name, bento_version = item.bento_tag.split(":")
        assert name == bento_name
        assert bento_version.startswith(f"v{item.version}-")
        bento_yaml = yaml.safe_load((store / "bentoml" / "bentos" / name / bento_version / "bento.yaml").read_text())
        assert bento_yaml["labels"]["model_name"] == model_name
        assert bento_yaml["labels"]["model_version"] == item.version
        assert bento_yaml["args"] == {"model_tag": item.model_tag}
        assert bento_yaml["service"] == "bentos.service:GreenlightModel"
        model_yaml = yaml.safe_load((stored_model_dir(store, item.model_tag) / "model.yaml").read_text())
        assert model_yaml["labels"]["onnx_sha256"] == hashlib.sha256(item.onnx_model).hexdigest()


def test_digits_rows_are_answered_with_labels_and_probabilities(
    built: dict[str, Built], servers: dict[str, RunningServer]
) -> None:
    rows = sample_rows(32)
    labels, probabilities = reference(built[MODEL_NAME].onnx_model, rows)
    response = post(servers[MODEL_NAME], {"rows": rows.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == response.headers["X-Model-Version"] == built[MODEL_NAME].version
    assert body["model_name"] == MODEL_NAME
    assert body["predictions"] == labels  # the digits' own labels: the integers 0..9
    assert [list(p) for p in body["probabilities"]] == [[str(d) for d in range(10)]] * len(rows)
    np.testing.assert_allclose([list(p.values()) for p in body["probabilities"]], probabilities, atol=1e-5)


def test_digits_records_are_answered_like_rows(servers: dict[str, RunningServer]) -> None:
    rows = sample_rows(3, seed=11)
    records = [dict(zip(DIGITS_COLUMNS, row.tolist(), strict=True)) for row in rows]
    by_records, by_rows = (
        post(servers[MODEL_NAME], {"records": records}),
        post(servers[MODEL_NAME], {"rows": rows.tolist()}),
    )
    assert by_records.status_code == by_rows.status_code == 200, by_records.text
    assert by_records.json() == by_rows.json()


def penguin_feeds(records: list[dict]) -> dict[str, np.ndarray]:
    """The graph's inputs for penguin records, written out by hand: numbers in spec order (NaN = missing),
    categories as text in spec order ("" = missing)."""
    numeric = [
        [r.get(c) if r.get(c) is not None else np.nan for c in ("bill_length_mm", "flipper_length_mm", "body_mass_g")]
        for r in records
    ]
    categorical = [[str(r.get(c) if r.get(c) is not None else "") for c in ("island", "sex", "year")] for r in records]
    return {"numeric": np.array(numeric, np.float32), "categorical": np.array(categorical, dtype=object)}


ODD_RECORDS = {
    "unseen category": {**PENGUIN, "island": "Atlantis"},
    "unseen integer category": {**PENGUIN, "year": 2031},
    "null where nullable": {**PENGUIN, "bill_length_mm": None, "sex": None},
    "absent where nullable": {k: v for k, v in PENGUIN.items() if k not in ("body_mass_g", "sex")},
    "id column absent": {k: v for k, v in PENGUIN.items() if k != "penguin_id"},
    "id column of another type": {**PENGUIN, "penguin_id": [1, 2]},
    "integer category as text": {**PENGUIN, "year": "2008"},
    "whole number for a float": {**PENGUIN, "body_mass_g": 3650},
}


def test_records_are_answered_in_the_users_own_labels(
    built: dict[str, Built], servers: dict[str, RunningServer]
) -> None:
    records = [PENGUIN, *ODD_RECORDS.values()]
    response = post(servers[PENGUINS], {"records": records})
    assert response.status_code == 200, response.text
    body = response.json()
    labels = penguins_spec().dataset.target.labels
    logits = outputs(built[PENGUINS].onnx_model, penguin_feeds(records))
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert body["predictions"] == [labels[i] for i in logits.argmax(axis=1)]
    assert len(set(body["predictions"])) > 1  # the records differ enough to tell a constant answer apart
    assert all(list(p) == labels for p in body["probabilities"])  # keyed by label, in the spec's order
    np.testing.assert_allclose([list(p.values()) for p in body["probabilities"]], expected, atol=1e-5)
    assert body["model_version"] == response.headers["X-Model-Version"] == built[PENGUINS].version
    assert body["model_name"] == PENGUINS


@pytest.mark.parametrize("record", ODD_RECORDS.values(), ids=ODD_RECORDS.keys())
def test_an_odd_but_valid_record_is_answered(servers: dict[str, RunningServer], record: dict) -> None:
    response = post(servers[PENGUINS], {"records": [record]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] in penguins_spec().dataset.target.labels


def test_an_unseen_category_is_answered_as_the_out_of_vocabulary_bucket(servers: dict[str, RunningServer]) -> None:
    """The toy graph codes unseen and missing alike (code 0): the answers must be the same."""
    unseen = post(servers[PENGUINS], {"records": [{**PENGUIN, "sex": "unknown"}]}).json()
    missing = post(servers[PENGUINS], {"records": [{**PENGUIN, "sex": None}]}).json()
    assert unseen["probabilities"] == missing["probabilities"]


# record, what the message must say (status 422 for all)
BAD_RECORDS = {
    "string for a number": (
        [PENGUIN, PENGUIN, {**PENGUIN, "bill_length_mm": "long"}],
        """record 2, field 'bill_length_mm': "long" is not a number""",
    ),
    "bool for a number": ([{**PENGUIN, "flipper_length_mm": True}], "record 0, field 'flipper_length_mm': true is not"),
    "list for a number": (
        [{**PENGUIN, "body_mass_g": [1, 2]}],
        "record 0, field 'body_mass_g': a list of 2 items is not",
    ),
    "null not nullable": (
        [PENGUIN, {**PENGUIN, "flipper_length_mm": None}],
        "record 1, field 'flipper_length_mm': null is not allowed",
    ),
    "NaN number": (
        [{**PENGUIN, "bill_length_mm": float("nan")}],
        "record 0, field 'bill_length_mm': NaN is not a finite",
    ),
    "object for a category": (
        [{**PENGUIN, "island": {"name": "Dream"}}],
        "record 0, field 'island': an object with keys",
    ),
    "null category not nullable": ([{**PENGUIN, "island": None}], "record 0, field 'island': null is not allowed"),
    "missing required field": (
        [{k: v for k, v in PENGUIN.items() if k != "flipper_length_mm"}],
        "record 0: field 'flipper_length_mm' is missing",
    ),
    "unknown field": (
        [{**PENGUIN, "beak": 3}],
        "record 0: unknown field 'beak'; the fields are island, bill_length_mm",
    ),
    "record not an object": ([PENGUIN, [39.5, 190]], 'record 1 must be an object {"field": value, ...}, got a list'),
    "record a number": ([7], "record 0 must be an object"),
    "rows for a table": (None, "'rows' is only for models whose inputs are all numbers"),
}


@pytest.mark.parametrize(("records", "message"), BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_a_bad_record_is_refused_naming_record_field_and_value(
    servers: dict[str, RunningServer], records: list | None, message: str
) -> None:
    body = {"rows": [[1, 2, 3]]} if records is None else {"records": records}
    response = httpx.post(
        f"{servers[PENGUINS].url}/predict", content=json_body(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]


def test_the_root_page_documents_predict_with_an_example(servers: dict[str, RunningServer]) -> None:
    response = httpx.get(f"{servers[PENGUINS].url}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "POST /predict" in page and "openapi.json" in page
    for feature in penguins_spec().dataset.features:
        assert f"<code>{feature.name}</code>" in page
    assert "Biscoe, &#34;Dream&#34;" in page or "&#34;Biscoe&#34;, &#34;Dream&#34;" in page  # allowed categories
    assert "may be null or absent" in page and "required" in page
    assert "curl -X POST" in page
    # The example on the page is a request this very server answers.
    example = json.loads(page.split("The request body:</p>\n<pre>")[1].split("</pre>")[0].replace("&#34;", '"'))
    assert post(servers[PENGUINS], example).status_code == 200


def test_the_openapi_document_is_generated_from_the_spec(servers: dict[str, RunningServer]) -> None:
    document = httpx.get(f"{servers[PENGUINS].url}/openapi.json", timeout=10).json()
    schemas = document["components"]["schemas"]
    record = schemas["Record"]
    assert set(record["properties"]) == {f.name for f in penguins_spec().dataset.features}
    assert set(record["required"]) == {"island", "flipper_length_mm", "year"}
    assert record["additionalProperties"] is False
    labels = schemas["Prediction"]["properties"]["predictions"]["items"]["enum"]
    assert labels == ["Adelie", "Chinstrap", "Gentoo"]
    example = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert post(servers[PENGUINS], example).status_code == 200


def test_predict_takes_only_post(servers: dict[str, RunningServer]) -> None:
    assert httpx.get(f"{servers[MODEL_NAME].url}/predict", timeout=10).status_code == 405


@pytest.mark.parametrize("endpoint", ["/healthz", "/livez", "/readyz"])
def test_health_endpoints_answer(servers: dict[str, RunningServer], endpoint: str) -> None:
    assert httpx.get(f"{servers[MODEL_NAME].url}{endpoint}", timeout=5).status_code == 200


ROW = [1] * len(DIGITS_COLUMNS)


def rows_body(rows: object) -> bytes:
    return json_body({"rows": rows})


def row_with(column: int, value: object) -> list[object]:
    """A valid row except for one pixel."""
    return [*ROW[:column], value, *ROW[column + 1 :]]


# body, status, what the message must say
MALFORMED = {
    "not json": (b"{rows: [1, 2", 422, "body is not valid JSON"),
    "not an object": (b"[1, 2]", 422, 'body must be a JSON object {"records"'),
    "empty body": (b"", 422, "body is empty"),
    "missing records": (b"{}", 422, 'field "records" is missing'),
    "extra field": (json_body({"rows": [ROW], "threshold": 1}), 422, "unexpected field 'threshold'"),
    "both forms": (json_body({"rows": [ROW], "records": [dict.fromkeys(DIGITS_COLUMNS, 1)]}), 422, "either"),
    "empty batch": (rows_body([]), 422, "rows is empty"),
    "rows null": (rows_body(None), 422, "rows must be a list, got null"),
    "short row": (rows_body([ROW, ROW[:-1]]), 422, "row 1 has 63 values; every row needs exactly 64"),
    "long row": (rows_body([[*ROW, 1]]), 422, "row 0 has 65 values"),
    "row not a list": (rows_body([ROW, 7]), 422, "row 1 must be a list of 64 numbers, got 7"),
    "string pixel": (rows_body([row_with(5, "3")]), 422, 'row 0, column pixel_0_5: "3" is not a number'),
    "null pixel": (rows_body([row_with(5, None)]), 422, "row 0, column pixel_0_5: null is not allowed"),
    "bool pixel": (rows_body([row_with(5, True)]), 422, "row 0, column pixel_0_5: true is not a number"),
    "nan pixel": (rows_body([row_with(10, float("nan"))]), 422, "row 0, column pixel_1_2: NaN is not a finite"),
    "inf pixel": (rows_body([row_with(10, float("inf"))]), 422, "column pixel_1_2: Infinity is not a finite"),
    "above 16": (rows_body([ROW, row_with(17, 16.5)]), 422, "row 1, column pixel_2_1: 16.5 is above the maximum 16"),
    "negative": (rows_body([row_with(3, -1)]), 422, "row 0, column pixel_0_3: -1 is below the minimum 0"),
    "batch too large": (rows_body([ROW] * (MAX_ROWS + 1)), 413, f"{MAX_ROWS + 1} rows in one request; at most"),
    "pixel record above 16": (
        json_body({"records": [dict.fromkeys(DIGITS_COLUMNS, 17)]}),
        422,
        "record 0, field 'pixel_0_0': 17 is above the maximum 16",
    ),
}


@pytest.mark.parametrize(("body", "status", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_refused_naming_the_problem(
    servers: dict[str, RunningServer], body: bytes, status: int, message: str
) -> None:
    response = httpx.post(
        f"{servers[MODEL_NAME].url}/predict", content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_body_over_the_size_limit_gets_413(servers: dict[str, RunningServer]) -> None:
    body = b'{"rows": [' + b" " * MAX_BODY_BYTES + b"]}"
    response = httpx.post(
        f"{servers[MODEL_NAME].url}/predict", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 413
    assert f"larger than {MAX_BODY_BYTES} bytes" in response.json()["error"]


def test_body_that_is_not_json_media_gets_415(servers: dict[str, RunningServer]) -> None:
    response = httpx.post(f"{servers[MODEL_NAME].url}/predict", content=rows_body([ROW]), timeout=10)  # no content type
    assert response.status_code == 200  # JSON is the default when the client names no type
    response = httpx.post(
        f"{servers[MODEL_NAME].url}/predict", content=rows_body([ROW]), headers={"content-type": "text/csv"}, timeout=10
    )
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]


def test_metrics_count_requests_and_name_the_served_version(
    built: dict[str, Built], servers: dict[str, RunningServer]
) -> None:
    # The server started last: each `bentoml serve` empties the Prometheus directory of the BentoML home
    # they share, so the first server's metrics files are gone from it.
    server, version = servers[PENGUINS], built[PENGUINS].version
    assert post(server, {"records": [PENGUIN, PENGUIN, PENGUIN]}).status_code == 200
    assert post(server, {"records": []}).status_code == 422
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert f'greenlight_model_info{{model_name="{PENGUINS}",model_version="{version}"}} 1.0' in metrics
    assert f'greenlight_predicted_rows_total{{model_name="{PENGUINS}",model_version="{version}"}}' in metrics
    assert f'greenlight_requests_total{{model_name="{PENGUINS}",status="200"}}' in metrics
    assert f'greenlight_requests_total{{model_name="{PENGUINS}",status="422"}}' in metrics
    assert f'greenlight_request_seconds_count{{model_name="{PENGUINS}"}} ' in metrics
    assert "bentoml_service_request_total" not in metrics  # BentoML's middleware is off: it cost ~60 us a request
    assert "greenlight_inference_seconds_bucket{" in metrics


@pytest.mark.parametrize("model_name", [MODEL_NAME, PENGUINS])
def test_fuzzed_requests_never_get_a_server_error(servers: dict[str, RunningServer], model_name: str) -> None:
    """Schemathesis generates bodies from /predict's OpenAPI schema, valid and invalid ones: none may get a 5xx."""
    url = servers[model_name].url
    schema = schemathesis.openapi.from_dict(httpx.get(f"{url}/openapi.json", timeout=10).json())
    operation = schema["/predict"]["POST"]
    seen: set[int] = set()

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=url, timeout=30)
            seen.add(response.status_code)
            assert response.status_code < 500, f"{case.body!r:.300} -> {response.status_code} {response.text:.300}"

        call()
    assert 200 in seen and 422 in seen  # both kinds of body were generated and answered


def test_refused_requests_leave_no_traceback_in_the_log(servers: dict[str, RunningServer]) -> None:
    for body, _, _ in MALFORMED.values():
        httpx.post(
            f"{servers[MODEL_NAME].url}/predict", content=body, headers={"content-type": "application/json"}, timeout=10
        )
    for records, _ in BAD_RECORDS.values():
        httpx.post(f"{servers[PENGUINS].url}/predict", content=json_body({"records": records}), timeout=10)
    for server in servers.values():
        log = server.log()
        assert "Traceback" not in log
        assert "[ERROR]" not in log


def test_build_refuses_a_version_without_a_checksum(built: dict[str, Built], store: Path) -> None:
    version = register_onnx(store, linear_onnx(seed=11), digits_spec(), checksum=False)
    completed = run_build(version, cwd=store)
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert f"digits-classifier/{version} has no onnx_sha256 tag" in completed.stderr.splitlines()[-1]


def test_build_of_unknown_version_fails_with_one_line(built: dict[str, Built], store: Path) -> None:
    completed = run_build("99", cwd=store)
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert "digits-classifier/99" in completed.stderr.splitlines()[-1]
    assert "not found" in completed.stderr.splitlines()[-1]
