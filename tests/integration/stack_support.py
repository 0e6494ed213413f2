"""What the stack tests share: free ports, JSON over HTTP, whether a recorded process group still runs, and
the end of a service's log for a failure message.

Not a test module: test_deployment.py, test_container_pool.py and test_production_stack.py import it.
"""

import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from deployments.stack import read_json
from tasks.core.retry import wait_until

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# A small run, as a user overrides the form: 3 epochs, no pruning or distillation (what the worker runs is the
# subject of the stack tests, not compression). A 3-epoch run takes ~45 s on 2 cores (two at once: ~60 s).
SMALL_OVERRIDE = {
    "config": {
        "training": {"max_epochs": 3},
        "compression": {"pruning": {"levels": []}, "distillation": {"enabled": False}},
    }
}
RUN_TIMEOUT_S = 360


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all different (held open together while they are picked)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def request_json(url: str, body: dict | None = None, headers: dict[str, str] | None = None, method: str | None = None):
    """The decoded JSON answer, a 503 (Prefect's server busy under a run's load) asked again as the stack does."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})}, method=method)
    return read_json(request, timeout_s=30)


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def log_tail(home: Path, name: str) -> str:
    """The last lines of <home>/stack/<name>.log, where the stack logs each service."""
    path = home / "stack" / f"{name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-40:]) if path.exists() else "(no log)"


def stack_environment(home: Path, prefect_port: int, mlflow_port: int, worker_query_s: str = "2") -> dict[str, str]:
    """The environment a test starts `make up` (or up-containers) with: every store under `home`, the given ports,
    no other Prefect server, workers polling every `worker_query_s` (a run starts sooner than with the 10 s default),
    and this checkout importable by the process worker's flow runs even where the project is not pip-installed."""
    project_root = Path(__file__).resolve().parents[2]
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(
        GREENLIGHT_HOME=str(home),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
        BENTOML_HOME=str(home / "bentoml"),
        PREFECT_HOME=str(home / "prefect"),
        GREENLIGHT_PREFECT_PORT=str(prefect_port),
        GREENLIGHT_MLFLOW_PORT=str(mlflow_port),
        PREFECT_WORKER_QUERY_SECONDS=worker_query_s,
        PYTHONPATH=os.pathsep.join(filter(None, [str(project_root), os.environ.get("PYTHONPATH")])),
    )
    return env


def final_flow_run(api: str, flow_run_id: str, home: Path, worker: str) -> dict:
    """The flow run once it has ended (the worker polls, then the run imports the pipeline); a failure with the
    end of the worker's log after RUN_TIMEOUT_S."""
    flow_run: dict = {}

    def ended() -> bool:
        flow_run.update(request_json(f"{api}/flow_runs/{flow_run_id}"))
        return flow_run["state_type"] in FINAL_STATES

    if not wait_until(ended, RUN_TIMEOUT_S, every_s=3):
        pytest.fail(f"run still {flow_run['state_type']} after {RUN_TIMEOUT_S} s:\n{log_tail(home, worker)}")
    return flow_run
