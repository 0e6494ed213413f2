"""The kubernetes work pool's base job template, rendered as the worker renders it (prefect-kubernetes' own job
configuration class and Prefect's templating), is a Job the cluster's schemas accept, with the image, the
requests, the GPU and the tracking server where a run needs them."""

import asyncio
import json
import uuid
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prefect.client.schemas.objects import FlowRun
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = json.loads((ROOT / "deployments" / "kubernetes" / "base-job-template.json").read_text())
KUBERNETES_PREFECT_FILE = ROOT / "deployments" / "kubernetes" / "prefect.yaml"


class NoServer:
    """from_template_and_values asks a Prefect client only for block and variable references, and this template
    holds none: a client that is never called keeps the test off any server."""


def rendered_job(values: dict) -> dict:
    """The Job manifest a kubernetes worker would submit for a flow run with these job variables."""
    render = KubernetesWorkerJobConfiguration.from_template_and_values(TEMPLATE, values, client=NoServer())
    configuration = asyncio.run(render)
    configuration.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), name="brave-heron", flow_id=uuid.uuid4()))
    return configuration.job_manifest


def validated(job: dict) -> dict:
    """Strictly validated against the cluster's schemas. prefect-kubernetes' worker insists on `completions` and
    `parallelism` inside the pod spec (its job manifest check refuses a template without them); the API server
    drops those two unknown fields, so they are the only ones set aside here."""
    pod = {
        key: value
        for key, value in job["spec"]["template"]["spec"].items()
        if key not in ("completions", "parallelism")
    }
    cluster_view = {**job, "spec": {**job["spec"], "template": {**job["spec"]["template"], "spec": pod}}}
    for version in ("1.30", "1.37"):
        kubernetes_validate.validate(cluster_view, version, strict=True)
    return job


def job_container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_the_template_keeps_every_variable_and_field_of_prefect_kubernetes_default() -> None:
    default = KubernetesWorker.get_default_base_job_template()
    assert default["variables"]["properties"].keys() <= TEMPLATE["variables"]["properties"].keys()
    assert default["job_configuration"].keys() == TEMPLATE["job_configuration"].keys()
    added = TEMPLATE["variables"]["properties"].keys() - default["variables"]["properties"].keys()
    assert added == {"gpu_limit", "mlflow_tracking_uri", "prefect_api_url"}


def test_the_default_job_runs_the_pipeline_image_with_its_requests_and_the_tracking_server() -> None:
    job = validated(rendered_job({}))
    container = job_container(job)
    assert container["image"] == "greenlight-pipeline:latest"
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc.cluster.local:5000"
    assert env["PREFECT_API_URL"] == "http://prefect-server.prefect.svc.cluster.local:4200/api"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_a_run_can_ask_for_a_gpu_another_image_and_another_tracking_server() -> None:
    values = {
        "image": "registry.example.com/ml/greenlight-pipeline:7",
        "cpu_request": "8",
        "gpu_limit": 1,
        "mlflow_tracking_uri": "https://mlflow.example.com",
        "env": {"GREENLIGHT_ORT_THREADS": "4"},
    }
    container = job_container(validated(rendered_job(values)))
    assert container["image"] == "registry.example.com/ml/greenlight-pipeline:7"
    assert container["resources"]["requests"]["cpu"] == "8"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com" and env["GREENLIGHT_ORT_THREADS"] == "4"


def test_without_a_gpu_the_job_asks_for_none() -> None:
    assert "nvidia.com/gpu" not in job_container(rendered_job({}))["resources"]["limits"]


def test_the_kubernetes_deployment_runs_the_training_flow_on_the_kubernetes_pool() -> None:
    (deployment,) = yaml.safe_load(KUBERNETES_PREFECT_FILE.read_text())["deployments"]
    assert deployment["entrypoint"] == "flows/training.py:training_pipeline"
    assert (ROOT / deployment["entrypoint"].split(":")[0]).is_file()
    assert deployment["work_pool"]["name"] == "greenlight-kubernetes"
    assert deployment["work_pool"]["job_variables"].keys() <= TEMPLATE["variables"]["properties"].keys()
    validated(rendered_job(deployment["work_pool"]["job_variables"]))


def test_make_up_applies_only_the_process_pool() -> None:
    """`make up` runs `prefect deploy --all` on deployments/prefect.yaml: it must need no cluster."""
    pools = {
        d["work_pool"]["name"]
        for d in yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]
    }
    assert pools == {"greenlight-process"}


@pytest.mark.parametrize("missing", ["completions", "parallelism"])
def test_the_worker_refuses_a_template_without_the_pod_fields_it_insists_on(missing: str) -> None:
    """Why `validated` sets the two fields aside instead of the template leaving them out."""
    broken = json.loads(json.dumps(TEMPLATE))
    del broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"][missing]
    render = KubernetesWorkerJobConfiguration.from_template_and_values(broken, {}, client=NoServer())
    with pytest.raises(ValueError, match=f"missing required attributes.*{missing}"):
        asyncio.run(render)


def test_the_pipeline_image_holds_the_flow_where_the_deployment_runs_it_pinned_and_not_as_root():
    import tomllib

    dockerfile = (ROOT / "deployments" / "kubernetes" / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    pull = yaml.safe_load(KUBERNETES_PREFECT_FILE.read_text())["pull"][0]
    directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert f"WORKDIR {directory}" in lines
    assert f"PIP_CONSTRAINT={directory}/constraints.txt" in dockerfile
    assert "COPY pyproject.toml constraints.txt" in dockerfile
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copied = {line.split()[1].rstrip("/") for line in lines if line.startswith("COPY ")}
    assert {package.split(".")[0] for package in packages} <= copied
    install = next(line for line in lines if line.startswith("RUN pip install"))
    assert "-e ." in install
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] != "USER root" and lines.index(users[-1]) > lines.index(install)
