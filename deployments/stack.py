"""`python -m deployments.stack up|down`: Prefect server, worker and MLflow UI for this checkout, on 127.0.0.1.

`up` starts each service in its own process group, records the groups in <home>/stack/pids.json, creates
the process work pool and applies deployments/prefect.yaml. `down` stops exactly the recorded groups.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.errors import GreenlightError
from tasks.locations import PROJECT_ROOT, Locations, export_locations, resolve_locations
from tasks.registry import default_artifact_location

HOST = "127.0.0.1"
WORK_POOL = "greenlight-process"
DEPLOYMENT = "training_pipeline/nightly"
PREFECT_FILE = PROJECT_ROOT / "deployments" / "prefect.yaml"
# A first start migrates a fresh SQLite database (~20 s for Prefect on 2 cores); leave room for a slow disk.
START_TIMEOUT_S = 180
# Servers exit within a second or two of SIGTERM; a flow run in the worker's group gets the same grace.
STOP_GRACE_S = 15


class StackError(GreenlightError):
    """The local stack could not be started or stopped as asked."""


@dataclass(frozen=True)
class Ports:
    prefect: int
    mlflow: int

    @property
    def prefect_api_url(self) -> str:
        return f"http://{HOST}:{self.prefect}/api"


@dataclass(frozen=True)
class StartedProcess:
    """One process group `up` started; `started` (the leader's start time) tells it from a reused pid."""

    name: str
    pid: int
    started: str
    log: str


def read_ports(environ: dict[str, str]) -> Ports:
    """Ports from GREENLIGHT_PREFECT_PORT / GREENLIGHT_MLFLOW_PORT, defaulting to Prefect's and MLflow's own."""
    ports = {}
    for name, variable, default in [("prefect", "GREENLIGHT_PREFECT_PORT", 4200), ("mlflow", "GREENLIGHT_MLFLOW_PORT", 5000)]:
        raw = environ.get(variable) or str(default)
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StackError(f"{variable} must be a TCP port number (1-65535), got {raw!r}")
        ports[name] = int(raw)
    return Ports(**ports)


def executable(name: str) -> str:
    """A console script of the running interpreter's environment (`.venv/bin/prefect`), not one on PATH."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise StackError(f"{path} not found: run `make install` (or pip install -e .) in this environment first")
    return str(path)


def started_at(pid: int) -> str | None:
    """The process's start time as `ps` prints it, or None if no such process."""
    env = {**os.environ, "LC_ALL": "C"}  # the same text in `up` and `down`, whatever the user's locale
    out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, env=env)
    return out.stdout.strip() or None


def reap(pid: int) -> None:
    """Collect an exited child of this process, so a zombie leader doesn't keep its group looking alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def group_running(proc: StartedProcess) -> bool:
    """Whether any process of the group still runs; a pid since reused by another program does not count."""
    leader = started_at(proc.pid)
    if leader is not None and leader != proc.started:
        return False
    reap(proc.pid)
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_for_exit(proc: StartedProcess, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reap(proc.pid)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def stop_group(proc: StartedProcess) -> str:
    """SIGTERM the whole group, SIGKILL it after STOP_GRACE_S; says what happened."""
    if not group_running(proc):
        return f"{proc.name:<15} had already exited (pid {proc.pid})"
    os.killpg(proc.pid, signal.SIGTERM)
    if wait_for_exit(proc, STOP_GRACE_S):
        return f"{proc.name:<15} stopped (process group {proc.pid})"
    os.killpg(proc.pid, signal.SIGKILL)
    wait_for_exit(proc, 5)
    return f"{proc.name:<15} killed (process group {proc.pid}): still running {STOP_GRACE_S} s after SIGTERM"


def start_process(name: str, command: list[str], stack_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `command` in a new session (its own process group), output appended to <stack_dir>/<name>.log."""
    with (stack_dir / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def log_tail(path: str | Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(ready: Callable[[], bool], popen: subprocess.Popen, proc: StartedProcess, what: str) -> float:
    """Poll `ready` until true; fail with the log's tail if the process exits or START_TIMEOUT_S passes."""
    start = time.monotonic()
    while time.monotonic() - start < START_TIMEOUT_S:
        if ready():
            return time.monotonic() - start
        if popen.poll() is not None:
            raise StackError(
                f"{proc.name} exited with code {popen.returncode} before {what}; last lines of {proc.log}:\n"
                f"{log_tail(proc.log)}"
            )
        time.sleep(0.5)
    raise StackError(f"{proc.name}: no {what} within {START_TIMEOUT_S} s; last lines of {proc.log}:\n{log_tail(proc.log)}")


def http_json(url: str, body: dict | None = None) -> object | None:
    """GET (or POST `body`) and decode JSON; None when nothing answers or the answer is not a 2xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read() or b"null")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((HOST, port)) == 0


def read_record(path: Path) -> tuple[Ports, list[StartedProcess]] | None:
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return Ports(**record["ports"]), [StartedProcess(**p) for p in record["processes"]]


def write_record(path: Path, ports: Ports, processes: list[StartedProcess]) -> None:
    path.write_text(json.dumps({"ports": asdict(ports), "processes": [asdict(p) for p in processes]}, indent=2))


def deployment_applied_since(ports: Ports, since: datetime) -> bool:
    found = http_json(f"{ports.prefect_api_url}/deployments/name/{DEPLOYMENT}")
    return isinstance(found, dict) and datetime.fromisoformat(found["updated"]) >= since


def deploy(ports: Ports, stack_dir: Path, env: dict[str, str]) -> None:
    """Apply deployments/prefect.yaml from the repo root (its pull step records this checkout's path)."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    command = [executable("prefect"), "deploy", "--no-prompt", "--prefect-file", str(PREFECT_FILE), "--all"]
    out = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = stack_dir / "deploy.log"
    log.write_text(out.stdout + out.stderr)
    if out.returncode == 0:
        return
    if not deployment_applied_since(ports, since):
        raise StackError(f"prefect deploy failed (exit {out.returncode}); last lines of {log}:\n{log_tail(log)}")
    # Prefect 3.8's CLI asks for the pool's online workers after applying, sending `"limit": null`, which
    # FastAPI >= 0.151 rejects (422). The deployment itself is in place; pin fastapi<0.151 to silence this.
    print(f"warning: prefect deploy applied {DEPLOYMENT} but exited {out.returncode} afterwards (see {log})")


def ensure_work_pool(ports: Ports, env: dict[str, str]) -> str:
    """Create the process work pool unless the server already has it."""
    if http_json(f"{ports.prefect_api_url}/work_pools/{WORK_POOL}") is not None:
        return "exists"
    command = [executable("prefect"), "work-pool", "create", WORK_POOL, "--type", "process"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise StackError(f"could not create work pool {WORK_POOL}: {out.stdout}{out.stderr}")
    return "created"


def worker_online(ports: Ports) -> bool:
    workers = http_json(f"{ports.prefect_api_url}/work_pools/{WORK_POOL}/workers/filter", body={})
    return any(w.get("status") == "ONLINE" for w in workers or [])


def mlflow_command(locations: Locations, ports: Ports) -> list[str]:
    """MLflow's server over the pipeline's store. Runs logged straight to SQLite keep file:// artifact URIs,
    which the server reads from disk; anything logged through the server is proxied into the same folder."""
    artifacts = default_artifact_location(locations.tracking_uri)
    command = [executable("mlflow"), "server", "--backend-store-uri", locations.tracking_uri,
               "--host", HOST, "--port", str(ports.mlflow), "--workers", "1"]
    return command + (["--artifacts-destination", artifacts] if artifacts else [])


def print_urls(locations: Locations, ports: Ports, mlflow_started: bool) -> None:
    prefect = executable("prefect")
    mlflow_url = f"http://{HOST}:{ports.mlflow}" if mlflow_started else locations.tracking_uri
    print(f"  Prefect UI   http://{HOST}:{ports.prefect}   deployment {DEPLOYMENT} (cron 0 2 * * * UTC)")
    print(f"  MLflow UI    {mlflow_url}   store {locations.tracking_uri}")
    print("Run the pipeline now:")
    print(f"  PREFECT_API_URL={ports.prefect_api_url} {prefect} deployment run {DEPLOYMENT} \\")
    print("      --params '{\"config\": {\"training\": {\"max_epochs\": 10}}}'")
    print("  or in the Prefect UI: Deployments -> nightly -> Run -> Custom run (the RunConfig form)")
    print(f"Logs in {locations.home / 'stack'}; stop everything with `make down`.")


def up(locations: Locations, ports: Ports) -> int:
    stack_dir = locations.home / "stack"
    record_path = stack_dir / "pids.json"
    recorded = read_record(record_path)
    if recorded:
        old_ports, old = recorded
        running = [p.name for p in old if group_running(p)]
        if len(running) == len(old):
            print(f"Greenlight stack already running ({', '.join(running)}; see {record_path}):")
            print_urls(locations, old_ports, mlflow_started=any(p.name == "mlflow-ui" for p in old))
            return 0
        if running:
            raise StackError(
                f"stack is half up: {', '.join(running)} still running, the rest exited (logs in {stack_dir}); "
                "run `make down`, then `make up`"
            )
        record_path.unlink()  # every process it names has exited

    serve_mlflow = not locations.tracking_uri.startswith(("http://", "https://"))
    busy = [p for p in ([ports.prefect] + [ports.mlflow] * serve_mlflow) if port_in_use(p)]
    if busy:
        raise StackError(
            f"port {', '.join(map(str, busy))} on {HOST} already in use by something this stack did not start "
            f"(nothing running is recorded in {record_path}); stop it, or choose other ports with "
            "GREENLIGHT_PREFECT_PORT / GREENLIGHT_MLFLOW_PORT"
        )

    stack_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # the server must not think it is a client of some other server
    processes: list[StartedProcess] = []

    def launch(name: str, command: list[str], extra_env: dict[str, str]) -> tuple[subprocess.Popen, StartedProcess]:
        popen = start_process(name, command, stack_dir, {**env, **extra_env})
        proc = StartedProcess(name, popen.pid, started_at(popen.pid) or "", str(stack_dir / f"{name}.log"))
        processes.append(proc)
        write_record(record_path, ports, processes)  # written per process, so an interrupted `up` can still go down
        return popen, proc

    try:
        t0 = time.monotonic()
        server, proc = launch(
            "prefect-server", [executable("prefect"), "server", "start", "--host", HOST, "--port", str(ports.prefect)], {}
        )
        health = f"{ports.prefect_api_url}/health"
        took = wait_until(lambda: http_json(health) is True, server, proc, f"answer on {health}")
        print(f"prefect server  up in {took:.1f} s")

        env["PREFECT_API_URL"] = os.environ["PREFECT_API_URL"] = ports.prefect_api_url
        t = time.monotonic()
        pool = ensure_work_pool(ports, env)
        deploy(ports, stack_dir, env)
        print(f"deployment      {DEPLOYMENT} applied in {time.monotonic() - t:.1f} s (work pool {WORK_POOL} {pool})")

        worker_command = [executable("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process",
                          "--name", f"greenlight-{os.getpid()}", "--install-policy", "never"]
        worker, proc = launch("prefect-worker", worker_command, {})
        took = wait_until(lambda: worker_online(ports), worker, proc, f"worker online in pool {WORK_POOL}")
        print(f"prefect worker  online in {took:.1f} s")

        if serve_mlflow:
            if locations.tracking_uri.startswith("sqlite:///"):
                Path(locations.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # The server's job runner (GenAI evaluation jobs: 7 huey consumers, ~1 GB) has nothing to do here.
            mlflow, proc = launch("mlflow-ui", mlflow_command(locations, ports), {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
            health = f"http://{HOST}:{ports.mlflow}/health"
            took = wait_until(lambda: http_ok(health), mlflow, proc, f"answer on {health}")
            print(f"mlflow ui       up in {took:.1f} s")
    except BaseException:
        for proc in reversed(processes):
            print(stop_group(proc), file=sys.stderr)
        record_path.unlink(missing_ok=True)
        raise

    print(f"\nGreenlight stack up in {time.monotonic() - t0:.1f} s (process groups in {record_path}):")
    print_urls(locations, ports, serve_mlflow)
    return 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def down(locations: Locations) -> int:
    record_path = locations.home / "stack" / "pids.json"
    recorded = read_record(record_path)
    if recorded is None:
        print(f"nothing to stop: no stack recorded in {record_path}")
        return 0
    _, processes = recorded
    for proc in reversed(processes):
        print(stop_group(proc))
    record_path.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.stack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    locations = resolve_locations()
    export_locations(locations)
    try:
        return up(locations, read_ports(os.environ)) if args.action == "up" else down(locations)
    except GreenlightError as error:
        print(f"\nstack {args.action}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
