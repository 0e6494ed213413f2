"""The stack's HTTP probes against a busy Prefect server: its SQLite database answers 503 under the load of a run
(Prefect's "ask again" answer), which the stack must not read as "no such work pool" and then try to create it."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployments.stack import BUSY_ATTEMPTS, http_json


class Busy(BaseHTTPRequestHandler):
    """Answers 503 to the first `busy_for` requests, then 200 with a JSON body (or 404 when `missing`)."""

    busy_for = 0
    missing = False
    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        if type(self).seen <= type(self).busy_for:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"exception_message": "Service Unavailable"}')
            return
        self.send_response(404 if self.missing else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"name": "greenlight-pool"}).encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[Busy]]]:
    handler = type("Handler", (Busy,), {"seen": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api/work_pools/x", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_busy_answer_is_asked_again_and_the_answer_that_follows_is_read(server) -> None:
    url, handler = server
    handler.busy_for = 2
    assert http_json(url) == {"name": "greenlight-pool"}
    assert handler.seen == 3


def test_a_server_busy_every_time_and_a_missing_object_both_read_as_nothing(server) -> None:
    url, handler = server
    handler.busy_for = 100
    assert http_json(url) is None
    assert handler.seen == BUSY_ATTEMPTS
    handler.busy_for, handler.missing, handler.seen = 0, True, 0
    assert http_json(url) is None and handler.seen == 1  # a 404 is an answer: not asked again
