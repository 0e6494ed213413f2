"""Approval as the registered model's policy, end to end (issue 26, item 3): a run whose own configuration asks for
no approval still pauses; an approver's answer through Prefect's API (as the UI sends it) promotes and is recorded
with the reviewer's name; no answer within the policy's timeout promotes nothing and marks the version."""

import os
import threading

import pytest
import yaml
from mlflow import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect.flow_runs import resume_flow_run

from deployments.cli import main
from tasks.core.retry import wait_until
from tasks.registry.client import alias_history, find_version

pytestmark = pytest.mark.slow  # two small pipeline runs, one waiting out a 10 s approval timeout
FAST = ["--max-epochs", "12"]  # ~0.98 test accuracy in a few seconds: enough to pass the gate


def run_command(model: str, config: dict, tmp_path, name: str) -> list[str]:
    """`greenlight run` with a run configuration of its own (written to tmp_path)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["run", "--model-name", model, "--config", str(path), *FAST]


def paused_run_of(model: str, runner: threading.Thread):
    """The model's flow run paused for approval, or None while it has not paused yet."""
    assert runner.is_alive(), "the run ended without pausing for approval"
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(flow_run_filter=FlowRunFilter(state={"name": {"any_": ["Paused"]}}))
    return next((run for run in found if model in str(run.parameters)), None)


def test_a_policy_pauses_every_run_an_approver_promotes_and_no_answer_promotes_nothing(
    prefect_harness, tmp_path, capsys
):
    model = "approval-policy-model"
    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=tracking_uri)
    policy = ["policy", "--model-name", model, "--require-approval", "on", "--approvers", "ana"]
    assert main([*policy, "--approval-timeout", "10m"]) == 0

    # The run asks for no approval (today: promoted without anybody asked); the policy makes it wait.
    command = run_command(model, {"gate": {"require_approval": False}}, tmp_path, "no-approval")
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.setdefault("exit", main(command)))  # it pauses: beside the test
    runner.start()
    paused = wait_until(lambda: paused_run_of(model, runner), timeout_s=300, every_s=1)
    assert paused is not None, "the run never paused for approval"
    resume_flow_run(paused.id, run_input={"approve": True, "reviewer": "ana", "comment": "read the gate report"})
    runner.join(timeout=300)
    assert result["exit"] == 0 and find_version(tracking_uri, model).version == "1"
    tags = client.get_model_version(model, "1").tags
    assert (tags["approval.answer"], tags["approval.reviewer"]) == ("approved", "ana")
    assert tags["approval.comment"] == "read the gate report" and tags["approval.recorded_by"].startswith("flow run ")
    assert tags["gate.human_approval"].endswith("pass")
    report = client.get_model_version(model, "1").description
    assert "model policy set by user " in report and "gate.require_approval false does not lift it" in report
    capsys.readouterr()
    assert main(["show", "1", "--model-name", model]) == 0  # where a person looks for who approved it
    review = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("review "))
    assert "approved by ana: read the gate report (recorded by flow run " in review

    # Nobody answers within the policy's timeout: not promoted, the version says why, production stays v1.
    assert main([*policy, "--approval-timeout", "10s"]) == 0
    # Another seed, so the candidate is not production's own model; any accuracy change is fine for this check.
    config = {
        "gate": {
            "require_approval": False,
            "change_thresholds": [{"metric": "test_accuracy", "min_absolute_change": -1}],
        },
        "training": {"seed": 7},
    }
    assert main(run_command(model, config, tmp_path, "timeout")) == 3
    assert find_version(tracking_uri, model).version == "1"
    tags = client.get_model_version(model, "2").tags
    assert (tags["approval.answer"], tags["approval.reviewer"]) == ("timed out", "nobody")
    assert tags["gate_verdict"] == "failed" and "no answer within 10 s" in tags["gate_reason"]
    assert [m["to_version"] for m in alias_history(tracking_uri, model)] == ["1"]
    capsys.readouterr()
    assert main(["show", "2", "--model-name", model]) == 0
    assert "review        timed out: " in capsys.readouterr().out
