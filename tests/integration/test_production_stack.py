"""`make up-production` end to end: PostgreSQL holds the Prefect and MLflow databases, moto's S3 server holds the
artifacts behind the MLflow tracking server, two workers poll the pool. A run through `greenlight run`, two
deployment runs at once on the two workers, the production model served from object storage, a rollback while
it serves, then `make down` leaves nothing running.

The stack runs as a user starts it (`python -m deployments.production`), in subprocesses, on free ports, with
every store in one temporary folder; the tests are clients: they hold no bucket credential.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from stack_support import FINAL_STATES, free_ports, group_exists, log_tail, request_json

from tasks.core.retry import wait_until

pytestmark = pytest.mark.slow  # starts PostgreSQL, S3, MLflow, Prefect and two workers, then trains three times

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL = "wine"
# Two runs at once on 2 cores: ~60 s; the workers poll every 10 s.
RUN_TIMEOUT_S = 300
# A small run: no pruning or distillation, a short serving check whose latency a busy machine cannot fail.
SMALL_RUN = {
    "training": {"max_epochs": 20},
    "compression": {"pruning": {"levels": []}, "distillation": {"enabled": False}},
    "gate": {"serving": {"load_requests": 20, "max_p99_latency_ms": 5000}},
}
# Credentials a client must not need: the stack gives the bucket's only to its tracking server.
BUCKET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MLFLOW_S3_ENDPOINT_URL")


@dataclass(frozen=True)
class Stack:
    home: Path
    env: dict[str, str]  # what `python -m deployments.production` ran with
    client: dict[str, str]  # env plus the client environment the stack printed
    ports: dict[str, int]

    @property
    def api(self) -> str:
        return self.client["PREFECT_API_URL"]

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def record(self) -> dict:
        return json.loads((self.home / "stack" / "pids.json").read_text())

    def database(self, name: str):
        import psycopg

        password = (self.home / "stack" / "postgres.password").read_text().strip()
        return psycopg.connect(
            host="127.0.0.1", port=self.ports["postgres"], user="greenlight", password=password, dbname=name
        )


def postgres_installed() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb") is not None


def install_postgres() -> None:
    """Tests install the servers they need: Debian's package, as root, when it is missing."""
    if postgres_installed() or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900)
        subprocess.run(install, env=env, capture_output=True, timeout=900)


def production_command(action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deployments.production", action]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


def greenlight(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deployments.cli", *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=stack.client, capture_output=True, text=True, timeout=600)


def read_client_env(path: Path) -> dict[str, str]:
    """`export KEY=VALUE` lines, as the stack writes them for `source`."""
    pairs = [line.removeprefix("export ").split("=", 1) for line in path.read_text().splitlines() if line]
    return dict(pairs)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    install_postgres()
    if not postgres_installed():
        pytest.skip("PostgreSQL is not installed and `apt-get install -y postgresql` could not install it here")
    # Not pytest's tmp_path: its folders are 0700, and the cluster runs as the postgres user when tests run as root.
    home = Path(tempfile.mkdtemp(prefix="greenlight-production-"))
    home.chmod(0o755)
    prefect, mlflow, postgres, s3 = free_ports(4)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", *BUCKET_VARIABLES)
    }
    env.update(
        GREENLIGHT_HOME=str(home),
        BENTOML_HOME=str(home / "bentoml"),
        PREFECT_HOME=str(home / "prefect"),
        GREENLIGHT_PREFECT_PORT=str(prefect),
        GREENLIGHT_MLFLOW_PORT=str(mlflow),
        GREENLIGHT_POSTGRES_PORT=str(postgres),
        GREENLIGHT_S3_PORT=str(s3),
        # The workers' flow runs import flows/ and tasks/ even where the project is not pip-installed.
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )
    try:
        began = time.monotonic()
        started = production_command("up", env)
        assert started.returncode == 0, f"production stack up failed:\n{started.stdout}\n{started.stderr}"
        print(f"\nproduction stack up in {time.monotonic() - began:.1f} s")
        client = {**env, **read_client_env(home / "stack" / "client.env")}
        ports = {"prefect": prefect, "mlflow": mlflow, "postgres": postgres, "s3": s3}
        yield Stack(home, env, client, ports)
    finally:
        production_command("down", env)  # also after a failed or interrupted test: never leave servers running
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def wine(stack: Stack) -> Path:
    import sklearn.datasets

    frame = sklearn.datasets.load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    path = stack.home / "wine.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def mlflow_client(stack: Stack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.client["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def first_run(stack: Stack, wine: Path) -> subprocess.CompletedProcess:
    """`greenlight run` from a shell holding only the printed client environment."""
    config = stack.home / "small-run.json"
    config.write_text(json.dumps(SMALL_RUN))
    return greenlight(
        stack, "run", "--data", str(wine), "--target", "cultivar", "--model-name", MODEL, "--config", str(config)
    )


def bucket_keys(stack: Stack) -> set[str]:
    import boto3

    # moto takes any key pair: the test reads the bucket directly, as an operator would, to see what is there.
    s3 = boto3.client(
        "s3", endpoint_url=stack.s3_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="greenlight")
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def s3_object(stack: Stack, key: str) -> bytes:
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=stack.s3_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return s3.get_object(Bucket="greenlight", Key=key)["Body"].read()


def listening_addresses(pgids: list[int]) -> set[str]:
    """The addresses every process of the recorded groups listens on."""
    import psutil

    addresses = set()
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) in pgids:
                addresses |= {c.laddr.ip for c in process.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        except (psutil.Error, ProcessLookupError):
            continue
    return addresses


def test_up_starts_every_service_on_loopback_with_bucket_credentials_on_the_tracking_server_only(stack):
    record = stack.record()
    processes = {p["name"]: p for p in record["processes"]}
    assert record["kind"] == "production"
    assert set(processes) == {
        "postgres",
        "s3",
        "mlflow-server",
        "prefect-server",
        "prefect-worker-1",
        "prefect-worker-2",
    }
    assert listening_addresses([p["pid"] for p in record["processes"]]) == {"127.0.0.1"}
    with stack.database("postgres") as db:
        databases = {row[0] for row in db.execute("select datname from pg_database")}
    assert {"prefect", "mlflow", "optuna"} <= databases
    assert stack.client["GREENLIGHT_STUDY_STORAGE"].endswith(f":{stack.ports['postgres']}/optuna")
    assert not set(BUCKET_VARIABLES) & set(read_client_env(stack.home / "stack" / "client.env"))
    if os.geteuid() == 0:  # another user's /proc/PID/environ is readable by root only
        environ = {name: Path(f"/proc/{p['pid']}/environ").read_bytes() for name, p in processes.items()}
        assert (
            b"MLFLOW_S3_ENDPOINT_URL=" in environ["mlflow-server"]
            and b"AWS_SECRET_ACCESS_KEY=" in environ["mlflow-server"]
        )
        assert not any(b"AWS_SECRET_ACCESS_KEY=" in environ[name] for name in processes if name != "mlflow-server")


def test_a_run_keeps_its_artifacts_in_the_bucket_and_its_records_in_postgres(stack, first_run, mlflow_client):
    assert first_run.returncode == 0, f"{first_run.stdout[-3000:]}\n{first_run.stderr[-3000:]}"
    version = mlflow_client.get_model_version_by_alias(MODEL, "production")
    assert version.version == "1"
    run = mlflow_client.get_run(version.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the client never sees the bucket
    model = mlflow_client.get_logged_model(version.source.removeprefix("models:/"))  # the logged model's id
    model_key = model.artifact_location.replace("mlflow-artifacts:/", "mlartifacts/", 1) + "/model.onnx"
    run_prefix = run.info.artifact_uri.replace("mlflow-artifacts:/", "mlartifacts/", 1)
    keys = bucket_keys(stack)
    assert model_key in keys and f"{run_prefix}/gate/gate_report.json" in keys
    assert hashlib.sha256(s3_object(stack, model_key)).hexdigest() == version.tags["onnx_sha256"]

    with stack.database("mlflow") as db:
        [(status,)] = db.execute("select status from runs where run_uuid = %s", [run.info.run_id]).fetchall()
        aliases = db.execute("select alias, version from registered_model_aliases where name = %s", [MODEL]).fetchall()
    assert status == "FINISHED" and aliases == [("production", 1)]
    with stack.database("prefect") as db:
        flow_run_id = run.data.tags["prefect_flow_run_id"]
        [(state,)] = db.execute("select state_type from flow_run where id = %s", [flow_run_id]).fetchall()
    assert state == "COMPLETED"


@pytest.fixture(scope="module")
def concurrent_runs(stack: Stack, wine: Path, first_run) -> list[dict]:
    """Two deployment runs triggered together, the deployment's limit of one at a time raised to two first (as an
    operator does in the UI); each worker takes one flow run at a time."""
    deployment = request_json(f"{stack.api}/deployments/name/training_pipeline/nightly")
    request_json(f"{stack.api}/deployments/{deployment['id']}", {"concurrency_limit": 2}, method="PATCH")
    # Other seeds than the first run's, with a tolerated drop: the same settings would train production's own model,
    # kept as a duplicate without moving the alias, and the rollback below needs a previous production version.
    tolerant = {**SMALL_RUN["gate"], "change_thresholds": [{"metric": "test_accuracy", "min_absolute_change": -0.1}]}
    config = {"data_path": str(wine), "target": "cultivar", "model_name": MODEL, **SMALL_RUN, "gate": tolerant}
    create = f"{stack.api}/deployments/{deployment['id']}/create_flow_run"
    runs_config = [{**config, "training": {**SMALL_RUN["training"], "seed": seed}} for seed in (1, 2)]
    ids = [request_json(create, {"parameters": {"config": run_config}})["id"] for run_config in runs_config]
    runs: list[dict] = []

    def all_ended() -> bool:
        runs[:] = [request_json(f"{stack.api}/flow_runs/{run_id}") for run_id in ids]
        return all(run["state_type"] in FINAL_STATES for run in runs)

    if wait_until(all_ended, RUN_TIMEOUT_S, every_s=3):
        return runs
    logs = "\n".join(log_tail(stack.home, f"prefect-worker-{n}") for n in (1, 2))
    pytest.fail(f"runs still {[run['state_type'] for run in runs]} after {RUN_TIMEOUT_S} s:\n{logs}")


def worker_of(stack: Stack, flow_run_id: str) -> str:
    """The worker that executed a flow run, from the line each worker logs on the run when it takes it."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    messages = [log["message"] for log in request_json(f"{stack.api}/logs/filter", body)]
    [line] = [m for m in messages if "submitting flow run" in m]
    return line.split("'")[1]


def test_two_runs_at_once_on_two_workers_leave_one_production_version(stack, concurrent_runs, mlflow_client):
    from tasks.registry.client import alias_history

    for run in concurrent_runs:
        assert run["state_type"] == "COMPLETED", f"{run['state_name']}: {run['state']['message']}"
    workers = {worker_of(stack, run["id"]) for run in concurrent_runs}
    assert len(workers) == 2, f"one worker ran both: {workers}"
    versions = sorted(int(v.version) for v in mlflow_client.search_model_versions(f"name = '{MODEL}'"))
    assert versions == [1, 2, 3]
    moves = alias_history(stack.client["MLFLOW_TRACKING_URI"], MODEL)
    # Without the lock in Prefect's database, both runs would compare with v1 and both move the alias from it.
    assert [m["from_version"] for m in moves].count("None") == 1
    for earlier, later in zip(moves, moves[1:], strict=False):
        assert later["from_version"] == earlier["to_version"], moves
    production = mlflow_client.get_registered_model(MODEL).aliases["production"]
    assert moves[-1]["to_version"] == str(production)


def predict(url: str, records: list[dict]) -> dict:
    return request_json(f"{url}/predict", {"records": records})


def test_the_served_production_model_answers_and_follows_a_rollback(stack, concurrent_runs, mlflow_client, wine):
    import pandas as pd

    from bentos.serve import wait_until_ready
    from tasks.registry.client import alias_history

    before = str(mlflow_client.get_registered_model(MODEL).aliases["production"])
    previous = alias_history(stack.client["MLFLOW_TRACKING_URI"], MODEL)[-1]["from_version"]
    frame = pd.read_csv(wine).sample(30, random_state=1)
    records = frame.drop(columns=["cultivar"]).to_dict("records")
    [port] = free_ports(1)
    log = (stack.home / "serve.log").open("wb")
    serve = ["serve", "--model-name", MODEL, "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", *serve],
        cwd=PROJECT_ROOT, env=stack.client, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(server, url, timeout_s=90)
        answer = predict(url, records)
        assert answer["model_version"] == before
        correct = sum(int(p) == label for p, label in zip(answer["predictions"], frame["cultivar"], strict=True))
        assert correct / len(frame) >= 0.9

        rolled = greenlight(stack, "rollback", "--model-name", MODEL, "--reason", "drill: production stack")
        assert rolled.returncode == 0, rolled.stderr
        assert str(mlflow_client.get_registered_model(MODEL).aliases["production"]) == previous
        assert alias_history(stack.client["MLFLOW_TRACKING_URI"], MODEL)[-1]["kind"] == "rollback"
        rolled_back = wait_until(lambda: predict(url, records[:1])["model_version"] == previous, 60, every_s=1)
        assert rolled_back, f"still serving v{before} 60 s after the rollback"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def test_a_sweep_keeps_its_study_in_postgres_and_its_trials_as_nested_runs(stack, wine, mlflow_client, concurrent_runs):
    config = stack.home / "small-sweep.json"
    config.write_text(json.dumps({**SMALL_RUN, "training": {"max_epochs": 5}}))
    args = ["--data", str(wine), "--target", "cultivar", "--model-name", MODEL, "--config", str(config)]
    swept = greenlight(stack, "sweep", *args, "--trials", "2", "--study-name", "wine-shared")
    assert swept.returncode in (0, 3), f"{swept.stdout[-3000:]}\n{swept.stderr[-3000:]}"  # 3: the gate may refuse

    with stack.database("optuna") as db:
        states = db.execute(
            "select t.state from trials t join studies s on s.study_id = t.study_id where s.study_name = %s",
            ["wine-shared"],
        ).fetchall()
    assert len(states) == 2 and {state for (state,) in states} <= {"COMPLETE", "PRUNED"}
    [parent] = mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name("greenlight").experiment_id],
        filter_string="tags.`sweep.study` = 'wine-shared'",
    )
    nested = mlflow_client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(nested) == 2


def test_down_stops_every_process_up_started_and_postgres(stack):
    recorded = stack.record()["processes"]
    stopped = production_command("down", stack.env)
    assert stopped.returncode == 0, stopped.stderr
    assert [p["name"] for p in recorded if group_exists(p["pid"])] == []
    assert not (stack.home / "stack" / "pids.json").exists()
    assert not (stack.home / "stack" / "postgres" / "postmaster.pid").exists()
    for port in stack.ports.values():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still answers on port {port}"
