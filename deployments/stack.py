"""`python -m deployments.stack up|down`: Prefect server, worker, new-data watcher and MLflow UI, on 127.0.0.1.

`up` starts each service in its own process group and records the groups in <home>/stack/pids.json, then
creates the process work pool and applies deployments/prefect.yaml. `down` stops exactly the recorded groups,
whichever stack recorded them (deployments/production.py starts the production shape with this launcher).
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
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deployments.watch import DEPLOYMENT as NEW_DATA_DEPLOYMENT
from deployments.watch import watch_roots
from tasks.core import retry
from tasks.core.errors import GreenlightError
from tasks.core.locations import PROJECT_ROOT, Locations, export_locations, resolve_locations
from tasks.registry.client import default_artifact_location

HOST = "127.0.0.1"
WORK_POOL = "greenlight-process"
DEPLOYMENT = "training_pipeline/nightly"
PREFECT_FILE = PROJECT_ROOT / "deployments" / "prefect.yaml"
# A first start migrates fresh SQLite databases: ~15 s each on 2 busy cores; leave room for a slow disk.
START_TIMEOUT_S = 180
# Servers exit within a second or two of SIGTERM; the worker first stops the flow run it is executing.
STOP_GRACE_S = 20


class StackError(GreenlightError):
    """The local stack could not be started or stopped as asked."""


@dataclass(frozen=True)
class Ports:
    prefect: int
    mlflow: int

    @property
    def prefect_api_url(self) -> str:
        return f"http://{HOST}:{self.prefect}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow}"


@dataclass(frozen=True)
class StartedProcess:
    """One process group `up` started; `started` (its leader's start time) tells it apart from a reused pid."""

    name: str
    pid: int
    started: str
    log: str
    # How the service shuts down cleanly (`pg_ctl stop`), tried before the group is signalled; empty: SIGTERM.
    stop_command: tuple[str, ...] = ()


def port_setting(environ: dict[str, str], variable: str, default: int) -> int:
    raw = environ.get(variable) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{variable} must be a TCP port number (1-65535), got {raw!r}")
    return int(raw)


def read_ports(environ: dict[str, str]) -> Ports:
    """GREENLIGHT_PREFECT_PORT / GREENLIGHT_MLFLOW_PORT, else Prefect's and MLflow's usual 4200 and 5000."""
    return Ports(
        prefect=port_setting(environ, "GREENLIGHT_PREFECT_PORT", 4200),
        mlflow=port_setting(environ, "GREENLIGHT_MLFLOW_PORT", 5000),
    )


def executable(name: str) -> str:
    """A console script of the running interpreter's environment (`.venv/bin/prefect`), not whatever is on PATH."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise StackError(f"{path} not found: run `make install` first (or pip install -e . in this environment)")
    return str(path)


# --- processes: start, recognise, stop -------------------------------------------------------------------


def started_at(pid: int) -> str | None:
    """The process's start time as `ps` prints it, or None if there is no such process."""
    env = {**os.environ, "LC_ALL": "C"}  # the same text in `up` and in `down`, whatever the user's locale
    out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, env=env)
    return out.stdout.strip() or None


def group_alive(proc: StartedProcess) -> bool:
    """Whether any process of the group still runs; a pid since reused by another program does not count."""
    leader = started_at(proc.pid)
    if leader is not None and leader != proc.started:
        return False
    try:
        os.waitpid(proc.pid, os.WNOHANG)  # reap our own exited child, or its zombie keeps the group "alive"
    except ChildProcessError:
        pass
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_for_exit(proc: StartedProcess, timeout_s: float) -> bool:
    return bool(retry.wait_until(lambda: not group_alive(proc), timeout_s, every_s=0.2))


def stop_group(proc: StartedProcess) -> str:
    """The service's own stop command if it has one, else SIGTERM to the whole group, SIGKILL after STOP_GRACE_S;
    says what happened."""
    if not group_alive(proc):
        return f"{proc.name:<15} had already exited (pid {proc.pid})"
    if proc.stop_command:
        try:
            subprocess.run(proc.stop_command, capture_output=True, timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass  # signalled below
        if wait_for_exit(proc, STOP_GRACE_S):
            return f"{proc.name:<15} stopped by its stop command (process group {proc.pid})"
    os.killpg(proc.pid, signal.SIGTERM)
    if wait_for_exit(proc, STOP_GRACE_S):
        return f"{proc.name:<15} stopped (process group {proc.pid})"
    os.killpg(proc.pid, signal.SIGKILL)
    wait_for_exit(proc, 5)
    return f"{proc.name:<15} killed (process group {proc.pid}): still running {STOP_GRACE_S} s after SIGTERM"


def log_tail(path: str | Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class StackRecord:
    """What pids.json says: which stack (`embedded` or `production`), its ports as recorded, its processes."""

    kind: str
    ports: dict[str, int]
    processes: list[StartedProcess]


def read_record(path: Path) -> StackRecord | None:
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    processes = [StartedProcess(**{**p, "stop_command": tuple(p.get("stop_command", ()))}) for p in record["processes"]]
    return StackRecord(record.get("kind", "embedded"), record["ports"], processes)


class Launcher:
    """Starts services in their own sessions, logging to <stack_dir>/<name>.log, and records each in pids.json
    the moment it exists, so that `down` can stop whatever an interrupted `up` left behind."""

    def __init__(self, stack_dir: Path, ports: Ports, env: dict[str, str], kind: str = "embedded"):
        self.stack_dir, self.ports, self.env, self.kind = stack_dir, ports, env, kind
        self.record_path = stack_dir / "pids.json"
        self.started: list[StartedProcess] = []
        self.popens: dict[str, subprocess.Popen] = {}
        self.launched_at: dict[str, float] = {}

    def start(
        self, name: str, command: list[str], extra_env: dict[str, str] | None = None, stop_command: tuple[str, ...] = ()
    ) -> StartedProcess:
        log = self.stack_dir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env={**self.env, **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, which `down` signals as a whole
            )
        proc = StartedProcess(name, popen.pid, started_at(popen.pid) or "", str(log), stop_command)
        self.started.append(proc)
        self.popens[name] = popen
        self.launched_at[name] = time.monotonic()
        record = {"kind": self.kind, "ports": asdict(self.ports), "processes": [asdict(p) for p in self.started]}
        self.record_path.write_text(json.dumps(record, indent=2))
        return proc

    def wait_until(self, ready: Callable[[], bool], proc: StartedProcess, what: str) -> float:
        """Poll `ready`; fail with the log's tail if the process exits first or START_TIMEOUT_S passes.

        Returns:
            Seconds from starting the process until it was ready.
        """
        start, popen = self.launched_at[proc.name], self.popens[proc.name]

        def failed(problem: str) -> StackError:
            return StackError(f"{proc.name} {problem}; last lines of {proc.log}:\n{log_tail(proc.log)}")

        def up() -> bool:
            if ready():
                return True
            if (code := popen.poll()) is not None:
                raise failed(f"exited with code {code} before {what}")
            return False

        # From the launch, not from this call: processes started together are waited for one after another.
        if not retry.wait_until(up, START_TIMEOUT_S - (time.monotonic() - start), every_s=0.5):
            raise failed(f"gave no {what} within {START_TIMEOUT_S} s")
        return time.monotonic() - start

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            print(stop_group(proc), file=sys.stderr)
        self.record_path.unlink(missing_ok=True)


# --- HTTP probes -----------------------------------------------------------------------------------------


BUSY_ATTEMPTS = 5  # Prefect's server answers 503 when its SQLite database was busy: a client is meant to ask again


def read_json(request: urllib.request.Request, timeout_s: float = 5) -> object:
    """Send the request and decode its JSON answer. A 503 is asked again, up to BUSY_ATTEMPTS times a second apart;
    any other error (and the last 503) is raised: HTTPError, URLError, OSError, ValueError for a body not JSON."""

    def attempt() -> object:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code != 503:
                raise
            return error

    busy = urllib.error.HTTPError
    answer = retry.try_again_while(
        attempt, lambda found: isinstance(found, busy), BUSY_ATTEMPTS, lambda n: time.sleep(1)
    )
    if isinstance(answer, busy):
        raise answer
    return answer


def http_json(url: str, body: dict | None = None) -> object | None:
    """GET (or POST `body`) and decode JSON; None when nothing answers or the answer is not a 2xx (a 503 asked
    again first, rather than read as "not there")."""
    data = None if body is None else json.dumps(body).encode()
    try:
        return read_json(urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((HOST, port)) == 0


def worker_online(ports: Ports, name: str, pool: str = WORK_POOL) -> bool:
    workers = http_json(f"{ports.prefect_api_url}/work_pools/{pool}/workers/filter", body={})
    return any(worker["name"] == name and worker["status"] == "ONLINE" for worker in workers or [])


# --- Prefect and MLflow ----------------------------------------------------------------------------------


def ensure_work_pool(ports: Ports, env: dict[str, str]) -> str:
    """Create the process work pool unless the server already has it."""
    if http_json(f"{ports.prefect_api_url}/work_pools/{WORK_POOL}") is not None:
        return "exists"
    command = [executable("prefect"), "work-pool", "create", WORK_POOL, "--type", "process"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise StackError(f"could not create work pool {WORK_POOL}: {out.stdout}{out.stderr}")
    return "created"


def deploy(
    ports: Ports, stack_dir: Path, env: dict[str, str], prefect_file: Path = PREFECT_FILE, deployment: str = DEPLOYMENT
) -> None:
    """Apply a prefect.yaml (deployments/prefect.yaml: its build step records this checkout for the pull step) from
    the repo root; `deployment` is one it holds, looked up when the CLI exits non-zero."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    command = [executable("prefect"), "deploy", "--no-prompt", "--prefect-file", str(prefect_file), "--all"]
    out = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = stack_dir / ("deploy.log" if prefect_file == PREFECT_FILE else f"deploy-{prefect_file.parent.name}.log")
    log.write_text(out.stdout + out.stderr)
    if out.returncode == 0:
        return
    found = http_json(f"{ports.prefect_api_url}/deployments/name/{deployment}")
    if not isinstance(found, dict) or datetime.fromisoformat(found["updated"]) < since:
        raise StackError(f"prefect deploy failed (exit {out.returncode}); end of {log}:\n{log_tail(log)}")
    # After applying, Prefect 3.8's CLI lists the pool's workers with `"limit": null`, which FastAPI >= 0.151
    # answers with 422. The deployment is in place, so this is only noise (gone with fastapi<0.151).
    print(f"warning: prefect deploy applied {deployment}, then exited {out.returncode} (see {log})")


def mlflow_command(locations: Locations, ports: Ports) -> list[str]:
    """MLflow's server over the pipeline's store, with every artifact in one folder beside the database.

    The pipeline logs straight to SQLite with file:// artifact URIs, which the server reads from disk for the
    UI. New experiments (Default included, on a fresh store) get file:// URIs there too, so a client that
    skips the server can still write them; `mlflow-artifacts:/` URIs, if any, are proxied to the same folder.
    """
    command = [executable("mlflow"), "server", "--backend-store-uri", locations.tracking_uri]
    command += ["--host", HOST, "--port", str(ports.mlflow), "--workers", "1"]
    artifacts = default_artifact_location(locations.tracking_uri)
    return command + (["--default-artifact-root", artifacts, "--artifacts-destination", artifacts] if artifacts else [])


# The server's job runner (GenAI jobs: 7 huey consumers, ~1 GB of memory) has nothing to do here.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_prefect_server(launcher: Launcher, extra_env: dict[str, str] | None = None) -> StartedProcess:
    ports = launcher.ports
    command = [executable("prefect"), "server", "start", "--host", HOST, "--port", str(ports.prefect)]
    # The UI's own idea of where the API is; without it the browser calls port 4200 whatever --port says.
    env = {"PREFECT_SERVER_UI_API_URL": ports.prefect_api_url, **(extra_env or {})}
    return launcher.start("prefect-server", command, env)


def deploy_when_ready(launcher: Launcher, server: StartedProcess) -> None:
    """Wait for the Prefect API, then create the work pool and apply the deployment; later processes get its URL."""
    ports, env = launcher.ports, launcher.env
    health = f"{ports.prefect_api_url}/health"
    took = launcher.wait_until(lambda: http_json(health) is True, server, f"answer on {health}")
    print(f"prefect server  up in {took:.1f} s")
    env["PREFECT_API_URL"] = ports.prefect_api_url
    began = time.monotonic()
    pool = ensure_work_pool(ports, env)
    deploy(ports, launcher.stack_dir, env)
    print(f"deployment      {DEPLOYMENT} applied in {time.monotonic() - began:.1f} s (work pool {pool})")


def start_worker(
    launcher: Launcher,
    process_name: str = "prefect-worker",
    limit: int | None = None,
    pool: tuple[str, str] = (WORK_POOL, "process"),
    extra_env: dict[str, str] | None = None,
) -> tuple[StartedProcess, str]:
    """A worker on the pool (name, type) under a fresh name (the previous stack's worker still reads ONLINE until
    its heartbeat goes stale); `limit` caps the flow runs it executes at once. Returns the process and the name."""
    name = f"greenlight-{uuid.uuid4().hex[:8]}"
    command = [executable("prefect"), "worker", "start", "--pool", pool[0], "--type", pool[1], "--name", name]
    command += ["--install-policy", "never"] + (["--limit", str(limit)] if limit else [])
    return launcher.start(process_name, command, extra_env), name


def wait_for_worker(launcher: Launcher, worker: StartedProcess, name: str, pool: str = WORK_POOL) -> None:
    online = f"worker {name} online in {pool}"
    took = launcher.wait_until(lambda: worker_online(launcher.ports, name, pool), worker, online)
    print(f"{worker.name:<15} online in {took:.1f} s")


def wait_for_mlflow(launcher: Launcher, mlflow: StartedProcess) -> None:
    health = f"{launcher.ports.mlflow_url}/health"
    took = launcher.wait_until(lambda: http_ok(health), mlflow, f"answer on {health}")
    print(f"{mlflow.name:<15} up in {took:.1f} s")


def start_watcher(launcher: Launcher) -> None:
    """`greenlight watch`: its events start runs of the on-new-data deployment. Ready when its log (appended to
    across stacks) says, after this start, where it sends them."""
    log = launcher.stack_dir / "watcher.log"
    start = log.stat().st_size if log.exists() else 0

    def sending() -> bool:
        with log.open("rb") as lines:
            lines.seek(start)
            return b"events go to" in lines.read()

    watcher = launcher.start("watcher", [executable("greenlight"), "watch"])
    took = launcher.wait_until(sending, watcher, f"scan (see {log})")
    print(f"{watcher.name:<15} up in {took:.1f} s")


def start_services(launcher: Launcher, locations: Locations, serve_mlflow: bool) -> None:
    """Server, pool, deployments, worker, watcher; MLflow starts alongside, as both spend ~15 s migrating their
    databases."""
    server = start_prefect_server(launcher)
    if serve_mlflow:
        if locations.tracking_uri.startswith("sqlite:///"):
            Path(locations.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow = launcher.start("mlflow-ui", mlflow_command(locations, launcher.ports), MLFLOW_SERVER_ENV)
    deploy_when_ready(launcher, server)
    wait_for_worker(launcher, *start_worker(launcher))
    start_watcher(launcher)
    if serve_mlflow:
        wait_for_mlflow(launcher, mlflow)


def print_urls(locations: Locations, ports: Ports, serve_mlflow: bool) -> None:
    print(f"  Prefect UI   http://{HOST}:{ports.prefect}    deployment {DEPLOYMENT}, cron 0 2 * * * UTC")
    mlflow_ui = ports.mlflow_url if serve_mlflow else locations.tracking_uri
    print(f"  MLflow UI    {mlflow_ui}    store {locations.tracking_uri}")
    print("Run the pipeline now:")
    print(f"  PREFECT_API_URL={ports.prefect_api_url} {executable('prefect')} deployment run {DEPLOYMENT} \\")
    print("""      --params '{"config": {"training": {"max_epochs": 10}}}'""")
    print("  or in the Prefect UI: Deployments -> nightly -> Run -> Custom run (the RunConfig form)")
    roots = ", ".join(str(root / "<folder>") for root in watch_roots([], locations.home))
    print(f"Retrain on new data ({NEW_DATA_DEPLOYMENT}): files dropped into {roots}/incoming/ train with")
    print("  that folder's greenlight.yaml (a reviewed `greenlight init` spec); or: greenlight submit FILE --spec SPEC")
    print(f"Logs in {locations.home / 'stack'}; stop everything with `make down`.")


# --- commands --------------------------------------------------------------------------------------------


# Each kind of stack and the command that starts it (all stop with `make down`).
RECIPES = {"embedded": "make up", "production": "make up-production", "containers": "make up-containers"}


def running_record(record_path: Path, kind: str) -> StackRecord | None:
    """The recorded stack when every process of it still runs; None (dropping the record) when all exited.
    A half-up stack, or the other kind of stack running from this home, is an error saying what to do."""
    recorded = read_record(record_path)
    if recorded is None:
        return None
    running = [proc.name for proc in recorded.processes if group_alive(proc)]
    recipe = RECIPES[kind]
    if running and recorded.kind != kind:
        raise StackError(
            f"the {recorded.kind} stack is running from {record_path.parent.parent} ({', '.join(running)}): "
            f"stop it with `make down` before `{recipe}`"
        )
    if running and len(running) < len(recorded.processes):
        raise StackError(
            f"stack is half up: {', '.join(running)} still running, the rest exited (logs in {record_path.parent}); "
            f"run `make down`, then `{recipe}`"
        )
    if running:
        print(f"Greenlight {kind} stack already running ({', '.join(running)}; recorded in {record_path}):")
        return recorded
    record_path.unlink()
    return None


def already_up(record_path: Path, locations: Locations) -> bool:
    """True (and the URLs printed again) if every process a previous `make up` recorded still runs."""
    recorded = running_record(record_path, "embedded")
    if recorded is None:
        return False
    ports = Ports(prefect=recorded.ports["prefect"], mlflow=recorded.ports["mlflow"])
    print_urls(locations, ports, serve_mlflow=any(proc.name == "mlflow-ui" for proc in recorded.processes))
    return True


def serves_mlflow(locations: Locations) -> bool:
    """Whether the stack starts MLflow's server: not when the tracking URI already names one."""
    return not locations.tracking_uri.startswith(("http://", "https://"))


def check_ports_free(ports: Ports, serve_mlflow: bool) -> None:
    busy = [port for port in [ports.prefect] + [ports.mlflow] * serve_mlflow if port_in_use(port)]
    if busy:
        raise StackError(
            f"port {', '.join(map(str, busy))} on {HOST} is already in use by something this stack did not start; "
            "stop it, or choose other ports with GREENLIGHT_PREFECT_PORT / GREENLIGHT_MLFLOW_PORT"
        )


def up(locations: Locations, ports: Ports) -> int:
    stack_dir = locations.home / "stack"
    if already_up(stack_dir / "pids.json", locations):
        return 0
    serve_mlflow = serves_mlflow(locations)
    check_ports_free(ports, serve_mlflow)
    stack_dir.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}  # not some other server
    launcher = Launcher(stack_dir, ports, env)
    began = time.monotonic()
    try:
        start_services(launcher, locations, serve_mlflow)
    except BaseException:
        launcher.stop_all()
        raise
    print(f"\nGreenlight stack up in {time.monotonic() - began:.1f} s (process groups in {launcher.record_path}):")
    print_urls(locations, ports, serve_mlflow)
    return 0


def down(locations: Locations) -> int:
    record_path = locations.home / "stack" / "pids.json"
    recorded = read_record(record_path)
    if recorded is None:
        print(f"nothing to stop: no stack recorded in {record_path}")
        return 0
    if recorded.kind == "containers":  # the flow runs' containers first: the worker would only report them crashed
        from deployments.containers import remove_stack_containers

        print(remove_stack_containers(locations))
    for proc in reversed(recorded.processes):
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
