"""Serve a built bento from the BentoML store, on 127.0.0.1 unless told otherwise.

`greenlight serve` runs `bentoml serve <bento tag>` with `serve_environment()`, which makes the service follow the
registry's `production` alias (bentos/follow.py); `find_bento` finds the tag from the model name and version.
"""

import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import bentoml

from tasks.core.retry import wait_until
from tasks.registry.client import PRODUCTION_ALIAS

# Loopback: putting a model on the network is a deliberate choice, not a default.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000


def serve_command(bento_tag: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """The `bentoml serve` argv for a bento in the store, using this interpreter's BentoML."""
    return [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]


GATEWAY_SERVICE = "bentos.gateway:GreenlightModels"


def gateway_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """The `bentoml serve` argv for the service answering every production model (bentos/gateway.py), imported
    from this installation's bentos package."""
    package_root = str(Path(__file__).resolve().parents[1])
    return [*serve_command(GATEWAY_SERVICE, host, port), "--working-dir", package_root]


def serve_environment(follow_alias: str | None = PRODUCTION_ALIAS, **extra: str) -> dict[str, str]:
    """This process's environment for `bentoml serve`: no usage tracking, and the registry alias to
    follow (None: serve the bento's own model only). MLFLOW_TRACKING_URI and BENTOML_HOME are inherited."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **extra}
    env.pop("GREENLIGHT_FOLLOW_ALIAS", None)
    if follow_alias:
        env["GREENLIGHT_FOLLOW_ALIAS"] = follow_alias
    return env


def start_server(
    bento_tag: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    env: Mapping[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Start serving in the background, by default without following the registry; stdout and stderr go
    to `log` when given. Stop it with .terminate()."""
    environment = serve_environment(follow_alias=None) if env is None else dict(env)
    stderr = subprocess.STDOUT if log is not None else None
    return subprocess.Popen(serve_command(bento_tag, host, port), env=environment, stdout=log, stderr=stderr)


def wait_until_ready(server: subprocess.Popen[bytes], base_url: str, timeout_s: float = 60.0) -> None:
    """Poll /readyz until the model is loaded; raise if the server exits or the time runs out."""

    def ready() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with code {server.returncode} before {base_url} was ready")
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:
            return response.status == 200

    # OSError (URLError, refused, timed out, a 503 while the model loads): the socket is bound before a worker
    # accepts, and a worker answers before its model is ready.
    if not wait_until(ready, timeout_s, every_s=0.2, not_yet=(OSError,)):
        raise TimeoutError(f"{base_url}/readyz did not answer 200 within {timeout_s:.0f} s")


def find_bento(model_name: str, model_version: str) -> str:
    """Tag of the newest bento in the store built for this registered model version."""
    matches = [
        bento
        for bento in bentoml.bentos.list()
        if bento.info.labels.get("model_name") == model_name
        and bento.info.labels.get("model_version") == str(model_version)
    ]
    if not matches:
        raise LookupError(f"no bento for {model_name} version {model_version}; run python -m bentos.build first")
    return str(max(matches, key=lambda bento: bento.info.creation_time).tag)
