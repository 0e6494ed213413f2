"""The task's metrics, from model outputs: one definition for evaluation, compression, the gate and baselines.

Beside accuracy, classification gets balanced accuracy, ROC AUC, PR AUC and the minority class's F1 (the majority
model reaches 0.97 accuracy on a 3 % minority); a metric these rows cannot define is left out, never 0. Torch-free.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    recall_score,
    roc_auc_score,
)

from tasks.core.spec import DatasetSpec

MAIN_METRIC = {"classification": "test_accuracy", "regression": "test_r2"}
# What a person reads for each metric name (the gate report and `greenlight show`).
METRIC_TITLES = {
    "test_accuracy": "accuracy",
    "test_balanced_accuracy": "balanced accuracy",
    "test_roc_auc": "ROC AUC",
    "test_pr_auc": "PR AUC",
    "test_minority_f1": "minority F1",
    "test_macro_f1": "macro F1",
    "test_min_class_recall": "worst class recall",
    "test_r2": "R²",
    "test_rmse": "RMSE",
    "test_mae": "MAE",
}
# The metrics a report leads with, in this order.
HEADLINE = {
    "classification": ("test_accuracy", "test_balanced_accuracy", "test_roc_auc", "test_pr_auc", "test_minority_f1"),
    "regression": ("test_r2", "test_rmse", "test_mae"),
}


@dataclass(frozen=True)
class ModelMetrics:
    """A model's metrics on a set of labelled rows: test_accuracy, test_balanced_accuracy, test_macro_f1,
    test_min_class_recall, per-class recall, and where these rows define them test_minority_f1, test_roc_auc and
    test_pr_auc (binary: of the minority class; multiclass: one-vs-rest macro); or test_rmse, test_mae, test_r2."""

    task: str
    values: dict[str, float]
    rows: int = 0  # how many labelled rows were scored (0: unknown)
    minority: str = ""  # classification: the minority class's label, as the spec writes it

    @property
    def main(self) -> str:
        return MAIN_METRIC[self.task]

    def value(self, metric: str) -> float:
        if metric not in self.values:
            raise KeyError(f"metric {metric} is not defined for {self.task} (have {sorted(self.values)})")
        return self.values[metric]

    def summary(self, minority: bool = True) -> str:
        """The headline metrics in words: "accuracy 0.9412, balanced accuracy 0.8127, ... (minority class 'yes')"."""
        shown = ", ".join(
            f"{METRIC_TITLES[name]} {self.values[name]:.4f}" for name in HEADLINE[self.task] if name in self
        )
        return f"{shown} (minority class {self.minority!r})" if self.minority and minority else shown

    def __contains__(self, metric: str) -> bool:
        return metric in self.values


def main_metric(spec: DatasetSpec, outputs: np.ndarray, targets: np.ndarray) -> float:
    """The task's main metric alone (accuracy, or R^2), as score_outputs computes it: what a loop that scores
    every epoch needs, without the curves (ROC and PR AUC over 10 classes cost ~0.3 s on 8,000 rows)."""
    if spec.task == "regression":
        return float(r2_score(targets, np.asarray(outputs, dtype=np.float64).reshape(-1)))
    return float(np.mean(np.asarray(outputs).argmax(axis=1) == targets))


def minority_class(targets: np.ndarray, n_labels: int) -> int:
    """The least frequent class among those present in the targets (the first of equals)."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=n_labels).astype(float)
    counts[counts == 0] = np.inf
    return int(counts.argmin())


def score_outputs(
    spec: DatasetSpec, outputs: np.ndarray, targets: np.ndarray, train_targets: np.ndarray | None = None
) -> ModelMetrics:
    """Metrics of model outputs against targets, by the spec's task. train_targets (classification): the
    training split's labels, whose least frequent class is the minority; without them, these rows' is."""
    if spec.task == "regression":
        predicted = np.asarray(outputs, dtype=np.float64).reshape(-1)
        values = {
            "test_rmse": float(np.sqrt(mean_squared_error(targets, predicted))),
            "test_mae": float(mean_absolute_error(targets, predicted)),
            "test_r2": float(r2_score(targets, predicted)),
        }
        return ModelMetrics("regression", values, len(targets))
    logits = np.asarray(outputs, dtype=np.float64)
    labels = score_labels(spec, logits.argmax(axis=1), targets, train_targets)
    minority = minority_class(targets if train_targets is None else train_targets, len(spec.label_texts()))
    values = labels.values | ranking_metrics(softmax(logits), np.asarray(targets), minority)
    return ModelMetrics("classification", values, labels.rows, labels.minority)


def score_labels(
    spec: DatasetSpec, predicted: np.ndarray, targets: np.ndarray, train_targets: np.ndarray | None = None
) -> ModelMetrics:
    """Accuracy, balanced accuracy, macro F1, per-class recall and the minority class's F1 of predicted labels."""
    texts = spec.label_texts()
    indices = list(range(len(texts)))
    recall = recall_score(targets, predicted, labels=indices, average=None, zero_division=0)
    present = np.isin(indices, targets)  # a class absent from these rows has no recall to judge
    minority = minority_class(targets if train_targets is None else train_targets, len(texts))
    values = {
        "test_accuracy": float(np.mean(predicted == targets)),
        # Mean recall over the classes present (sklearn's balanced_accuracy_score): 1 / n_classes for a model
        # that always answers one class, however rare the others are.
        "test_balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "test_macro_f1": float(f1_score(targets, predicted, labels=indices, average="macro", zero_division=0)),
        "test_min_class_recall": float(recall[present].min()) if present.any() else 0.0,
    }
    if present[minority]:  # the minority's F1 needs some of its rows here
        f1 = f1_score(targets, predicted, labels=[minority], average=None, zero_division=0)
        values["test_minority_f1"] = float(f1[0])
    values |= {f"test_recall.{text}": float(r) for text, r in zip(texts, recall, strict=True)}
    return ModelMetrics("classification", values, len(targets), texts[minority])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of logits, in float64 (rows sum to 1, as roc_auc_score checks)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def ranking_metrics(probabilities: np.ndarray, targets: np.ndarray, minority: int) -> dict[str, float]:
    """ROC AUC and PR AUC (average precision): binary, of the minority class; multiclass, one-vs-rest macro.
    Both need every class among the targets (an absent class has no curve) and finite outputs, else none."""
    n_labels = probabilities.shape[1]
    if not np.isin(range(n_labels), targets).all() or not np.isfinite(probabilities).all():
        return {}
    if n_labels == 2:
        positive, score = targets == minority, probabilities[:, minority]
        return {
            "test_roc_auc": float(roc_auc_score(positive, score)),
            "test_pr_auc": float(average_precision_score(positive, score)),
        }
    labels = list(range(n_labels))
    precision = [average_precision_score(targets == k, probabilities[:, k]) for k in labels]
    return {
        "test_roc_auc": float(roc_auc_score(targets, probabilities, multi_class="ovr", average="macro", labels=labels)),
        "test_pr_auc": float(np.mean(precision)),
    }


def baseline_outputs(spec: DatasetSpec, train_targets: np.ndarray, rows: int) -> tuple[np.ndarray, str]:
    """The trivial model's outputs for `rows` rows, learned from the training targets, and what it is."""
    if spec.task == "regression":
        mean = float(np.mean(train_targets))
        return np.full(rows, mean), f"mean prediction {mean:.4g}"
    counts = np.bincount(train_targets, minlength=len(spec.label_texts()))
    majority = int(counts.argmax())
    logits = np.zeros((rows, len(counts)))
    logits[:, majority] = 1.0
    return logits, f"majority class {spec.target.labels[majority]!r}"
