"""`make up-containers` end to end: the pipeline image built from this checkout with podman, podman's Docker API, a
docker work pool and its worker. A run of the `containers` deployment, triggered as the UI does, runs inside the
pipeline image against the stack's Prefect and MLflow servers, registers a version and promotes it; `make down`
removes the stack's containers (a run still going included) and leaves every other container alone.

The stack runs as a user starts it (`python -m deployments.containers up`), in subprocesses, with every store in a
temporary folder and free ports. podman is installed when missing; the base image is made once per machine and the
pipeline image's dependency layer is cached until pyproject.toml or constraints.txt change.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from container_support import install_podman
from stack_support import (
    SMALL_OVERRIDE,
    final_flow_run,
    free_ports,
    group_exists,
    log_tail,
    request_json,
    stack_environment,
)

from deployments.containers import DEPLOYMENT, LABEL, POOL
from tasks.core.locations import code_version
from tasks.core.retry import wait_until
from tasks.release.images import BASE_IMAGE, PIPELINE_IMAGE, Podman

pytestmark = pytest.mark.slow  # builds the pipeline image (~3 min the first time on a machine), trains in it

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stack:
    home: Path
    env: dict[str, str]
    api: str
    mlflow: str
    up_output: str
    podman: Podman

    def containers(self, *filters: str) -> list[dict]:
        """`podman ps --all` of the containers matching the filters, as podman reports them."""
        arguments = [f"--filter={item}" for item in filters]
        return json.loads(self.podman.run("ps", "--all", "--format", "json", *arguments, what="podman ps") or "[]")

    def stack_containers(self) -> list[dict]:
        return self.containers(f"label={LABEL}={self.home.resolve()}")


def stack_command(module: str, action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, action]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    install_podman()
    home = tmp_path_factory.mktemp("container-stack")
    prefect_port, mlflow_port = free_ports(2)
    env = stack_environment(home, prefect_port, mlflow_port)
    api, mlflow = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
    try:
        started = stack_command("deployments.containers", "up", env)
        assert started.returncode == 0, f"up-containers failed:\n{started.stdout}\n{started.stderr}"
        yield Stack(home, env, api, mlflow, started.stdout, Podman.find(home))
    finally:
        stack_command("deployments.stack", "down", env)  # also after a failed test: never leave servers running


def run_deployment(stack: Stack) -> str:
    """A run of the containers deployment with the small override, triggered as the UI does: its id."""
    deployment = request_json(f"{stack.api}/deployments/name/{DEPLOYMENT}")
    create = f"{stack.api}/deployments/{deployment['id']}/create_flow_run"
    return request_json(create, {"parameters": SMALL_OVERRIDE})["id"]


@pytest.fixture(scope="module")
def finished_run(stack: Stack) -> dict:
    """The first run, ended, and its container exited (it runs on for a few seconds after the flow run's end)."""
    flow_run = final_flow_run(stack.api, run_deployment(stack), stack.home, "docker-worker")
    exited = wait_until(lambda: [c["State"] for c in stack.stack_containers()] == ["exited"], 60, every_s=1)
    assert exited, f"{stack.stack_containers()}\n{log_tail(stack.home, 'docker-worker')}"
    return flow_run


def test_up_builds_the_pipeline_image_and_puts_a_docker_worker_on_the_pool(stack):
    assert f"pipeline image  building {PIPELINE_IMAGE}" in stack.up_output
    pool = request_json(f"{stack.api}/work_pools/{POOL}")
    assert pool["type"] == "docker"
    variables = pool["base_job_template"]["variables"]["properties"]
    defaults = {name: spec.get("default") for name, spec in variables.items()}
    assert defaults["image"] == PIPELINE_IMAGE and defaults["image_pull_policy"] == "Never"
    assert defaults["env"]["MLFLOW_TRACKING_URI"] == stack.mlflow  # the stack's server, not its SQLite file
    workers = request_json(f"{stack.api}/work_pools/{POOL}/workers/filter", {})
    assert [worker["status"] for worker in workers] == ["ONLINE"]
    # The image holds this checkout, installed, and says which commit it is (no .git inside).
    found = stack.podman.run(
        "run", "--rm", "--runtime", "runc", PIPELINE_IMAGE, "python", "-c",
        "import os, flows.training, tasks.core.locations as at; print(at.code_version()[0], os.getuid())",
        what="running the pipeline image",
    )  # fmt: skip
    assert found.split() == [code_version()[0], "1034"]


def test_a_run_in_the_pipeline_image_registers_and_promotes_a_version(stack, finished_run):
    assert finished_run["state_type"] == "COMPLETED", log_tail(stack.home, "docker-worker")
    assert finished_run["infrastructure_pid"].startswith("http+docker://")  # a container, not a local process
    [container] = stack.stack_containers()
    assert container["Image"] == PIPELINE_IMAGE and container["ExitCode"] == 0
    model = request_json(f"{stack.mlflow}/api/2.0/mlflow/registered-models/get?name=digits-classifier")
    assert {alias["alias"]: alias["version"] for alias in model["registered_model"]["aliases"]} == {"production": "1"}
    version = request_json(f"{stack.mlflow}/api/2.0/mlflow/model-versions/get?name=digits-classifier&version=1")
    run = request_json(f"{stack.mlflow}/api/2.0/mlflow/runs/get?run_id={version['model_version']['run_id']}")
    tags = {tag["key"]: tag["value"] for tag in run["run"]["data"]["tags"]}
    assert tags["git_commit"] == code_version()[0]  # the image's commit, recorded on the run it trained
    # Its bento is in the host's store (mounted at its own path), where `greenlight serve` finds it.
    assert list((stack.home / "bentoml" / "bentos").iterdir())


def test_down_removes_the_stacks_containers_a_running_one_included_and_nothing_else(stack, finished_run):
    bystander = stack.podman.run(
        "run", "-d", "--runtime", "runc", BASE_IMAGE, "sleep", "600", what="starting a container of someone else's"
    ).strip()  # fmt: skip
    try:
        name = request_json(f"{stack.api}/flow_runs/{run_deployment(stack)}")["name"]  # the container's name
        label = f"label={LABEL}={stack.home.resolve()}"
        running = wait_until(lambda: stack.containers(label, f"name={name}", "status=running"), 120, every_s=1)
        assert running, f"no flow-run container started:\n{log_tail(stack.home, 'docker-worker')}"
        recorded = json.loads((stack.home / "stack" / "pids.json").read_text())["processes"]
        assert {"podman-socket", "docker-worker", "prefect-worker", "prefect-server"} <= {p["name"] for p in recorded}
        before = [(c["Names"], c["State"]) for c in stack.stack_containers()]
        stopped = stack_command("deployments.stack", "down", stack.env)
        assert stopped.returncode == 0, stopped.stderr
        # The finished run's container and the running one.
        assert f"removed {len(before)} flow-run container(s)" in stopped.stdout and len(before) == 2, before
        assert stack.stack_containers() == []
        assert [p["name"] for p in recorded if group_exists(p["pid"])] == []
        assert [c["State"] for c in stack.containers(f"id={bystander}")] == ["running"]
    finally:
        stack.podman.run("rm", "--force", "--time", "0", bystander, what="removing the bystander")
