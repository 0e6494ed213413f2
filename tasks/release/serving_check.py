"""Serving check before promotion: the built bento must start, be ready, answer right, and be fast.

The bento runs as `python -m bentoml serve` in a child process (tasks never import BentoML), bound to
127.0.0.1 on a free port, and is always stopped before the task returns.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import ServingCheckConfig
from tasks.core.keys import read_api_key
from tasks.core.processes import start_child, stop_child
from tasks.core.retry import try_again_while, wait_until
from tasks.core.spec import DatasetSpec, value_text
from tasks.data.split import DataSplits
from tasks.onnx.runtime import run_model


@dataclass(frozen=True)
class ServingCheck:
    """What a client of the candidate's bento saw during a short, bounded test."""

    ready: bool
    ready_seconds: float
    known_batch_agreement: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    detail: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_headers() -> dict[str, str]:
    """Send the API key the service will require: the one it reads, from the same variables."""
    key = read_api_key(os.environ)
    return {"Authorization": f"Bearer {key}"} if key else {}


def wait_until_ready(client: httpx.Client, server: subprocess.Popen, timeout_s: float) -> float:
    """Seconds until /readyz answered 200; raises RuntimeError if the server dies or never gets ready."""
    started = time.perf_counter()

    def ready() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"bento server exited with code {server.returncode} before it was ready")
        return client.get("/readyz", timeout=2).status_code == 200

    if not wait_until(ready, timeout_s, every_s=0.25, not_yet=(httpx.TransportError,)):
        raise RuntimeError(f"/readyz did not answer 200 within {timeout_s:.0f} s")
    return time.perf_counter() - started


def records_of(frame: pd.DataFrame, spec: DatasetSpec) -> list[dict]:
    """Test rows as the request records a client sends: the spec's input columns, missing values as null, each
    value as its type sends it (an image file as its bytes in base64, a timestamp as ISO 8601 text)."""
    inputs = frame[spec.input_columns].copy()
    for feature in spec.model_features:
        for column in feature.source_columns:
            inputs[column] = inputs[column].map(feature.client_value)
    inputs = inputs.astype(object)  # after map, which gives numbers their float dtype back (NaN, not null)
    return inputs.where(inputs.notna(), None).to_dict("records")


def expected_answers(spec: DatasetSpec, onnx_path: Path, splits: DataSplits, rows: int) -> list:
    """What the served model must answer for the first test rows: label texts, or numbers."""
    outputs = run_model(onnx_path, splits.feeds("test", rows))
    if spec.task == "regression":
        return np.asarray(outputs, dtype=float).reshape(-1).tolist()
    return [spec.label_texts()[i] for i in np.asarray(outputs).argmax(axis=1)]


def agreement(spec: DatasetSpec, answered: list, expected: list) -> float:
    """Share of answers equal to the offline ones (regression: within float32 round-off of the value)."""
    if spec.task == "regression":
        got, want = np.asarray(answered, dtype=float), np.asarray(expected, dtype=float)
        return float(np.mean(np.isclose(got, want, rtol=1e-4, atol=1e-6)))
    return float(np.mean([value_text(a) == e for a, e in zip(answered, expected, strict=True)]))


def timed_predict(client: httpx.Client, record: dict) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        response = client.post("/predict", json={"records": [record]}, headers=client_headers(), timeout=10)
        ok = response.status_code == 200
    except httpx.HTTPError:
        ok = False
    return (time.perf_counter() - started) * 1000.0, ok


def timed_load(client: httpx.Client, records: list[dict], config: ServingCheckConfig) -> tuple[int, float, float]:
    """One bounded load of single-record requests: errors, p50 and p99 in ms."""
    load = [records[i % len(records)] for i in range(config.load_requests)]
    with ThreadPoolExecutor(config.load_concurrency) as pool:
        results = list(pool.map(lambda record: timed_predict(client, record), load))
    latencies = np.array([ms for ms, _ in results])
    errors = sum(1 for _, ok in results if not ok)
    return errors, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


def probe(client: httpx.Client, records: list[dict], expected: list, spec: DatasetSpec, config: ServingCheckConfig):
    """Known-batch agreement, then a bounded load of single-record requests; returns the figures.

    A p99 over the bar is measured once more and the better load kept: on a shared machine two stalled
    requests out of 200 (another process's burst) make a p99, and a slow model is slow both times. Errors
    of both loads count."""
    batch = records[: config.known_batch_rows]
    answer = client.post("/predict", json={"records": batch}, headers=client_headers(), timeout=30)
    answer.raise_for_status()
    matched = agreement(spec, answer.json()["predictions"], expected[: len(batch)])
    errors, p50, p99 = timed_load(client, records, config)
    if p99 > config.max_p99_latency_ms:
        again_errors, again_p50, again_p99 = timed_load(client, records, config)
        print(f"serving check: p99 {p99:.1f} ms over the bar; measured again: {again_p99:.1f} ms")
        errors += again_errors
        if again_p99 < p99:
            p50, p99 = again_p50, again_p99
    return matched, errors, p50, p99


PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it


@task(name="check_serving", cache_policy=NO_CACHE)
def check_serving(
    bento_tag: str, onnx_path: Path, splits: DataSplits, config: ServingCheckConfig
) -> ServingCheck | None:
    """Start the bento, require /readyz, compare a known batch of test records with offline answers, time a load."""
    if not config.enabled:
        return None
    spec = splits.spec
    records = records_of(splits.test, spec)
    expected = expected_answers(spec, onnx_path, splits, config.known_batch_rows)
    return try_again_while(
        lambda: serve_and_probe(bento_tag, records, expected, spec, config),
        again=lambda check: not check.ready and "address already in use" in check.detail.lower(),
        attempts=PORT_ATTEMPTS,
        before_again=lambda number: print(
            f"serving check: the port was taken before the bento bound it; attempt {number} on another port"
        ),
    )


def serve_and_probe(
    bento_tag: str, records: list[dict], expected: list, spec: DatasetSpec, config: ServingCheckConfig
) -> ServingCheck:
    """One start of the bento on a free port, probed; never raises for a server that fails."""
    port = free_port()
    log = tempfile.TemporaryFile()
    # The candidate is checked as built: no following of the registry alias during the check.
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "GREENLIGHT_FOLLOW_ALIAS": ""}
    command = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", "127.0.0.1", "--port", str(port)]
    server = start_child(command, env, stdout=log)  # dies with this run, even a kill -9 of it
    limits = httpx.Limits(max_connections=config.load_concurrency + 1)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
            ready_s = wait_until_ready(client, server, config.startup_timeout_s)
            matched, errors, p50, p99 = probe(client, records, expected, spec, config)
        detail = f"{config.load_requests} requests at concurrency {config.load_concurrency}"
        return ServingCheck(True, ready_s, matched, config.load_requests, errors, p50, p99, detail)
    except (RuntimeError, httpx.HTTPError, KeyError, ValueError) as error:
        log.seek(0)
        tail = log.read().decode(errors="replace")[-1500:]
        return ServingCheck(False, 0.0, 0.0, 0, 0, 0.0, 0.0, f"{error}\n{tail}")
    finally:
        stop_child(server)
        log.close()
