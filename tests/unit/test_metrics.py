"""The task's metrics on imbalanced classes: balanced accuracy, ROC AUC, PR AUC and the minority class's F1,
left out (never 0 or NaN) where the scored rows cannot define them."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

from tasks.core.spec import DatasetSpec, FeatureSpec, TargetSpec
from tasks.model.metrics import baseline_outputs, minority_class, score_outputs, softmax

RANKING = ("test_roc_auc", "test_pr_auc")


def spec(labels: list[str]) -> DatasetSpec:
    return DatasetSpec(
        target=TargetSpec(name="churn", task="classification", labels=labels),
        features=[FeatureSpec(name="tenure", type="numeric")],
    )


BINARY = spec(["stays", "leaves"])
THREE = spec(["a", "b", "c"])


def imbalanced(rows: int = 400, minority_share: float = 0.03, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Targets with a rare class 1 and logits of a noisy model that ranks it mostly above the rest."""
    rng = np.random.default_rng(seed)
    targets = (rng.random(rows) < minority_share).astype(np.int64)
    margin = np.where(targets == 1, 1.5, -1.5) + rng.normal(0.0, 1.5, rows)
    return targets, np.stack([np.zeros(rows), margin], axis=1)


def test_the_majority_class_scores_its_share_on_accuracy_and_nothing_on_the_imbalance_metrics():
    targets, _ = imbalanced()
    trivial, name = baseline_outputs(BINARY, targets, len(targets))
    metrics = score_outputs(BINARY, trivial, targets, targets)
    assert name == "majority class 'stays'" and metrics.minority == "leaves"
    assert metrics.value("test_accuracy") == pytest.approx(1 - targets.mean())  # ~0.97: looks good, is useless
    assert metrics.value("test_balanced_accuracy") == 0.5
    assert metrics.value("test_roc_auc") == 0.5
    assert metrics.value("test_pr_auc") == pytest.approx(targets.mean())  # average precision of a constant score
    assert metrics.value("test_minority_f1") == 0.0


def test_binary_metrics_are_sklearns_on_the_minority_class_and_a_logit_offset_moves_no_ranking():
    targets, logits = imbalanced()
    metrics = score_outputs(BINARY, logits, targets, targets)
    probability = softmax(logits)[:, 1]
    predicted = logits.argmax(axis=1)
    assert metrics.value("test_balanced_accuracy") == pytest.approx(balanced_accuracy_score(targets, predicted))
    assert metrics.value("test_roc_auc") == pytest.approx(roc_auc_score(targets, probability))
    assert metrics.value("test_pr_auc") == pytest.approx(average_precision_score(targets, probability))
    assert metrics.value("test_minority_f1") == pytest.approx(f1_score(targets, predicted))
    shifted = score_outputs(BINARY, logits - np.array([0.0, -2.0]), targets, targets)  # a lower threshold
    assert shifted.value("test_roc_auc") == pytest.approx(metrics.value("test_roc_auc"))
    assert shifted.value("test_minority_f1") != metrics.value("test_minority_f1")


def test_when_the_minority_is_class_0_its_curves_are_computed_for_class_0():
    targets, logits = imbalanced()
    flipped_targets, flipped_logits = 1 - targets, logits[:, ::-1]
    metrics = score_outputs(BINARY, flipped_logits, flipped_targets, flipped_targets)
    assert metrics.minority == "stays"
    reference = score_outputs(BINARY, logits, targets, targets)
    for name in ("test_roc_auc", "test_pr_auc", "test_minority_f1", "test_balanced_accuracy"):
        assert metrics.value(name) == pytest.approx(reference.value(name))


def test_the_minority_is_the_training_splits_least_frequent_class_when_given():
    targets = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    assert minority_class(targets, 2) == 0
    train = np.array([0] * 10 + [1] * 2)
    assert score_outputs(BINARY, np.zeros((8, 2)), targets, train).minority == "leaves"
    assert score_outputs(BINARY, np.zeros((8, 2)), targets).minority == "stays"  # the scored rows' own
    assert minority_class(np.array([0, 0, 2, 2, 2]), 3) == 0  # a class with no rows is no minority


def test_multiclass_curves_are_one_vs_rest_macro():
    rng = np.random.default_rng(1)
    targets = rng.choice(3, 300, p=[0.8, 0.15, 0.05])
    logits = np.eye(3)[targets] * 2.0 + rng.normal(0.0, 1.0, (300, 3))
    metrics = score_outputs(THREE, logits, targets, targets)
    probabilities = softmax(logits)
    assert metrics.value("test_roc_auc") == pytest.approx(roc_auc_score(targets, probabilities, multi_class="ovr"))
    per_class = [average_precision_score(targets == k, probabilities[:, k]) for k in range(3)]
    assert metrics.value("test_pr_auc") == pytest.approx(np.mean(per_class))
    assert metrics.minority == "c"
    assert metrics.value("test_minority_f1") == pytest.approx(
        f1_score(targets, logits.argmax(axis=1), labels=[2], average=None)[0]
    )


def test_metrics_a_class_absent_from_the_rows_cannot_define_are_left_out_not_zero():
    logits = np.random.default_rng(2).normal(size=(6, 3))
    metrics = score_outputs(THREE, logits, np.array([0, 0, 1, 1, 0, 1]), np.array([0, 0, 0, 1, 1, 1, 2]))
    assert not any(name in metrics for name in RANKING)  # class c is absent: it has no curve
    assert "test_minority_f1" not in metrics  # the minority (c, by the training rows) is absent here
    assert all(math.isfinite(value) for value in metrics.values.values())
    assert "test_balanced_accuracy" in metrics and "minority F1" not in metrics.summary()
    one_class = score_outputs(BINARY, np.zeros((4, 2)), np.array([1, 1, 1, 1]), np.array([0, 0, 0, 1]))
    assert not any(name in one_class for name in RANKING)
    assert one_class.value("test_balanced_accuracy") == 0.0 and one_class.value("test_minority_f1") == 0.0


def test_diverged_outputs_define_no_curve():
    targets, logits = imbalanced(rows=50, minority_share=0.3)
    logits[3, 1] = np.nan
    assert not any(name in score_outputs(BINARY, logits, targets, targets) for name in RANKING)


def test_the_summary_names_the_headline_metrics_and_the_minority():
    targets, logits = imbalanced()
    text = score_outputs(BINARY, logits, targets, targets).summary()
    assert text.startswith("accuracy 0.") and "balanced accuracy 0." in text and "ROC AUC 0." in text
    assert "PR AUC" in text and "minority F1" in text and text.endswith("(minority class 'leaves')")


def test_greenlight_show_prints_the_imbalance_metrics_the_gate_recorded_on_a_classification_version():
    from deployments.show import render_version
    from tasks.registry.client import ModelVersionRef, VersionRecord

    targets, logits = imbalanced()
    recorded = score_outputs(BINARY, logits, targets, targets).values  # as record_decision tags them
    tags = {"task": "classification", "gate_verdict": "passed", "signature": "none"}
    tags |= {name: f"{value:.6f}" for name, value in recorded.items() if "." not in name}
    ref = ModelVersionRef("sqlite:///unused.db", "churn", "3", "run-1", tags)
    shown = render_version(VersionRecord(ref, "**Gate passed**", 0, ("production",), "FINISHED"))
    line = next(line for line in shown.splitlines() if line.startswith("test metrics  "))
    expected = f"balanced accuracy {recorded['test_balanced_accuracy']:.4f}, ROC AUC {recorded['test_roc_auc']:.4f}"
    assert line.startswith("test metrics  accuracy 0.") and expected in line
    assert "PR AUC" in line and "minority F1" in line
    older = ModelVersionRef("sqlite:///unused.db", "churn", "1", None, {"task": "classification"})
    assert "test metrics  none recorded" in render_version(VersionRecord(older, "", 0, (), "no run"))


def test_the_main_metric_alone_is_score_outputs_main_metric():
    from tasks.model.metrics import main_metric

    targets, logits = imbalanced()
    assert main_metric(BINARY, logits, targets) == score_outputs(BINARY, logits, targets).value("test_accuracy")
    regression = DatasetSpec(
        target=TargetSpec(name="charges", task="regression"), features=[FeatureSpec(name="tenure", type="numeric")]
    )
    values, predicted = np.array([1.0, 2.0, 4.0, 8.0]), np.array([1.5, 2.0, 3.0, 9.0])
    assert main_metric(regression, predicted, values) == score_outputs(regression, predicted, values).value("test_r2")
