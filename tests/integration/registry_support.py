"""What the pipeline tests share: the registry and bento-store state a rejected run must not change, and the
production model served by `greenlight serve` answering JSON over real HTTP.

Not a test module: test_pipeline.py, test_own_data.py and test_bad_data.py import it.
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from endpoint_support import free_port
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

MODEL = "digits-classifier"


def registry_state(client: MlflowClient, model: str = MODEL) -> tuple[list[str], str | None]:
    """The model's versions and the version `production` points at (None before the first promotion)."""
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{model}'"))
    try:
        production = client.get_registered_model(model).aliases.get("production")
    except MlflowException:
        production = None
    return versions, production


def bentos() -> list[str]:
    """Every bento tag in the BentoML store (BENTOML_HOME)."""
    import bentoml

    return sorted(str(b.tag) for b in bentoml.list())


def post_json(url: str, payload: object) -> tuple[int, dict]:
    """POST a JSON body; the status and the decoded answer, refusals included."""
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@contextmanager
def served(model_name: str | None, log: Path, **env: str) -> Iterator[str]:
    """`greenlight serve --model-name NAME` (None: `greenlight serve`, every model) on a free port, with `env` added
    to this process's environment, until the block ends; yields its base URL. BentoML's supervisor binds its own
    control sockets on ports it picks before the server binds ours, and once took the very port picked here
    ("Address already in use"): that start is tried again on another port."""
    from bentos.serve import wait_until_ready

    which = ["--model-name", model_name] if model_name else []
    for attempt in range(3):
        port = free_port()
        with log.open("wb") as output:
            server = subprocess.Popen(
                [sys.executable, "-m", "deployments.cli", "serve", *which, "--port", str(port)],
                cwd=Path(__file__).resolve().parents[2],
                env={**os.environ, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_ready(server, f"http://127.0.0.1:{port}", timeout_s=90)
            break
        except RuntimeError:
            stop_group(server)
            if attempt == 2 or f"Address already in use (addr='tcp://127.0.0.1:{port}')" not in log.read_text():
                raise
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(server)


def stop_group(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (gone already: nothing to do), then wait for the server."""
    try:
        os.killpg(server.pid, 15)
    except ProcessLookupError:
        pass
    server.wait(timeout=30)
