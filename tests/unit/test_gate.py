"""decide_promotion: the trivial-baseline bar, absolute thresholds, artifacts, serving, change vs production."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tasks.core.config import ChangeThreshold, GateConfig
from tasks.core.spec import DatasetSpec, FeatureSpec, TargetSpec
from tasks.data.report import DataVerdict
from tasks.model.metrics import ModelMetrics
from tasks.onnx.compress import CompressionResult
from tasks.onnx.runtime import CandidateScore, ParityReport
from tasks.release.gate import Approval, Baseline, GateEvidence, HeldOutScores, decide_promotion, held_out_scores
from tasks.release.serving_check import ServingCheck

GOOD_PARITY = ParityReport(rows=360, max_abs_diff=5e-6, agreement=1.0)
GOOD_SERVING = ServingCheck(True, 2.0, 1.0, 200, 0, 3.0, 9.0, "200 requests at concurrency 4")


def classification(
    accuracy: float = 0.98, f1: float = 0.98, worst_recall: float = 0.95, balanced: float | None = None
) -> ModelMetrics:
    values = {
        "test_accuracy": accuracy,
        "test_balanced_accuracy": accuracy if balanced is None else balanced,
        "test_macro_f1": f1,
        "test_min_class_recall": worst_recall,
    }
    return ModelMetrics("classification", values)


def regression(rmse: float = 40.0, r2: float = 0.5) -> ModelMetrics:
    return ModelMetrics("regression", {"test_rmse": rmse, "test_mae": rmse * 0.8, "test_r2": r2})


def compression(size: int = 160_000) -> CompressionResult:
    fp32 = CandidateScore(
        name="fp32", path=Path("fp32.onnx"), size_bytes=600_000, metric=0.98, latency_ms_per_batch=1.5
    )
    served = CandidateScore(
        name="int8-static-qdq", path=Path("q.onnx"), size_bytes=size, metric=0.98, latency_ms_per_batch=0.6
    )
    reason = "chose int8-static-qdq: smallest of ['fp32', 'int8-static-qdq'] within the budgets"
    return CompressionResult(candidates=(fp32, served), chosen=served, reason=reason)


def evidence(
    candidate=None, fp32=None, trivial=None, parity=GOOD_PARITY, serving=GOOD_SERVING, size=160_000, approval=None
):
    candidate = candidate or classification()
    if trivial is None:
        # Three classes, the majority 40 % of the rows: balanced accuracy 1/3, whose bar is 1/3 + 10% of 2/3 = 0.4.
        trivial = classification(0.40, 0.19, 0.0, 1 / 3) if candidate.task == "classification" else regression(80.0)
    scores = HeldOutScores(candidate, fp32 or candidate, Baseline("majority class 'a'", trivial))
    return GateEvidence(scores, compression(size), parity, serving, approval=approval)


def decide(production=None, config=None, **kw):
    return decide_promotion(evidence(**kw), production, config or GateConfig())


def failed(decision) -> list[str]:
    return decision.failed_checks()


def test_first_run_is_promoted_when_every_check_passes_and_says_which_policy_applied():
    decision = decide()
    assert decision.promote and decision.verdict == "passed"
    assert decision.policy == "first run: promote_if_thresholds_pass"
    assert not any("vs_production" in c.name for c in decision.checks)
    assert "Served file: chose int8-static-qdq: smallest of ['fp32', 'int8-static-qdq']" in decision.report_markdown()


def test_no_absolute_threshold_applies_unless_configured():
    names = {c.name for c in decide(candidate=classification(accuracy=0.60)).checks}
    assert "test_accuracy" not in names and "test_balanced_accuracy_vs_trivial" in names


def test_a_model_no_better_than_the_majority_class_is_refused_and_the_threshold_says_why():
    # The majority class's balanced accuracy is 1/3: the candidate must remove 10% of its errors, i.e. reach 0.4.
    decision = decide(candidate=classification(accuracy=0.9, balanced=0.39))
    assert failed(decision) == ["test_balanced_accuracy_vs_trivial"]
    check = next(c for c in decision.checks if c.name == "test_balanced_accuracy_vs_trivial")
    assert check.threshold == pytest.approx(0.4)
    assert check.source.startswith("balanced accuracy 0.3900 vs majority class 'a' 0.3333 on the same rows:")
    assert "must beat it by 0.0667, 10% of its error (gate.min_gain_over_baseline" in check.source
    assert decide(candidate=classification(accuracy=0.9, balanced=0.4)).promote  # inclusive


def test_gate_baseline_metric_accuracy_judges_accuracy_instead():
    # Majority class accuracy 0.40: the candidate must reach 0.46, whatever its balanced accuracy.
    config = GateConfig(baseline_metric="accuracy")
    decision = decide(candidate=classification(accuracy=0.45, balanced=0.9), config=config)
    assert failed(decision) == ["test_accuracy_vs_trivial"]
    assert next(c for c in decision.checks if c.name == "test_accuracy_vs_trivial").threshold == pytest.approx(0.46)


def test_two_classes_a_model_that_ranks_but_rarely_answers_the_minority_passes_on_roc_auc():
    """lending_club's shape: 5 % bad loans, scores that rank (ROC AUC ~0.75) but never pass 0.5. The default
    judges the ranking; balanced accuracy, if chosen, judges the decisions and refuses."""
    rng = np.random.default_rng(0)
    targets = (rng.random(4000) < 0.05).astype(np.int64)
    score = rng.normal(size=4000) + 0.9 * targets  # the minority sits higher, never above the majority's bulk
    logits = np.stack([np.zeros(4000), score - 4.0], axis=1)
    spec = DatasetSpec(
        target=TargetSpec(name="Class", task="classification", labels=["good", "bad"]),
        features=[FeatureSpec(name="x", type="numeric")],
    )
    scores = held_out_scores(spec, logits, logits, targets, targets)
    assert scores.candidate.value("test_balanced_accuracy") < 0.52 < 0.7 < scores.candidate.value("test_roc_auc")
    judged = GateEvidence(scores, compression(), GOOD_PARITY, GOOD_SERVING)
    assert decide_promotion(judged, None, GateConfig()).promote
    assert failed(decide_promotion(judged, None, GateConfig(baseline_metric="balanced_accuracy"))) == [
        "test_balanced_accuracy_vs_trivial"
    ]


def breast_cancer_with_a_rare_class(share: float = 0.03) -> tuple[np.ndarray, ...]:
    """scikit-learn's breast_cancer with malignant rows cut to `share` of the table, split in halves stratified:
    (train inputs, test inputs, train targets, test targets), targets 1 = malignant (the minority)."""
    table = load_breast_cancer()
    benign, malignant = np.flatnonzero(table.target == 1), np.flatnonzero(table.target == 0)
    rows = np.concatenate([benign, malignant[: round(len(benign) * share / (1 - share))]])
    targets = (table.target[rows] == 0).astype(np.int64)
    return tuple(train_test_split(table.data[rows], targets, test_size=0.5, stratify=targets, random_state=0))


def test_the_default_gate_refuses_the_majority_class_on_a_3_percent_minority_and_passes_a_model_that_separates():
    x_train, x_test, y_train, y_test = breast_cancer_with_a_rare_class()
    spec = DatasetSpec(
        target=TargetSpec(name="diagnosis", task="classification", labels=["benign", "malignant"]),
        features=[FeatureSpec(name=f"x{i}", type="numeric") for i in range(x_train.shape[1])],
    )

    def judged(model) -> GateEvidence:
        logits = np.log(np.clip(model.fit(x_train, y_train).predict_proba(x_test), 1e-12, None))
        scores = held_out_scores(spec, logits, logits, y_test, y_train)
        return GateEvidence(scores, compression(), GOOD_PARITY, GOOD_SERVING)

    majority = judged(DummyClassifier(strategy="prior"))
    assert majority.scores.candidate.value("test_accuracy") >= 0.97  # what accuracy alone would have trusted
    decision = decide_promotion(majority, None, GateConfig())
    assert not decision.promote and failed(decision) == ["test_roc_auc_vs_trivial"]  # two classes: ROC AUC
    line = next(c for c in decision.checks if c.name == "test_roc_auc_vs_trivial").line()
    assert "ROC AUC 0.5000 vs majority class 'benign' 0.5000 on the same rows: must beat it by 0.05" in line
    balanced = decide_promotion(majority, None, GateConfig(baseline_metric="balanced_accuracy"))
    assert failed(balanced) == ["test_balanced_accuracy_vs_trivial"]
    separating = judged(make_pipeline(StandardScaler(), LogisticRegression()))
    passed = decide_promotion(separating, None, GateConfig())
    assert passed.promote, failed(passed)
    candidate = separating.scores.candidate
    assert candidate.minority == "malignant" and candidate.value("test_roc_auc") > 0.9
    markdown = passed.report_markdown()
    assert f"Test metrics of the served file on {len(y_test)} rows: accuracy " in markdown
    assert "balanced accuracy" in markdown and "ROC AUC" in markdown and "(minority class 'malignant')" in markdown
    assert "Trivial baseline (majority class 'benign'): accuracy 0.9" in markdown


def test_regression_must_beat_the_mean_prediction_on_rmse():
    assert decide(candidate=regression(rmse=72.0)).promote  # 80 * 0.9 = 72, inclusive
    assert failed(decide(candidate=regression(rmse=75.0))) == ["test_rmse_vs_trivial"]


def test_first_run_policy_never_promote_keeps_the_alias_even_when_checks_pass():
    decision = decide(config=GateConfig(first_run_policy="never_promote"))
    assert not decision.promote and failed(decision) == []
    assert "never_promote" in decision.reason


@pytest.mark.parametrize(
    "candidate, config, failing",
    [
        (classification(accuracy=0.94), GateConfig(min_test_accuracy=0.95), "test_accuracy"),
        (classification(f1=0.94), GateConfig(min_test_macro_f1=0.95), "test_macro_f1"),
        (classification(worst_recall=0.89), GateConfig(min_class_recall=0.9), "test_min_class_recall"),
        (regression(r2=0.4), GateConfig(min_test_r2=0.45), "test_r2"),
        (regression(rmse=50.0), GateConfig(max_test_rmse=45.0), "test_rmse"),
    ],
)
def test_configured_absolute_thresholds_refuse_and_name_the_metric_and_the_setting(candidate, config, failing):
    decision = decide(candidate=candidate, config=config, trivial=None)
    assert failed(decision) == [failing]
    assert next(c for c in decision.checks if c.name == failing).source.startswith("gate.")


def test_absolute_thresholds_of_the_other_task_are_ignored():
    assert decide(candidate=regression(), config=GateConfig(min_test_accuracy=0.99)).promote


@pytest.mark.parametrize(
    "parity, failing",
    [
        (ParityReport(rows=360, max_abs_diff=3e-4, agreement=1.0), "parity_max_abs_diff"),
        (ParityReport(rows=360, max_abs_diff=5e-6, agreement=359 / 360), "parity_agreement"),
    ],
)
def test_failed_parity_blocks_promotion(parity, failing):
    assert failed(decide(parity=parity)) == [failing]


def test_compression_is_judged_on_the_test_rows_and_can_fail():
    decision = decide(candidate=classification(accuracy=0.97), fp32=classification(accuracy=0.99))
    assert failed(decision) == ["compression_accuracy_loss_points"]


def test_on_a_small_test_split_one_flipped_row_is_within_the_compression_budget_and_two_are_not():
    fp32 = ModelMetrics("classification", classification(accuracy=1.0).values, rows=80)
    one_row = ModelMetrics("classification", classification(accuracy=79 / 80).values, rows=80)
    two_rows = ModelMetrics("classification", classification(accuracy=78 / 80).values, rows=80)
    passed = decide(candidate=one_row, fp32=fp32)
    assert passed.promote, failed(passed)
    check = next(c for c in passed.checks if c.name == "compression_accuracy_loss_points")
    assert check.threshold == 1.25 and "one of 80 test rows" in check.source
    assert failed(decide(candidate=two_rows, fp32=fp32)) == ["compression_accuracy_loss_points"]


def test_oversized_model_is_refused():
    assert failed(decide(size=20_000_000)) == ["model_size_bytes"]


@pytest.mark.parametrize(
    "serving, failing",
    [
        (
            ServingCheck(False, 0, 0, 0, 0, 0, 0, "exited"),
            ["serving_ready", "serving_known_batch_agreement", "serving_errors", "serving_p99_latency_ms"],
        ),
        (ServingCheck(True, 2.0, 0.98, 200, 0, 3.0, 9.0, ""), ["serving_known_batch_agreement"]),
        (ServingCheck(True, 2.0, 1.0, 200, 3, 3.0, 9.0, ""), ["serving_errors"]),
        (ServingCheck(True, 2.0, 1.0, 200, 0, 30.0, 250.0, ""), ["serving_p99_latency_ms"]),
    ],
)
def test_serving_check_failures_block_promotion(serving, failing):
    assert failed(decide(serving=serving)) == failing


def test_falling_behind_production_beyond_tolerance_is_refused():
    decision = decide(
        candidate=classification(accuracy=0.980), production=Baseline("production v4", classification(0.990))
    )
    assert failed(decision) == ["test_accuracy_vs_production_v4"]
    assert decision.policy == "compared with production v4"


def test_within_tolerance_is_promoted_and_the_boundary_is_inclusive():
    assert decide(
        candidate=classification(accuracy=0.985), production=Baseline("production v4", classification(0.990))
    ).promote


def test_regression_defaults_to_an_r2_change_threshold():
    decision = decide(candidate=regression(r2=0.45), production=Baseline("production v2", regression(r2=0.5)))
    assert failed(decision) == ["test_r2_vs_production_v2"]


def test_relative_and_lower_is_better_change_thresholds():
    rules = [
        ChangeThreshold(metric="test_macro_f1", min_absolute_change=None, min_relative_change=0.0),
        ChangeThreshold(metric="test_accuracy", greater_is_better=False, min_absolute_change=0.0),
    ]
    decision = decide(
        candidate=classification(accuracy=0.97, f1=0.97),
        production=Baseline("production v2", classification(accuracy=0.98, f1=0.98)),
        config=GateConfig(change_thresholds=rules),
    )
    by_name = {c.name: c for c in decision.checks}
    assert not by_name["test_macro_f1_relative_change"].passed
    assert by_name["test_accuracy_vs_production_v2"].comparison == "<="
    assert by_name["test_accuracy_vs_production_v2"].passed  # lower accuracy "wins" under lower-is-better


def test_rmse_change_threshold_is_lower_is_better_by_itself():
    rules = [ChangeThreshold(metric="test_rmse", min_absolute_change=0.0)]
    decision = decide(
        candidate=regression(rmse=41.0),
        production=Baseline("production v2", regression(rmse=40.0)),
        config=GateConfig(change_thresholds=rules),
    )
    assert failed(decision) == ["test_rmse_vs_production_v2"]


def test_rejection_by_a_person_is_recorded_like_a_failed_gate():
    decision = decide(approval=Approval(False, "ana", "wait for the data fix"))
    assert not decision.promote
    assert decision.reason == "rejected by ana: wait for the data fix"
    assert "Human review: rejected by ana" in decision.report_markdown()


def test_report_lists_every_check_with_value_threshold_verdict_and_origin(tmp_path):
    candidate = classification(accuracy=0.43, balanced=0.38)
    decision = decide(candidate=candidate, production=Baseline("production v2", classification()))
    markdown = decision.report_markdown()
    assert markdown.startswith("**Gate failed**")
    assert markdown.count("\n| ") == len(decision.checks) + 1
    assert "| test_balanced_accuracy_vs_trivial | 0.38 | >= 0.4 | **FAIL** | balanced accuracy 0.3800 vs" in markdown
    text = decision.write_json(tmp_path / "gate.json").read_text()
    assert '"verdict": "failed"' in text and '"promote": false' in text


def test_a_bento_that_never_started_has_its_other_checks_reported_as_not_run_and_failed():
    decision = decide(serving=ServingCheck(False, 0, 0, 0, 0, 0, 0, "bento server exited with code 1"))
    by_name = {c.name: c for c in decision.checks}
    assert not decision.promote
    for name in ("serving_errors", "serving_p99_latency_ms"):
        assert by_name[name].verdict == "NOT RUN (required): FAIL" and not by_name[name].ran
        assert "never answered /readyz: bento server exited with code 1" in by_name[name].source
    lines = "\n".join(c.line() for c in decision.checks)
    assert "PASS  serving_errors" not in lines and "NOT RUN (required): FAIL  serving_errors: -" in lines
    assert "| serving_errors | - | <= 0 | **NOT RUN (required)** |" in decision.report_markdown()


def test_switching_the_serving_check_off_shows_in_the_report_without_failing_the_gate():
    decision = decide(serving=None)
    assert decision.promote
    serving = [c for c in decision.checks if c.name.startswith("serving_")]
    assert len(serving) == 4 and all(c.verdict == "NOT RUN" and not c.ran for c in serving)
    assert (
        "| serving_p99_latency_ms | - | <= 100 | not run | gate.serving.enabled is false" in decision.report_markdown()
    )


def test_a_required_approval_nobody_gave_refuses_promotion_under_the_lock():
    # The approval preview refused (production was better), then production was rolled back to a worse
    # version: the locked decision passes every other check and must still not promote without a person's yes.
    config = GateConfig(require_approval=True)
    decision = decide(config=config, production=Baseline("production v1", classification(accuracy=0.90)))
    assert not decision.promote and failed(decision) == ["human_approval"]
    check = next(c for c in decision.checks if c.name == "human_approval")
    assert check.verdict == "NOT RUN (required): FAIL" and "nobody approved" in check.source
    approved = decide(config=config, approval=Approval(True, "ana", "looks right"))
    assert approved.promote and "approved by ana" in next(
        c.source for c in approved.checks if c.name == "human_approval"
    )
    rejected = decide(config=config, approval=Approval(False, "ana", "not yet"))
    assert not rejected.promote and rejected.reason == "rejected by ana: not yet"


def test_the_gate_report_carries_the_data_verdict():
    data = DataVerdict(
        source="data/loans.csv",
        status="passed with warnings",
        expectations=41,
        critical_failures=0,
        warning_failures=2,
        drift_status="warning",
        drift_note="vs v3",
        reference_version="3",
        max_feature_psi=0.31,
        label_psi=0.02,
        feature_block_psi=0.5,
        label_block_psi=0.5,
    )
    scores = evidence().scores
    decision = decide_promotion(
        GateEvidence(scores, compression(), GOOD_PARITY, GOOD_SERVING, data), None, GateConfig()
    )
    by_name = {c.name: c for c in decision.checks}
    assert decision.promote
    assert by_name["data_critical_failures"].passed and by_name["data_drift_max_feature_psi"].value == 0.31
    markdown = decision.report_markdown()
    assert (
        "Data: passed with warnings: 41 expectations on data/loans.csv, 0 critical and 2 warning failures" in markdown
    )
    assert "| data_drift_label_psi | 0.02 | <= 0.5 | pass | drift.label_block_psi, vs production v3" in markdown
    first_run = DataVerdict(
        **{
            **data.__dict__,
            "drift_status": "skipped",
            "drift_note": "no production version yet",
            "reference_version": None,
            "max_feature_psi": None,
            "label_psi": None,
        }
    )
    skipped = decide_promotion(
        GateEvidence(scores, compression(), GOOD_PARITY, GOOD_SERVING, first_run), None, GateConfig()
    )
    assert skipped.promote
    assert {c.name: c.verdict for c in skipped.checks}["data_drift_label_psi"] == "NOT RUN"
