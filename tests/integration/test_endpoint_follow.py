"""The served model follows the registry's production alias, under load, without a failed request; when the
alias moves to a version trained on another spec, the request contract moves with it."""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import httpx
import numpy as np
import pytest
from endpoint_support import (
    MODEL_NAME,
    Built,
    RunningServer,
    build,
    diabetes_spec,
    isolated_store,
    linear_onnx,
    outputs,
    reference,
    register_onnx,
    registered_onnx_file,
    sample_rows,
    serving,
    set_alias,
    table_onnx,
)

from tasks.core.retry import wait_until
from tasks.core.spec import digits_spec

pytestmark = pytest.mark.slow  # builds a bento and serves it while moving the alias

ROWS = sample_rows(8, seed=3)
POLL_S = "0.3"


@dataclass(frozen=True)
class Answer:
    status: int
    header_version: str | None
    body: dict | None


class Traffic(threading.Thread):
    """One client sending the same batch back to back, recording every answer, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[Answer] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stopped.is_set():
                try:
                    response = client.post("/predict", json={"rows": ROWS.tolist()})
                except httpx.HTTPError as error:
                    self.answers.append(Answer(0, repr(error), None))
                    continue
                body = response.json() if response.status_code == 200 else None
                self.answers.append(Answer(response.status_code, response.headers.get("X-Model-Version"), body))

    def wait_for(self, version: str, timeout_s: float = 30) -> None:
        """Until an answer comes from `version`, then a few more so the switch is seen to stick."""
        deadline = time.monotonic() + timeout_s

        def answered_by_version() -> bool:
            return bool(self.answers) and self.answers[-1].header_version == version

        if not wait_until(answered_by_version, timeout_s, every_s=0.05):
            raise AssertionError(f"no answer from version {version} within {timeout_s:.0f} s")
        seen = len(self.answers)
        wait_until(lambda: len(self.answers) >= seen + 20, deadline - time.monotonic(), every_s=0.05)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_store(tmp_path_factory.mktemp("endpoint_follow")) as tmp:
        yield tmp


@pytest.fixture(scope="module")
def versions(store: Path) -> dict[str, bytes]:
    """Version 1 with a bento; version 2 only registered, so following it means a download."""
    first: Built = build(store, linear_onnx(seed=0), digits_spec())
    second = linear_onnx(seed=1)
    assert register_onnx(store, second, digits_spec()) == "2"
    set_alias("1")
    return {"1": first.onnx_model, "2": second, "bento_tag": first.bento_tag.encode()}


@pytest.fixture(scope="module")
def server(versions: dict[str, bytes], store: Path) -> Iterator[RunningServer]:
    bento_tag = versions["bento_tag"].decode()
    with serving(bento_tag, store / "follow.log", follow="production", GREENLIGHT_ALIAS_POLL_S=POLL_S) as running:
        yield running


def test_promotion_and_rollback_switch_the_model_without_a_failed_request(
    versions: dict[str, bytes], server: RunningServer
) -> None:
    expected = {version: reference(versions[version], ROWS)[0] for version in ("1", "2")}
    assert expected["1"] != expected["2"]  # otherwise a switch could not be seen in the labels
    traffic = Traffic(server.url)
    traffic.start()
    try:
        traffic.wait_for("1")
        set_alias("2")  # promotion
        traffic.wait_for("2")
        set_alias("1")  # rollback
        traffic.wait_for("1")
    finally:
        traffic.stopped.set()
        traffic.join(timeout=15)

    failed = [answer for answer in traffic.answers if answer.status != 200]
    assert not failed, f"{len(failed)} of {len(traffic.answers)} requests failed, first: {failed[0]}"
    for answer in traffic.answers:
        # Each answer names the version whose model actually computed it.
        assert answer.body["model_version"] == answer.header_version
        assert answer.body["predictions"] == expected[answer.header_version]
    assert [version for version, _ in groupby(answer.header_version for answer in traffic.answers)] == ["1", "2", "1"]
    log = server.log()
    assert "switched digits-classifier from version 1 to 2" in log
    assert "switched digits-classifier from version 2 to 1" in log


def test_a_promoted_version_failing_its_checksum_is_not_served(
    versions: dict[str, bytes], server: RunningServer, store: Path
) -> None:
    """Version 3's stored file is replaced after registration: the alias moves to it, version 1 keeps answering."""
    tampered = register_onnx(store, linear_onnx(seed=2), digits_spec())
    registered_onnx_file(tampered).write_bytes(versions["2"])
    traffic = Traffic(server.url)
    traffic.start()
    try:
        traffic.wait_for("1")
        set_alias(tampered)
        time.sleep(10 * float(POLL_S))  # ten looks at the alias
        traffic.wait_for("1")
    finally:
        traffic.stopped.set()
        traffic.join(timeout=15)
        set_alias("1")

    assert {(answer.status, answer.header_version) for answer in traffic.answers} == {(200, "1")}
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    failure = f'greenlight_model_load_failures_total{{model_name="{MODEL_NAME}",model_version="{tampered}",'
    assert f'{failure}reason="checksum_mismatch"}} 1.0' in metrics  # tried once, not once per poll
    log = server.log()
    assert f"still serving version 1: {MODEL_NAME} version {tampered}" in log
    assert "fails its checksum" in log
    assert "Traceback" not in log


DIABETIC = [{"age": 50, "bmi": 31.2, "sex": 2}, {"age": 23, "bmi": None, "sex": 1}, {"age": 71, "sex": 1}]


def wait_for_version(url: str, body: dict, version: str, timeout_s: float = 30) -> httpx.Response:
    """Until `body` is answered 200 by `version`: the alias move has reached the endpoint."""

    def answered() -> httpx.Response | None:
        response = httpx.post(f"{url}/predict", json=body, timeout=10)
        return response if response.status_code == 200 and response.headers["X-Model-Version"] == version else None

    response = wait_until(answered, timeout_s, every_s=0.1)
    if response is None:
        raise AssertionError(f"{body} was not answered by version {version} within {timeout_s:.0f} s")
    return response


def test_the_contract_moves_with_the_alias_to_a_version_of_another_spec(server: RunningServer, store: Path) -> None:
    """Digits (rows of pixels, labels 0..9) -> a regression on a table (records, numbers) -> digits again."""
    table = table_onnx(diabetes_spec(), seed=4)
    version = register_onnx(store, table, diabetes_spec())
    rows = {"rows": ROWS.tolist()}
    try:
        set_alias(version)
        answer = wait_for_version(server.url, {"records": DIABETIC}, version).json()
        expected = outputs(
            table,
            {
                "numeric": np.array([[50, 31.2], [23, np.nan], [71, np.nan]], np.float32),
                "categorical": np.array([["2"], ["1"], ["1"]], dtype=object),
            },
        )
        np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-5)
        assert "probabilities" not in answer  # a regression answers numbers, in the target's units
        refused = httpx.post(f"{server.url}/predict", json=rows, timeout=10)
        assert refused.status_code == 422
        assert "'rows' is only for models whose inputs are all numbers" in refused.json()["error"]
        page = httpx.get(f"{server.url}/", timeout=10).text
        assert "<code>bmi</code>" in page and "pixel_0_0" not in page
        document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
        assert set(document["components"]["schemas"]["Record"]["properties"]) == {"age", "bmi", "sex"}
    finally:
        set_alias("1")
    answer = wait_for_version(server.url, rows, "1").json()
    assert answer["predictions"] == reference(linear_onnx(seed=0), ROWS)[0]
    assert "pixel_0_0" in httpx.get(f"{server.url}/", timeout=10).text
    log = server.log()
    assert f"switched {MODEL_NAME} from version 1 to {version}" in log
    assert "Traceback" not in log
