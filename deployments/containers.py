"""`python -m deployments.containers up` (`make up-containers`): the stack of `make up`, plus flow runs in containers.

On top of Prefect, MLflow, the process worker and the watcher it starts: the pipeline image built from this
checkout (deployments/kubernetes/Dockerfile on the locally made base; cached layers make a rebuild after a code
change take seconds), podman's Docker API on a socket (`podman system service`), a `docker` work pool whose
containers run that image against this stack's Prefect and MLflow, the `containers` deployment of the training
flow (deployments/docker/prefect.yaml) and a docker worker. Every container the pool starts carries this stack's
label, so `make down` removes exactly those, then stops the processes. The manual: docs/deployment.md#containers.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deployments.stack import (
    PROJECT_ROOT,
    Launcher,
    Ports,
    StackError,
    check_ports_free,
    deploy,
    executable,
    print_urls,
    read_ports,
    running_record,
    serves_mlflow,
    start_services,
    start_worker,
    wait_for_worker,
)
from tasks.core.errors import GreenlightError
from tasks.core.locations import Locations, export_locations, resolve_locations
from tasks.registry.client import default_artifact_location
from tasks.release.images import (
    PIPELINE_IMAGE,
    BuiltImage,
    ImageBuildFailed,
    Podman,
    build_pipeline_image,
    ensure_base_image,
)

POOL = "greenlight-containers"
DEPLOYMENT = "training_pipeline/containers"
PREFECT_FILE = PROJECT_ROOT / "deployments" / "docker" / "prefect.yaml"
# The label on every container this stack's pool starts: its value is the stack's home.
LABEL = "greenlight.stack"
# A unix socket's path must fit in 108 bytes; a deeper home gets a socket in /tmp named after it.
SOCKET_PATH_MAX = 100


def socket_path(home: Path) -> Path:
    """Where podman's Docker API listens for this stack."""
    path = home / "containers" / "podman.sock"
    if len(str(path)) <= SOCKET_PATH_MAX:
        return path
    return Path(tempfile.gettempdir()) / f"greenlight-podman-{hashlib.sha256(str(home).encode()).hexdigest()[:12]}.sock"


def mounted_folders(locations: Locations) -> list[str]:
    """The host folders a flow run writes, mounted at the same paths (so that file:// artifact URIs the MLflow
    server hands out, the bento store and the runs folder mean the same inside and out): the home, the bento
    store and the artifact folder beside a SQLite store, each once."""
    folders = [locations.home.resolve(), locations.bentoml_home.resolve()]
    if artifacts := default_artifact_location(locations.tracking_uri):
        folders.append(Path(artifacts.removeprefix("file://")))
    kept: list[Path] = []
    for folder in sorted(set(folders), key=lambda path: len(path.parts)):
        if not any(folder.is_relative_to(outer) for outer in kept):
            kept.append(folder)
    return [str(folder) for folder in kept]


def pool_template(locations: Locations, tracking_uri: str, image: str) -> dict:
    """prefect-docker's base job template with this stack's defaults: the pipeline image (local, never pulled), the
    host's network (Prefect and MLflow listen on 127.0.0.1), the stores mounted at their own paths, the flow run
    as the user who started the stack (the files it writes are theirs), and the stack's label."""
    from prefect_docker.worker import DockerWorker

    template = DockerWorker.get_default_base_job_template()
    folders = mounted_folders(locations)
    for folder in folders:
        Path(folder).mkdir(parents=True, exist_ok=True)
    defaults = {
        "image": image,
        "image_pull_policy": "Never",
        "network_mode": "host",
        "volumes": [f"{folder}:{folder}" for folder in folders],
        "env": {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "GREENLIGHT_HOME": str(locations.home.resolve()),
            "BENTOML_HOME": str(locations.bentoml_home.resolve()),
            # A user with no entry in the image's /etc/passwd: its home and Prefect's files in the container's /tmp.
            "HOME": "/tmp",
            "PREFECT_HOME": "/tmp/prefect",
        },
        "labels": {LABEL: str(locations.home.resolve())},
        # Kept after the run (`podman logs NAME`) until `make down` removes them: a container removed as it exits
        # leaves the worker nothing to wait on ("removed before we could wait for its completion").
        "auto_remove": False,
        "container_create_kwargs": {"user": f"{os.getuid()}:{os.getgid()}"},
    }
    for name, value in defaults.items():
        template["variables"]["properties"][name]["default"] = value
    return template


def ensure_pool(launcher: Launcher, template: dict) -> None:
    """Create the docker pool, or give an existing one this stack's template (ports and folders may differ)."""
    path = launcher.stack_dir / "container-pool.json"
    path.write_text(json.dumps(template, indent=2))
    command = [executable("prefect"), "work-pool", "create", POOL, "--type", "docker"]
    command += ["--base-job-template", str(path), "--overwrite"]
    out = subprocess.run(command, env=launcher.env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise StackError(f"could not create work pool {POOL}: {out.stdout}{out.stderr}")


def build_pipeline(locations: Locations) -> tuple[Podman, BuiltImage]:
    """The pipeline image of this checkout, on the local base (made first if missing); cached layers make it quick
    when only code changed."""
    podman = Podman.find(locations.home)
    began = time.monotonic()
    base = ensure_base_image(podman)
    print(f"{'base image':<15} {base} ready in {time.monotonic() - began:.1f} s", flush=True)
    print(f"{'pipeline image':<15} building {PIPELINE_IMAGE} from this checkout (first time ~3 min) ...", flush=True)
    image = build_pipeline_image(podman, PROJECT_ROOT, PIPELINE_IMAGE, base)
    print(f"{'pipeline image':<15} {image.size_bytes / 1e9:.2f} GB, built in {image.seconds:.1f} s", flush=True)
    return podman, image


def start_socket(launcher: Launcher, podman: Podman, home: Path) -> Path:
    """podman's Docker API on a unix socket, no idle timeout; ready when it answers a ping."""
    import docker

    sock = socket_path(home)
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    command = [podman.executable, "system", "service", "--time", "0", f"unix://{sock}"]
    service = launcher.start("podman-socket", command, {"CONTAINERS_CONF": str(podman.conf)})

    def answers() -> bool:
        if not sock.exists():
            return False
        try:
            return bool(docker.DockerClient(base_url=f"unix://{sock}", timeout=5).ping())
        except docker.errors.DockerException:
            return False

    took = launcher.wait_until(answers, service, f"Docker API answer on {sock}")
    print(f"{service.name:<15} up in {took:.1f} s ({sock})")
    return sock


def start_container_runs(
    launcher: Launcher, locations: Locations, serve_mlflow: bool, podman: Podman, image: BuiltImage
) -> None:
    """Socket, pool, deployment, docker worker."""
    sock = start_socket(launcher, podman, locations.home)
    tracking_uri = launcher.ports.mlflow_url if serve_mlflow else locations.tracking_uri
    ensure_pool(launcher, pool_template(locations, tracking_uri, image.reference))
    began = time.monotonic()
    deploy(launcher.ports, launcher.stack_dir, launcher.env, PREFECT_FILE, DEPLOYMENT)
    print(f"{'deployment':<15} {DEPLOYMENT} applied in {time.monotonic() - began:.1f} s (work pool {POOL})")
    worker_env = {"DOCKER_HOST": f"unix://{sock}"}
    worker, name = start_worker(launcher, "docker-worker", pool=(POOL, "docker"), extra_env=worker_env)
    wait_for_worker(launcher, worker, name, POOL)


def remove_stack_containers(locations: Locations) -> str:
    """Remove (stopping first) every container this stack's pool started, found by its label; others stay."""
    try:
        podman = Podman.find(locations.home)
    except ImageBuildFailed:
        return f"{'containers':<15} none (podman is not installed)"
    label = f"label={LABEL}={locations.home.resolve()}"
    found = podman.run("ps", "--all", "--quiet", "--filter", label, what="listing the stack's containers").split()
    if found:
        podman.run("rm", "--force", "--time", "5", *found, what="removing the stack's containers")
    return f"{'containers':<15} removed {len(found)} flow-run container(s) labelled {LABEL}"


def print_container_urls(ports: Ports) -> None:
    print(f"  Containers   deployment {DEPLOYMENT} on work pool {POOL} (docker worker, podman's Docker API)")
    print(f"  PREFECT_API_URL={ports.prefect_api_url} {executable('prefect')} deployment run {DEPLOYMENT}")


def up(locations: Locations, ports: Ports) -> int:
    stack_dir = locations.home / "stack"
    if (recorded := running_record(stack_dir / "pids.json", "containers")) is not None:
        ports = Ports(prefect=recorded.ports["prefect"], mlflow=recorded.ports["mlflow"])
        print_urls(locations, ports, serve_mlflow=any(proc.name == "mlflow-ui" for proc in recorded.processes))
        print_container_urls(ports)
        return 0
    serve_mlflow = serves_mlflow(locations)
    check_ports_free(ports, serve_mlflow)
    stack_dir.mkdir(parents=True, exist_ok=True)
    podman, image = build_pipeline(locations)  # before anything starts: minutes on a first run
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}  # not some other server
    launcher = Launcher(stack_dir, ports, env, kind="containers")
    began = time.monotonic()
    try:
        start_services(launcher, locations, serve_mlflow)
        start_container_runs(launcher, locations, serve_mlflow, podman, image)
    except BaseException:
        print(remove_stack_containers(locations), file=sys.stderr)
        launcher.stop_all()
        raise
    print(f"\nGreenlight stack with container runs up in {time.monotonic() - began:.1f} s ({launcher.record_path}):")
    print_urls(locations, ports, serve_mlflow)
    print_container_urls(ports)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.containers", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up"], help="`make down` stops it, as every stack")
    parser.parse_args(argv)
    locations = resolve_locations()
    export_locations(locations)
    try:
        return up(locations, read_ports(os.environ))
    except GreenlightError as error:
        print(f"\ncontainer stack up: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
