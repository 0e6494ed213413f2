"""`python -m deployments.production up|down`: the production shape of the stack on one machine, on 127.0.0.1.

PostgreSQL for the Prefect server, the MLflow tracking server and Optuna; moto's S3 server for MLflow's artifacts;
two workers. Processes are recorded in <home>/stack/pids.json, so `make down` stops them (docs/production-stack.md).
"""

import argparse
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import astuple, dataclass
from pathlib import Path

from deployments.stack import (
    DEPLOYMENT,
    HOST,
    MLFLOW_SERVER_ENV,
    START_TIMEOUT_S,
    WORK_POOL,
    Launcher,
    Ports,
    StackError,
    StartedProcess,
    deploy_when_ready,
    down,
    executable,
    log_tail,
    port_in_use,
    port_setting,
    read_ports,
    running_record,
    start_prefect_server,
    start_worker,
    wait_for_mlflow,
    wait_for_worker,
)
from tasks.core.errors import GreenlightError
from tasks.core.locations import Locations, export_locations, resolve_locations

# Optuna's studies apart from MLflow's runs: both keep their schema's version in a table named alembic_version.
DATABASES = ("prefect", "mlflow", "optuna")
DB_USER = "greenlight"
BUCKET = "greenlight"
ARTIFACTS_DESTINATION = f"s3://{BUCKET}/mlartifacts"
S3_RECORDING = "s3-requests.jsonl"
WORKERS = 2
# moto takes any key pair; these live only in the tracking server's environment, never in a client's.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto", "AWS_DEFAULT_REGION": "us-east-1"}
PORT_VARIABLES = {
    "prefect": "GREENLIGHT_PREFECT_PORT",
    "mlflow": "GREENLIGHT_MLFLOW_PORT",
    "postgres": "GREENLIGHT_POSTGRES_PORT",
    "s3": "GREENLIGHT_S3_PORT",
}


@dataclass(frozen=True)
class ProductionPorts(Ports):
    postgres: int
    s3: int

    @property
    def s3_url(self) -> str:
        return f"http://{HOST}:{self.s3}"


@dataclass(frozen=True)
class Postgres:
    """This stack's PostgreSQL cluster: its programs, its data folder, where it listens, and its password."""

    bin_dir: Path
    data_dir: Path
    port: int
    password: str

    def url(self, database: str, driver: str = "psycopg") -> str:
        """A SQLAlchemy URL (`postgresql+psycopg://` for MLflow and Optuna, `postgresql+asyncpg://` for Prefect)."""
        return f"postgresql+{driver}://{DB_USER}:{self.password}@{HOST}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=DB_USER,
            password=self.password,
            dbname=database,
            connect_timeout=5,
            autocommit=True,
        )


def read_production_ports(environ: dict[str, str]) -> ProductionPorts:
    """The embedded stack's two ports, PostgreSQL's (5433: Debian's package runs its own `main` cluster on 5432)
    and the S3 server's (9000, MinIO's usual port)."""
    base = read_ports(environ)
    postgres = port_setting(environ, PORT_VARIABLES["postgres"], 5433)
    return ProductionPorts(base.prefect, base.mlflow, postgres, port_setting(environ, PORT_VARIABLES["s3"], 9000))


def check_ports_free(ports: ProductionPorts) -> None:
    taken = dict(zip(PORT_VARIABLES.values(), astuple(ports), strict=True))
    if len(set(taken.values())) < len(taken):
        raise StackError(f"two services were given the same port ({taken}); give each its own")
    busy = [f"{port} ({variable})" for variable, port in taken.items() if port_in_use(port)]
    if busy:
        raise StackError(
            f"port {', '.join(busy)} on {HOST} is already in use by something this stack did not start; "
            "stop it, or choose another port with the variable named"
        )


# --- PostgreSQL ------------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The newest Debian install (/usr/lib/postgresql/<version>/bin), else wherever initdb is on PATH."""
    installed = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    newest = max(installed, key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0, default=None)
    initdb = newest or (Path(found) if (found := shutil.which("initdb")) else None)
    if initdb is None:
        raise StackError(
            "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin nor on PATH): install Debian's "
            "package with `apt-get install postgresql` (as root), then run `make up-production` again"
        )
    return initdb.parent


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user of Debian's package."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def give_to_postgres(*paths: Path) -> None:
    """As root, hand the cluster's files to `postgres`, and check that it can reach them at all."""
    if os.geteuid() != 0:
        return
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError as error:
        raise StackError("running as root, but there is no `postgres` user: `apt-get install postgresql`") from error
    for path in paths:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    if subprocess.run(as_postgres(["test", "-r", str(paths[-1])])).returncode != 0:
        raise StackError(
            f"the postgres user cannot reach {paths[-1].parent}: a folder above it is closed to other users (such as"
            " /root, or a 0700 temporary folder); choose a GREENLIGHT_HOME it can reach, or open those folders"
            " with chmod o+x"
        )


def prepare_cluster(bin_dir: Path, stack_dir: Path, port: int) -> Postgres:
    """The cluster in <stack>/postgres, created on first use: password (scram) authentication, the password in
    <stack>/postgres.password (0600)."""
    data_dir, password_file = stack_dir / "postgres", stack_dir / "postgres.password"
    if (data_dir / "PG_VERSION").exists():
        if not password_file.exists():
            raise StackError(f"{password_file} is gone: remove {data_dir} to start from an empty cluster")
        return Postgres(bin_dir, data_dir, port, password_file.read_text().strip())
    data_dir.mkdir(mode=0o700, exist_ok=True)
    password_file.touch(mode=0o600)
    password_file.write_text(secrets.token_urlsafe(24))
    give_to_postgres(data_dir, password_file)
    initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", DB_USER, "--auth=scram-sha-256"]
    initdb += [f"--pwfile={password_file}", "--encoding=UTF8", "--no-locale"]
    out = subprocess.run(as_postgres(initdb), capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise StackError(f"initdb failed (exit {out.returncode}) for {data_dir}:\n{out.stdout}{out.stderr}")
    print(f"postgres        cluster created in {data_dir}")
    return Postgres(bin_dir, data_dir, port, password_file.read_text().strip())


def accepts_connections(pg: Postgres) -> bool:
    import psycopg

    try:
        with pg.connect():
            return True
    except psycopg.OperationalError as error:
        if "password authentication failed" in str(error):
            raise StackError(f"PostgreSQL in {pg.data_dir} refuses the password in postgres.password") from error
        return False


def start_postgres(launcher: Launcher, pg: Postgres) -> StartedProcess:
    """The cluster in the foreground of its own process group, on loopback TCP only (no Unix socket), then its
    databases; `down` stops it with `pg_ctl stop -m fast` (sessions are ended, nothing is lost)."""
    server = [str(pg.bin_dir / "postgres"), "-D", str(pg.data_dir), "-p", str(pg.port)]
    server += ["-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories="]
    stop = as_postgres([str(pg.bin_dir / "pg_ctl"), "stop", "-D", str(pg.data_dir), "-m", "fast", "-w"])
    proc = launcher.start("postgres", as_postgres(server), stop_command=tuple(stop))
    took = launcher.wait_until(lambda: accepts_connections(pg), proc, f"connections on {HOST}:{pg.port}")
    print(f"postgres        up in {took:.1f} s")
    from psycopg import sql

    with pg.connect() as db:
        existing = {row[0] for row in db.execute("select datname from pg_database")}
        for name in DATABASES:
            if name not in existing:
                db.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return proc


# --- object store and servers ----------------------------------------------------------------------------


def start_object_store(launcher: Launcher) -> StartedProcess:
    """moto's S3 server. It keeps objects in memory, so it also appends every request to <stack>/s3-requests.jsonl
    (moto's recorder), which the next `up` replays: the artifacts outlive `make down` as the registry does."""
    ports = launcher.ports
    recording = {"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(launcher.stack_dir / S3_RECORDING)}
    return launcher.start("s3", [executable("moto_server"), "-H", HOST, "-p", str(ports.s3)], recording)


def restore_bucket(launcher: Launcher, s3: StartedProcess) -> None:
    """Replay what earlier stacks wrote, then create the bucket if this is the first stack."""
    import boto3

    ports = launcher.ports
    launcher.wait_until(lambda: port_in_use(ports.s3), s3, f"answer on {ports.s3_url}")
    recording = launcher.stack_dir / S3_RECORDING
    if recording.exists() and recording.stat().st_size:
        replay = urllib.request.Request(f"{ports.s3_url}/moto-api/recorder/replay-recording", method="POST")
        try:
            urllib.request.urlopen(replay, timeout=START_TIMEOUT_S).close()
        except OSError as error:  # URLError, HTTPError, a timeout
            problem = f"moto could not replay {recording} ({error}); end of {s3.log}:\n{log_tail(s3.log)}"
            raise StackError(problem) from error
    credentials = {"aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"]}
    credentials |= {"aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
    client = boto3.client("s3", endpoint_url=ports.s3_url, region_name="us-east-1", **credentials)
    if BUCKET not in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    print(f"s3 (moto)       bucket {BUCKET} ready in {time.monotonic() - launcher.launched_at[s3.name]:.1f} s")


def start_tracking_server(launcher: Launcher, pg: Postgres) -> StartedProcess:
    """MLflow on PostgreSQL, proxying every artifact to the bucket: the bucket's endpoint and credentials are in
    this process's environment only."""
    command = [executable("mlflow"), "server", "--host", HOST, "--port", str(launcher.ports.mlflow), "--workers", "2"]
    command += ["--serve-artifacts", "--artifacts-destination", ARTIFACTS_DESTINATION]
    env = {
        **MLFLOW_SERVER_ENV,
        # In the environment, not on the command line, where `ps` would show the password to every user.
        "MLFLOW_BACKEND_STORE_URI": pg.url("mlflow"),
        "MLFLOW_S3_ENDPOINT_URL": launcher.ports.s3_url,
        **S3_CREDENTIALS,
    }
    return launcher.start("mlflow-server", command, env)


def start_production_services(launcher: Launcher, pg: Postgres) -> None:
    """PostgreSQL first (both servers keep their state in it), then the object store, the tracking server and the
    Prefect server at once (each spends ~15 s migrating its database), the pool and the deployment, two workers."""
    start_postgres(launcher, pg)
    s3 = start_object_store(launcher)
    mlflow = start_tracking_server(launcher, pg)
    server = start_prefect_server(launcher, {"PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", "asyncpg")})
    restore_bucket(launcher, s3)
    deploy_when_ready(launcher, server)
    # One flow run per worker: two runs at once are executed by two processes, as on two machines.
    workers = [start_worker(launcher, f"prefect-worker-{number}", limit=1) for number in range(1, WORKERS + 1)]
    for worker, name in workers:
        wait_for_worker(launcher, worker, name)
    wait_for_mlflow(launcher, mlflow)


# --- commands --------------------------------------------------------------------------------------------


def client_environment(locations: Locations, ports: ProductionPorts, pg: Postgres) -> dict[str, str]:
    """What `greenlight run / serve / rollback / sweep` need to work against this stack: no bucket credential."""
    return {
        "GREENLIGHT_HOME": str(locations.home),
        "BENTOML_HOME": str(locations.bentoml_home),
        "MLFLOW_TRACKING_URI": ports.mlflow_url,
        "PREFECT_API_URL": ports.prefect_api_url,
        "GREENLIGHT_STUDY_STORAGE": pg.url("optuna"),
    }


def print_stack(ports: dict[str, int], client_env: Path) -> None:
    print(f"  PostgreSQL   {HOST}:{ports['postgres']}    databases {', '.join(DATABASES)} (user {DB_USER})")
    print(f"  S3 (moto)    http://{HOST}:{ports['s3']}    bucket {BUCKET}, kept as moto's request log {S3_RECORDING}")
    print(f"  MLflow UI    http://{HOST}:{ports['mlflow']}    artifacts proxied to {ARTIFACTS_DESTINATION}")
    print(f"  Prefect UI   http://{HOST}:{ports['prefect']}    {DEPLOYMENT}, {WORKERS} workers on {WORK_POOL}")
    print(f"Client environment (`source {client_env}`):")
    print(client_env.read_text().rstrip())
    print("Stop everything with `make down`.")


def up(environ: dict[str, str]) -> int:
    ports = read_production_ports(environ)
    locations = resolve_locations({**environ, "MLFLOW_TRACKING_URI": ports.mlflow_url})
    export_locations(locations)
    stack_dir = locations.home / "stack"
    if (recorded := running_record(stack_dir / "pids.json", "production")) is not None:
        print_stack(recorded.ports, stack_dir / "client.env")
        return 0
    check_ports_free(ports)
    bin_dir = postgres_bin_dir()
    stack_dir.mkdir(parents=True, exist_ok=True)
    pg = prepare_cluster(bin_dir, stack_dir, ports.postgres)
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}  # not some other server
    env["GREENLIGHT_STUDY_STORAGE"] = pg.url("optuna")
    launcher = Launcher(stack_dir, ports, env, kind="production")
    began = time.monotonic()
    try:
        start_production_services(launcher, pg)
    except BaseException:
        launcher.stop_all()
        raise
    client_env = stack_dir / "client.env"
    client_env.touch(mode=0o600)
    client = client_environment(locations, ports, pg)
    client_env.write_text("".join(f"export {key}={value}\n" for key, value in client.items()))
    print(f"\nGreenlight production stack up in {time.monotonic() - began:.1f} s (in {stack_dir}):")
    print_stack(vars(ports), client_env)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.production", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            return up(dict(os.environ))
        locations = resolve_locations()
        export_locations(locations)
        return down(locations)
    except GreenlightError as error:
        print(f"\nproduction stack {args.action}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
