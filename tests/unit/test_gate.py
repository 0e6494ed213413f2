"""decide_promotion: value thresholds, artifact checks, serving, change vs production, policies."""

from pathlib import Path

import pytest

from tasks.core.config import ChangeThreshold, GateConfig
from tasks.onnx.compress import CompressionResult
from tasks.onnx.runtime import CandidateScore, ParityReport
from tasks.release.gate import Approval, Baseline, ModelMetrics, decide_promotion
from tasks.release.serving_check import ServingCheck

GOOD_PARITY = ParityReport(rows=360, max_abs_logit_diff=5e-6, argmax_agreement=1.0)
GOOD_SERVING = ServingCheck(True, 2.0, 1.0, 200, 0, 3.0, 9.0, "200 requests at concurrency 4")


def metrics(accuracy: float = 0.98, f1: float = 0.98, worst_recall: float = 0.95) -> ModelMetrics:
    return ModelMetrics(accuracy, f1, (worst_recall,) + (0.99,) * 9)


def compression(fp32_accuracy: float = 0.98, served_accuracy: float = 0.98, size: int = 160_000) -> CompressionResult:
    fp32 = CandidateScore("fp32", Path("fp32.onnx"), 600_000, fp32_accuracy, 1.5)
    served = CandidateScore("int8-static-qdq", Path("q.onnx"), size, served_accuracy, 0.6)
    return CompressionResult(candidates=(fp32, served), chosen=served, reason="test")


def decide(candidate=None, comp=None, parity=GOOD_PARITY, serving=GOOD_SERVING, baseline=None, config=None, **kw):
    return decide_promotion(
        candidate or metrics(), comp or compression(), parity, serving, baseline, config or GateConfig(), **kw
    )


def failed(decision) -> list[str]:
    return decision.failed_checks()


def test_first_run_is_promoted_when_every_check_passes_and_says_which_policy_applied():
    decision = decide()
    assert decision.promote and decision.verdict == "passed"
    assert decision.policy == "first run: promote_if_thresholds_pass"
    assert not any("vs_production" in c.name for c in decision.checks)


def test_first_run_policy_never_promote_keeps_the_alias_even_when_checks_pass():
    decision = decide(config=GateConfig(first_run_policy="never_promote"))
    assert not decision.promote and failed(decision) == []
    assert "never_promote" in decision.reason


@pytest.mark.parametrize(
    "candidate, failing",
    [
        (metrics(accuracy=0.94), "test_accuracy"),
        (metrics(f1=0.94), "test_macro_f1"),
        (metrics(worst_recall=0.89), "test_min_class_recall"),
    ],
)
def test_value_thresholds_refuse_and_name_the_metric(candidate, failing):
    decision = decide(candidate=candidate)
    assert not decision.promote
    assert failed(decision) == [failing]
    assert failing in decision.reason


def test_thresholds_are_inclusive():
    decision = decide(candidate=metrics(accuracy=0.95, f1=0.95, worst_recall=0.90))
    assert decision.promote


@pytest.mark.parametrize(
    "parity, failing",
    [
        (ParityReport(360, 3e-4, 1.0), "parity_max_abs_logit_diff"),
        (ParityReport(360, 5e-6, 359 / 360), "parity_argmax_agreement"),
    ],
)
def test_failed_parity_blocks_promotion(parity, failing):
    assert failed(decide(parity=parity)) == [failing]


def test_compression_that_costs_more_than_its_budget_is_refused():
    decision = decide(comp=compression(fp32_accuracy=0.99, served_accuracy=0.98))
    assert failed(decision) == ["compression_accuracy_loss_points"]


def test_oversized_model_is_refused():
    assert failed(decide(comp=compression(size=20_000_000))) == ["model_size_bytes"]


@pytest.mark.parametrize(
    "serving, failing",
    [
        (ServingCheck(False, 0, 0, 0, 0, 0, 0, "exited"), ["serving_ready", "serving_known_batch_agreement"]),
        (ServingCheck(True, 2.0, 0.98, 200, 0, 3.0, 9.0, ""), ["serving_known_batch_agreement"]),
        (ServingCheck(True, 2.0, 1.0, 200, 3, 3.0, 9.0, ""), ["serving_errors"]),
        (ServingCheck(True, 2.0, 1.0, 200, 0, 30.0, 250.0, ""), ["serving_p99_latency_ms"]),
    ],
)
def test_serving_check_failures_block_promotion(serving, failing):
    assert failed(decide(serving=serving)) == failing


def test_regression_beyond_tolerance_against_production_is_refused():
    baseline = Baseline("4", metrics(accuracy=0.990))
    decision = decide(candidate=metrics(accuracy=0.980), baseline=baseline)
    assert failed(decision) == ["test_accuracy_vs_production_v4"]
    assert decision.policy == "compared with production v4"


def test_regression_within_tolerance_is_promoted_and_the_boundary_is_inclusive():
    baseline = Baseline("4", metrics(accuracy=0.990))
    assert decide(candidate=metrics(accuracy=0.985), baseline=baseline).promote


def test_relative_and_lower_is_better_change_thresholds():
    rules = [
        ChangeThreshold(metric="test_macro_f1", min_absolute_change=None, min_relative_change=0.0),
        ChangeThreshold(metric="test_accuracy", greater_is_better=False, min_absolute_change=0.0),
    ]
    decision = decide(
        candidate=metrics(accuracy=0.97, f1=0.97),
        baseline=Baseline("2", metrics(accuracy=0.98, f1=0.98)),
        config=GateConfig(change_thresholds=rules),
    )
    by_name = {c.name: c for c in decision.checks}
    assert not by_name["test_macro_f1_relative_change"].passed
    assert by_name["test_accuracy_vs_production_v2"].comparison == "<="
    assert by_name["test_accuracy_vs_production_v2"].passed  # lower accuracy "wins" under lower-is-better


def test_rejection_by_a_person_is_recorded_like_a_failed_gate():
    decision = decide(approval=Approval(False, "ana", "wait for the data fix"))
    assert not decision.promote
    assert decision.reason == "rejected by ana: wait for the data fix"
    assert "Human review: rejected by ana" in decision.report_markdown()


def test_report_lists_every_check_with_value_threshold_and_verdict(tmp_path):
    decision = decide(candidate=metrics(accuracy=0.93), baseline=Baseline("2", metrics()))
    markdown = decision.report_markdown()
    assert markdown.startswith("**Gate failed**")
    assert markdown.count("\n| ") == len(decision.checks) + 1
    assert "| test_accuracy | 0.93 | >= 0.95 | **FAIL** |" in markdown
    text = decision.write_json(tmp_path / "gate.json").read_text()
    assert '"verdict": "failed"' in text and '"promote": false' in text
