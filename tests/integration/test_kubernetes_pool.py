"""The kubernetes work pool on a real Prefect server: the server accepts deployments/kubernetes/base-job-template.json
for a pool of type kubernetes, and `prefect deploy` applies deployments/kubernetes/prefect.yaml to it as a user
runs it. (tests/unit/test_work_pool.py renders that template with the deployment's job variables and validates
the Job a worker would submit.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # `prefect deploy` in a subprocess: ~10 s of imports on 2 cores

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deployments" / "kubernetes"


def test_the_kubernetes_deployment_is_applied_to_a_kubernetes_pool(prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    template = json.loads((FOLDER / "base-job-template.json").read_text())
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name="greenlight-kubernetes", type="kubernetes", base_job_template=template),
            overwrite=True,
        )
    command = [str(Path(sys.executable).parent / "prefect"), "deploy", "--no-prompt", "--all"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    deployed = subprocess.run(
        [*command, "--prefect-file", str(FOLDER / "prefect.yaml")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("training_pipeline/kubernetes")
        pool = client.read_work_pool("greenlight-kubernetes")
    (declared,) = yaml.safe_load((FOLDER / "prefect.yaml").read_text())["deployments"]
    assert (pool.type, pool.base_job_template) == ("kubernetes", template)
    assert deployment.work_pool_name == "greenlight-kubernetes"
    assert deployment.job_variables == declared["work_pool"]["job_variables"]
    (pull,) = deployment.pull_steps  # the code is in the image, where the job runs the flow from
    assert pull == {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/greenlight"}}
