"""Capture to an object-store prefix: a service given GREENLIGHT_CAPTURE_DIR=s3://bucket/prefix writes its samples
there (to moto's S3 server, started and stopped here), and the reader the monitor uses reads them back."""

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bentos.capture import Capture, CaptureSettings
from tasks.core.capture_store import CaptureStore
from tasks.core.contract import compile_contract
from tasks.core.spec import digits_spec

pytestmark = pytest.mark.slow

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def s3_endpoint(monkeypatch):
    """moto's S3 server on a free port with an empty bucket `capture`, stopped after the test."""
    import boto3

    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="capture")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


class Version:
    def __init__(self, contract) -> None:
        self.name, self.version, self.contract = "digits", "4", contract


def test_samples_written_to_an_s3_prefix_read_back_with_their_answers(s3_endpoint) -> None:
    contract = compile_contract(digits_spec().dataset)
    settings = CaptureSettings.from_env({"GREENLIGHT_CAPTURE_RATE": "1", "GREENLIGHT_CAPTURE_DIR": "s3://capture/live"})
    kept = Capture(settings)
    pixels = (np.arange(64) % 17).astype(float).tolist()
    for n in range(3):
        body = json.dumps({"rows": [pixels]})
        outputs = np.eye(10, dtype=np.float32)[[n]] * 5
        kept.keep(Version(contract), f"r-{n}", contract.parse(body.encode()).feeds, outputs)
    kept.close()
    assert kept.counts == {"written": 3, "queue_full": 0, "write_error": 0}

    store = CaptureStore.open("s3://capture/live")
    assert store.versions("digits") == ["4"]
    read = store.read(store.answers_folder("digits", "4"), since=datetime.now(UTC) - timedelta(minutes=5))
    assert (read.rows, read.unfinished, read.unreadable) == (3, 0, ())
    rows = read.table.to_pylist()
    assert [(r["request_id"], r["prediction"]) for r in rows] == [("r-0", "0"), ("r-1", "1"), ("r-2", "2")]
    assert [rows[0][column] for column in contract.rows.columns] == pixels
    later = store.read(store.answers_folder("digits", "4"), since=datetime.now(UTC) + timedelta(minutes=5))
    assert later.rows == 0
