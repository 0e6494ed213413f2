"""Rollback steps back through production's history, `rollback --to` chooses a version that served or passed its
gate, and a model's approval policy governs `greenlight promote` (issue 26, items 3 and 4).

Small ONNX models registered without training (endpoint_support.register_onnx), moved as the gate moves them, in
the session's store: a registry and the Prefect harness (the promotion lock), a few seconds.
"""

import os

import pytest
from endpoint_support import linear_onnx, register_onnx
from mlflow import MlflowClient

from deployments.cli import main
from tasks.registry.client import alias_history, find_version, get_version, tag_model_version
from tasks.release.promotion import move_production, promotion_lock

pytestmark = pytest.mark.slow  # a registry and the Prefect harness; about 20 s


def gated_version(tmp_path, model: str, seed: int, verdict: str) -> str:
    """A registered version whose gate said `verdict` (passed, failed, abandoned), as the pipeline tags it."""
    version = register_onnx(tmp_path, linear_onnx(seed), None, name=model)
    ref = get_version(os.environ["MLFLOW_TRACKING_URI"], model, version)
    tag_model_version(ref, {"gate_verdict": verdict, "gate_reason": f"seeded as {verdict}"})
    return version


def promote_through_gate(model: str, version: str) -> None:
    """The gate's own move of production (promote_if_better's last step), recorded in the history."""
    with promotion_lock(model):
        move_production(get_version(os.environ["MLFLOW_TRACKING_URI"], model, version), "gate", "every check passed")


def production(model: str) -> str | None:
    found = find_version(os.environ["MLFLOW_TRACKING_URI"], model)
    return found.version if found else None


def test_rollback_steps_back_through_history_and_to_a_chosen_version(prefect_harness, tmp_path):
    model = "rollback-history-model"
    for seed in (1, 2, 3):
        promote_through_gate(model, gated_version(tmp_path, model, seed, "passed"))
    assert production(model) == "3"

    # Today's rollback toggles: 3 -> 2, then 2 -> 3. Each rollback must go one version further back.
    assert main(["rollback", "--model-name", model, "--reason", "v3 misbehaves"]) == 0
    assert production(model) == "2"
    assert main(["rollback", "--model-name", model, "--reason", "v2 misbehaves too"]) == 0
    assert production(model) == "1"
    # Nothing before v1, and v2 and v3 were rolled back from: no step left, and nothing moves.
    assert main(["rollback", "--model-name", model]) == 1
    assert production(model) == "1"

    assert main(["rollback", "--model-name", model, "--to", "2", "--reason", "v2 fixed upstream"]) == 0
    assert production(model) == "2"
    moves = alias_history(os.environ["MLFLOW_TRACKING_URI"], model)
    assert [(m["kind"], m["from_version"], m["to_version"]) for m in moves[3:]] == [
        ("rollback", "3", "2"),
        ("rollback", "2", "1"),
        ("rollback-to", "1", "2"),
    ]
    assert moves[-1]["reason"] == "v2 fixed upstream"


def test_rollback_to_a_version_that_never_served_nor_passed_is_refused(prefect_harness, tmp_path):
    model = "rollback-refusal-model"
    promote_through_gate(model, gated_version(tmp_path, model, 1, "passed"))
    promote_through_gate(model, gated_version(tmp_path, model, 2, "passed"))
    abandoned = gated_version(tmp_path, model, 3, "abandoned")
    refused = gated_version(tmp_path, model, 4, "failed")
    moves_before = alias_history(os.environ["MLFLOW_TRACKING_URI"], model)

    for version in (abandoned, refused, "2", "99"):  # never gated, refused, production itself, no such version
        assert main(["rollback", "--model-name", model, "--to", version]) == 1
    assert production(model) == "2"
    assert alias_history(os.environ["MLFLOW_TRACKING_URI"], model) == moves_before


def test_promote_under_an_approval_policy_needs_an_approver_and_records_them(prefect_harness, tmp_path, monkeypatch):
    model = "policy-promote-model"
    promote_through_gate(model, gated_version(tmp_path, model, 1, "passed"))
    candidate = gated_version(tmp_path, model, 2, "failed")
    policy = ["policy", "--model-name", model]
    assert main([*policy, "--require-approval", "on", "--approvers", "ana,bo", "--approval-timeout", "15m"]) == 0
    tags = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).get_registered_model(model).tags
    assert (tags["policy.require_approval"], tags["policy.approvers"], tags["policy.approval_timeout_s"]) == (
        "true",
        "ana,bo",
        "900",
    )
    assert tags["policy.changed_by"].startswith("user ") and tags["policy.changed_at"]

    # Before: `greenlight promote` needed no approval. Now only an approver promotes, and is recorded.
    monkeypatch.setenv("GREENLIGHT_ACTOR", "mallory")
    assert main(["promote", candidate, "--model-name", model, "--reason", "ship it"]) == 1
    assert production(model) == "1"
    monkeypatch.setenv("GREENLIGHT_ACTOR", "ana")
    assert main(["promote", candidate, "--model-name", model, "--reason", "incident 7: v1 mislabels"]) == 0
    assert production(model) == candidate
    version_tags = get_version(os.environ["MLFLOW_TRACKING_URI"], model, candidate).tags
    assert (version_tags["approval.answer"], version_tags["approval.reviewer"]) == ("approved", "ana")
    assert version_tags["approval.comment"] == "promoted by hand: incident 7: v1 mislabels"

    assert main([*policy, "--approval-timeout", "5s"]) == 2  # nobody could answer in time: refused, unchanged
    assert main([*policy, "--require-approval", "off"]) == 0
    monkeypatch.setenv("GREENLIGHT_ACTOR", "mallory")
    assert main(["rollback", "--model-name", model]) == 0  # a rollback never needs approval
    assert main(["promote", candidate, "--model-name", model, "--reason", "policy off"]) == 0
