"""The task's metrics, from model outputs: one definition for evaluation, compression, the gate and baselines.

Classification outputs are logits [n, n_labels] and targets label indices; regression outputs are
predictions [n] and targets numbers, both in the target's own units. Torch-free.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score, mean_absolute_error, mean_squared_error, r2_score, recall_score

from tasks.core.spec import DatasetSpec

MAIN_METRIC = {"classification": "test_accuracy", "regression": "test_r2"}


@dataclass(frozen=True)
class ModelMetrics:
    """A model's metrics on a set of labelled rows (test_accuracy, test_macro_f1, test_min_class_recall and
    per-class recall; or test_rmse, test_mae, test_r2)."""

    task: str
    values: dict[str, float]
    rows: int = 0  # how many labelled rows were scored (0: unknown)

    @property
    def main(self) -> str:
        return MAIN_METRIC[self.task]

    def value(self, metric: str) -> float:
        if metric not in self.values:
            raise KeyError(f"metric {metric} is not defined for {self.task} (have {sorted(self.values)})")
        return self.values[metric]


def score_outputs(spec: DatasetSpec, outputs: np.ndarray, targets: np.ndarray) -> ModelMetrics:
    """Metrics of model outputs against targets, by the spec's task."""
    if spec.task == "regression":
        predicted = np.asarray(outputs, dtype=np.float64).reshape(-1)
        values = {
            "test_rmse": float(np.sqrt(mean_squared_error(targets, predicted))),
            "test_mae": float(mean_absolute_error(targets, predicted)),
            "test_r2": float(r2_score(targets, predicted)),
        }
        return ModelMetrics("regression", values, len(targets))
    return score_labels(spec, np.asarray(outputs).argmax(axis=1), targets)


def score_labels(spec: DatasetSpec, predicted: np.ndarray, targets: np.ndarray) -> ModelMetrics:
    """Accuracy, macro F1 and per-class recall of predicted label indices."""
    indices = list(range(len(spec.label_texts())))
    recall = recall_score(targets, predicted, labels=indices, average=None, zero_division=0)
    present = np.isin(indices, targets)  # a class absent from these rows has no recall to judge
    values = {
        "test_accuracy": float(np.mean(predicted == targets)),
        "test_macro_f1": float(f1_score(targets, predicted, labels=indices, average="macro", zero_division=0)),
        "test_min_class_recall": float(recall[present].min()) if present.any() else 0.0,
    }
    values |= {f"test_recall.{text}": float(r) for text, r in zip(spec.label_texts(), recall, strict=True)}
    return ModelMetrics("classification", values, len(targets))


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
