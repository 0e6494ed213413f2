"""`make up` / `make down` end to end: the stack serves the nightly deployment, its worker runs the real
training flow when triggered, the MLflow UI shows the result, a file dropped into a watched folder (or sent by
`greenlight submit`) starts a run of it through an event, and `down` leaves no process behind.

The stack runs as a user starts it (`python -m deployments.stack`), in subprocesses, with every store in
a temporary folder and free ports; the tests talk to it over HTTP only.
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from stack_support import (
    SMALL_OVERRIDE,
    final_flow_run,
    free_ports,
    group_exists,
    log_tail,
    request_json,
    stack_environment,
)

from tasks.core.retry import wait_until

pytestmark = pytest.mark.slow  # starts Prefect, a worker and MLflow, then trains a small model

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The worker asks the server for work every 10 s by default; every 2 s, each run here starts ~4 s sooner on average.
WORKER_QUERY_S = "2"


@dataclass(frozen=True)
class Stack:
    home: Path
    env: dict[str, str]
    api: str
    mlflow: str

    @property
    def pids_file(self) -> Path:
        return self.home / "stack" / "pids.json"


def stack_command(action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deployments.stack", action]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack-home")
    prefect_port, mlflow_port = free_ports(2)
    env = stack_environment(home, prefect_port, mlflow_port, WORKER_QUERY_S)
    stack = Stack(home, env, f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}")
    try:
        started = stack_command("up", env)
        assert started.returncode == 0, f"stack up failed:\n{started.stdout}\n{started.stderr}"
        yield stack
    finally:
        stack_command("down", env)  # also after a failed or interrupted test: never leave servers running


@pytest.fixture(scope="module")
def deployment(stack: Stack) -> dict:
    return request_json(f"{stack.api}/deployments/name/training_pipeline/nightly")


def final_state(stack: Stack, flow_run_id: str) -> dict:
    return final_flow_run(stack.api, flow_run_id, stack.home, "prefect-worker")


@pytest.fixture(scope="module")
def triggered(stack: Stack, deployment: dict) -> str:
    """A run of the deployment with a small override, triggered as the UI does: its id."""
    create = f"{stack.api}/deployments/{deployment['id']}/create_flow_run"
    return request_json(create, {"parameters": SMALL_OVERRIDE})["id"]


@pytest.fixture(scope="module")
def finished_run(stack: Stack, triggered: str, dropped_file: tuple[list[dict], Path]) -> dict:
    """The triggered run, waited on until final. The file dropped into a watched folder goes first, so that its run
    trains on the worker beside this one instead of after it (~25 s of the module's 130 on 2 cores)."""
    return final_state(stack, triggered)


def test_up_deploys_the_nightly_schedule_from_this_checkout(deployment):
    [schedule] = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "UTC"
    assert schedule["active"]
    assert deployment["work_pool_name"] == "greenlight-process"
    assert deployment["parameters"] == {}
    set_directory = {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}
    assert deployment["pull_steps"] == [set_directory]


def test_the_prefect_ui_talks_to_this_stacks_api(stack):
    settings = request_json(stack.api.removesuffix("/api") + "/ui-settings")
    assert settings["api_url"] == stack.api


def test_the_deployment_parameters_are_the_typed_run_config_form(deployment):
    schema = deployment["parameter_openapi_schema"]
    assert schema["properties"]["config"]["$ref"] == "#/definitions/RunConfig"
    run_config = schema["definitions"]["RunConfig"]["properties"]
    # The form takes a data path, a target and a spec path: a user's own table from the UI.
    assert {"data_path", "target", "task", "spec_path", "model_name", "training", "gate"} <= set(run_config)
    assert run_config["task"]["enum"] == ["auto", "classification", "regression"]
    learning_rate = schema["definitions"]["TrainingConfig"]["properties"]["learning_rate"]
    assert (learning_rate["type"], learning_rate["default"]) == ("number", 0.002)
    assert deployment["enforce_parameter_schema"]


def test_up_again_keeps_the_running_stack(stack):
    before = stack.pids_file.read_text()
    again = stack_command("up", stack.env)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert stack.pids_file.read_text() == before


def test_a_triggered_run_is_executed_by_the_worker_and_completes(stack, finished_run):
    assert finished_run["state_type"] == "COMPLETED", (
        f"{finished_run['state_name']}: {finished_run['state']['message']}\n{log_tail(stack.home, 'prefect-worker')}"
    )
    assert finished_run["parameters"] == SMALL_OVERRIDE
    assert finished_run["work_pool_name"] == "greenlight-process"


def test_the_mlflow_ui_shows_the_run_and_its_artifacts(stack, finished_run):
    # The browser's own headers: MLflow's host and CORS checks must let 127.0.0.1 through.
    browser = {"Host": stack.mlflow.removeprefix("http://"), "Origin": stack.mlflow}
    found = request_json(f"{stack.mlflow}/ajax-api/2.0/mlflow/experiments/search", {"max_results": 10}, browser)
    [experiment] = [e for e in found["experiments"] if e["name"] == "greenlight"]
    search = {
        "experiment_ids": [experiment["experiment_id"]],
        "filter": f"tags.prefect_flow_run_id = '{finished_run['id']}'",
    }
    runs = request_json(f"{stack.mlflow}/ajax-api/2.0/mlflow/runs/search", search, browser)
    [run] = runs["runs"]
    assert run["info"]["status"] == "FINISHED"
    listed = request_json(f"{stack.mlflow}/ajax-api/2.0/mlflow/artifacts/list?run_id={run['info']['run_id']}")
    assert listed["root_uri"].startswith((stack.home / "mlartifacts").as_uri())
    assert listed["files"], "the run's artifacts are not listed"


# --- new data: the watcher and `greenlight submit` emit events; the on-new-data deployment's trigger runs the flow --

NEW_DATA_DEPLOYMENT = "training_pipeline/on-new-data"
# The run settings of a reviewed spec travel with the event: few epochs, no pruning or distillation, a short load.
WINE_SETTINGS = {
    "model_name": "wine",
    "training": {"max_epochs": 20, "learning_rate": 0.003},
    "compression": {"pruning": {"levels": []}, "distillation": {"enabled": False}},
    "gate": {"serving": {"load_requests": 20, "max_p99_latency_ms": 5000}},
}
# The watcher scans every 2 s: two scans see the half-written file.
WATCHER_SCANS_S = 4.5


@pytest.fixture(scope="module")
def wine_folder(stack: Stack) -> Path:
    """A watched folder of the stack, <home>/watch/wine, holding the spec inferred from scikit-learn's wine table with
    small run settings, and the table (outside incoming/) for the tests to drop or submit."""
    import sklearn.datasets

    from tasks.data.infer import infer_spec, write_spec_file

    frame = sklearn.datasets.load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    folder = stack.home / "watch" / "wine"
    write_spec_file(infer_spec(frame, "cultivar", name="wine")[0], WINE_SETTINGS, folder / "greenlight.yaml")
    frame.to_csv(folder / "wine.csv", index=False)
    return folder


def new_data_runs(stack: Stack, data_path: Path) -> list[dict]:
    """The on-new-data deployment's flow runs of one file."""
    deployment = request_json(f"{stack.api}/deployments/name/{NEW_DATA_DEPLOYMENT}")
    body = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}
    runs = request_json(f"{stack.api}/flow_runs/filter", body)
    return [run for run in runs if run["parameters"]["config"]["data_path"] == str(data_path)]


def started_run(stack: Stack, data_path: Path) -> dict:
    """The flow run an event about data_path started, once it exists (the trigger acts within a second or two)."""
    runs = wait_until(lambda: new_data_runs(stack, data_path), 60, every_s=1)
    if not runs:
        pytest.fail(f"no flow run of {data_path} within 60 s; watcher log:\n{log_tail(stack.home, 'watcher')}")
    return runs[0]


@pytest.fixture(scope="module")
def dropped_file(stack: Stack, wine_folder: Path) -> tuple[list[dict], Path]:
    """wine.csv written into incoming/ as wine.csv.partial in two steps, then renamed: the runs that existed while it
    was half-written, and the dropped file."""
    incoming, lines = wine_folder / "incoming", (wine_folder / "wine.csv").read_text().splitlines(keepends=True)
    incoming.mkdir(exist_ok=True)
    partial, complete = incoming / "wine.csv.partial", incoming / "wine.csv"
    partial.write_text("".join(lines[:90]))
    time.sleep(WATCHER_SCANS_S)
    while_half_written = new_data_runs(stack, complete) + new_data_runs(stack, partial)
    with partial.open("a") as rest:
        rest.write("".join(lines[90:]))
    partial.rename(complete)
    return while_half_written, complete


@pytest.fixture(scope="module")
def dropped(stack: Stack, dropped_file: tuple[list[dict], Path]) -> tuple[list[dict], dict]:
    """The runs that existed while the file was half-written, and the run its event started, once final."""
    while_half_written, path = dropped_file
    return while_half_written, final_state(stack, started_run(stack, path)["id"])


def test_a_file_dropped_into_a_watched_folder_trains_once_complete_with_the_folders_spec(stack, wine_folder, dropped):
    while_half_written, run = dropped
    assert while_half_written == []
    assert run["state_type"] == "COMPLETED", (
        f"{run['state_name']}: {run['state']['message']}\n{log_tail(stack.home, 'prefect-worker')}"
    )
    assert run["created_by"]["type"] == "AUTOMATION"  # the deployment's trigger, on the watcher's event
    config = run["parameters"]["config"]
    assert config["data_path"] == str(wine_folder / "incoming" / "wine.csv")
    assert config["spec_path"] == str(wine_folder / "greenlight.yaml")
    # The spec file's settings arrive as the values they are (a number, an empty list), not as rendered text.
    assert config["training"] == WINE_SETTINGS["training"] and config["model_name"] == "wine"
    assert config["compression"]["pruning"]["levels"] == []
    assert len(new_data_runs(stack, wine_folder / "incoming" / "wine.csv")) == 1


def test_the_run_started_by_new_data_registers_a_version(stack, dropped):
    _, run = dropped
    found = request_json(f"{stack.mlflow}/api/2.0/mlflow/model-versions/search?filter=name%3D%27wine%27")
    [version] = found["model_versions"]
    mlflow_run = request_json(f"{stack.mlflow}/api/2.0/mlflow/runs/get?run_id={version['run_id']}")["run"]
    tags = {tag["key"]: tag["value"] for tag in mlflow_run["data"]["tags"]}
    assert tags["prefect_flow_run_id"] == run["id"]


def test_greenlight_submit_starts_a_run_which_refuses_a_bad_file(stack, wine_folder, dropped):
    lines = (wine_folder / "wine.csv").read_text().splitlines()
    bad = wine_folder / "wine-unknown-cultivar.csv"  # outside incoming/: only submit sends it
    bad.write_text("\n".join([lines[0], *(line.rsplit(",", 1)[0] + ",7" for line in lines[1:])]) + "\n")
    spec = wine_folder / "greenlight.yaml"
    command = [sys.executable, "-m", "deployments.cli", "submit", str(bad), "--spec", str(spec)]
    client = {**stack.env, "PREFECT_API_URL": stack.api}
    submitted = subprocess.run(command, cwd=PROJECT_ROOT, env=client, capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    assert "emitted     greenlight.data.arrived" in submitted.stdout and str(bad) in submitted.stdout
    assert f"{NEW_DATA_DEPLOYMENT} starts a flow run" in submitted.stdout
    run = final_state(stack, started_run(stack, bad)["id"])
    assert run["state_type"] == "FAILED" and "cultivar" in run["state"]["message"]
    versions = request_json(f"{stack.mlflow}/api/2.0/mlflow/model-versions/search?filter=name%3D%27wine%27")
    assert len(versions["model_versions"]) == 1  # the refused file registered nothing


def test_down_stops_every_process_up_started(stack):
    recorded = json.loads(stack.pids_file.read_text())["processes"]
    assert {p["name"] for p in recorded} == {"prefect-server", "prefect-worker", "mlflow-ui", "watcher"}
    stopped = stack_command("down", stack.env)
    assert stopped.returncode == 0, stopped.stderr
    assert [p["pid"] for p in recorded if group_exists(p["pid"])] == []
    assert not stack.pids_file.exists()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{stack.api}/health", timeout=5)
