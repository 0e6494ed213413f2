"""A model's approval policy as the gate reads it, and where a rollback steps back to (issue 26, items 3 and 4)."""

import pytest

from tasks.core.config import GateConfig
from tasks.core.errors import ConfigRejected
from tasks.core.policy import ApprovalPolicy, parse_duration, policy_from_tags
from tasks.release.gate import Approval, approval_check
from tasks.release.promotion import rollback_target

POLICY = ApprovalPolicy(True, ("ana", "Bo"), 900, "user root", "2026-12-06T17:00:00+00:00")


def move(kind: str, start: str | None, to: str) -> dict[str, str]:
    return {"kind": kind, "from_version": str(start), "to_version": to, "at": "", "reason": "", "actor": ""}


def test_the_policy_survives_its_registered_model_tags():
    tags = POLICY.tags()
    assert tags["policy.require_approval"] == "true" and tags["policy.approvers"] == "ana,Bo"
    assert policy_from_tags({**tags, "production_history.1": "{}"}) == POLICY
    assert policy_from_tags({}) == ApprovalPolicy()  # a model nobody set a policy on asks for no approval


def test_durations_read_as_a_person_writes_them():
    assert [parse_duration(text) for text in ("90s", "15m", "1h", "2d", "600")] == [90, 900, 3600, 172800, 600]
    for text in ("5s", "soon", "1w"):
        with pytest.raises(ConfigRejected):
            parse_duration(text)


def test_a_run_cannot_switch_off_its_models_policy_and_the_report_says_so():
    [check] = approval_check(None, GateConfig(require_approval=False), POLICY)
    assert not check.passed and "nobody approved" in check.source
    assert "model policy set by user root" in check.source and "does not lift it" in check.source
    assert approval_check(None, GateConfig(require_approval=False), ApprovalPolicy()) == []


def test_only_the_policys_approvers_can_approve():
    config = GateConfig()
    [stranger] = approval_check(Approval(True, "mallory", "lgtm"), config, POLICY)
    assert not stranger.passed and "not among the policy's approvers (ana, Bo)" in stranger.source
    [approver] = approval_check(Approval(True, "bo", "checked the drift report"), config, POLICY)
    assert approver.passed and "approved by bo: checked the drift report" in approver.source


def test_each_rollback_steps_one_version_further_back():
    promoted = [move("gate", None, "1"), move("gate", "1", "2"), move("gate", "2", "3")]
    assert rollback_target(promoted) == "2"
    once = [*promoted, move("rollback", "3", "2")]
    assert rollback_target(once) == "1"  # today: back to 3, the version just rolled back from
    twice = [*once, move("rollback", "2", "1")]
    assert rollback_target(twice) is None
    # `rollback --to 2` chose v2 again: it judges nothing about v1, the step back from v2.
    assert rollback_target([*twice, move("rollback-to", "1", "2")]) == "1"
    # A version rolled back from and later deliberately promoted again is a fair step back once more.
    again = [*once, move("forced", "2", "3"), move("gate", "3", "4")]
    assert rollback_target(again) == "3"
