"""decide_promotion: absolute thresholds, parity, and the comparison with production."""

from pathlib import Path

import pytest

from tasks.config import GateConfig
from tasks.gate import BaselineScore, decide_promotion
from tasks.onnx_model import CandidateScore, ParityReport

GOOD_PARITY = ParityReport(rows=360, max_abs_logit_diff=5e-6, argmax_agreement=1.0)


def served(accuracy: float) -> CandidateScore:
    return CandidateScore("int8-static-qdq", Path("m.onnx"), 160_000, accuracy, 0.6)


def test_first_run_is_promoted_when_absolute_thresholds_pass():
    decision = decide_promotion.fn(served(0.98), GOOD_PARITY, None, GateConfig())
    assert decision.promote
    assert "no production version yet" in decision.reason
    assert [c.name for c in decision.checks] == [
        "test_accuracy",
        "parity_max_abs_logit_diff",
        "parity_argmax_agreement",
    ]


def test_low_accuracy_is_refused_and_named():
    decision = decide_promotion.fn(served(0.93), GOOD_PARITY, None, GateConfig())
    assert not decision.promote and decision.verdict == "failed"
    assert "test_accuracy" in decision.reason
    assert "FAIL  test_accuracy: 0.93 >= 0.95" in [c.line() for c in decision.checks]


@pytest.mark.parametrize(
    "parity, failing",
    [
        (ParityReport(360, 3e-4, 1.0), "parity_max_abs_logit_diff"),
        (ParityReport(360, 5e-6, 359 / 360), "parity_argmax_agreement"),
    ],
)
def test_failed_parity_blocks_promotion(parity, failing):
    decision = decide_promotion.fn(served(0.99), parity, None, GateConfig())
    assert not decision.promote
    assert decision.reason == f"failed {failing}"


def test_regression_beyond_tolerance_against_production_is_refused():
    baseline = BaselineScore(version="4", accuracy=0.990)
    decision = decide_promotion.fn(served(0.980), GOOD_PARITY, baseline, GateConfig(max_regression_points=0.5))
    assert not decision.promote
    assert "test_accuracy_vs_production_v4" in decision.reason


def test_small_regression_within_tolerance_is_promoted_inclusively():
    baseline = BaselineScore(version="4", accuracy=0.990)
    decision = decide_promotion.fn(served(0.985), GOOD_PARITY, baseline, GateConfig(max_regression_points=0.5))
    assert decision.promote
    assert "not worse than production v4" in decision.reason


def test_report_markdown_lists_every_check(tmp_path):
    decision = decide_promotion.fn(served(0.93), GOOD_PARITY, BaselineScore("2", 0.97), GateConfig())
    markdown = decision.report_markdown()
    assert markdown.startswith("**Gate failed**")
    assert markdown.count("\n| ") == len(decision.checks) + 1  # header + one row per check
    assert '"promote": false' in decision.write_json(tmp_path / "gate.json").read_text()
