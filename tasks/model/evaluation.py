"""Evaluation stage: the fp32 model's test metrics (tasks.model.metrics, the gate's own definitions), next
to the trivial baseline's, with the plots a reviewer reads: a confusion matrix in the user's labels or
predicted-vs-actual and residuals, and the loss curve."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import confusion_matrix

from tasks.core.plotting import one_plot_at_a_time
from tasks.core.spec import DatasetSpec
from tasks.data.split import DataSplits
from tasks.model.loop import EpochMetrics
from tasks.model.metrics import ModelMetrics, baseline_outputs, score_outputs
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.training import TrainedModel


@dataclass(frozen=True)
class EvaluationReport:
    """Test-set metrics of the fp32 model, the trivial baseline's on the same rows, and the plots."""

    scores: ModelMetrics
    baseline: ModelMetrics
    baseline_name: str  # "majority class 'Adelie'", "mean prediction 152.1"
    outcome_png: Path  # confusion matrix (classification) or predicted vs actual + residuals (regression)
    loss_curve_png: Path

    def metrics(self) -> dict[str, float]:
        """Flat metric names as logged to MLflow (test_accuracy, test_balanced_accuracy, test_roc_auc, test_pr_auc,
        test_minority_f1, test_recall.<label>, ..., or test_r2, ...); a metric the test rows cannot define is absent."""
        return dict(self.scores.values)

    def table_markdown(self) -> str:
        main = self.scores.main
        head = (
            f"**{main} {self.scores.value(main):.4f}** (trivial baseline, {self.baseline_name}: "
            f"{self.baseline.value(main):.4f})\n\n{self.scores.summary()}\n\n"
        )
        rows = [
            f"| {name} | {value:.4f} | {self.baseline.values.get(name, float('nan')):.4f} |"
            for name, value in self.scores.values.items()
        ]
        return head + "| metric | model | baseline |\n|---|---|---|\n" + "\n".join(rows)


def pyplot():
    """matplotlib's pyplot on the Agg backend: servers and workers have no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@one_plot_at_a_time
def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path) -> Path:
    """Confusion-matrix heat map in the user's label values, with counts in each cell."""
    plt = pyplot()
    side = min(4 + 0.45 * len(labels), 16)
    fig, ax = plt.subplots(figsize=(side + 0.5, side))
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    ticks = range(len(labels))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title="Test confusion matrix")
    ax.set_xticklabels(labels, rotation=45 if max(map(len, labels)) > 3 else 0, ha="right")
    ax.set_yticklabels(labels)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@one_plot_at_a_time
def plot_predictions(predicted: np.ndarray, actual: np.ndarray, target: str, path: Path) -> Path:
    """Predicted against actual (on the diagonal when right) and residuals against predicted (flat when unbiased)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    left.scatter(actual, predicted, s=12, alpha=0.7)
    left.plot([low, high], [low, high], color="grey", linestyle="--", label="perfect")
    left.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title="Test predictions")
    left.legend()
    right.scatter(predicted, actual - predicted, s=12, alpha=0.7)
    right.axhline(0.0, color="grey", linestyle="--")
    right.set(xlabel=f"predicted {target}", ylabel="actual - predicted", title="Residuals")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@one_plot_at_a_time
def plot_loss_curve(trained: TrainedModel, loss_name: str, path: Path) -> Path:
    """Train and validation loss per epoch, with the kept checkpoint marked."""
    plt = pyplot()
    history: tuple[EpochMetrics, ...] = trained.history
    epochs = [m.epoch for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [m.train_loss for m in history], label="train loss")
    ax.plot(epochs, [m.val_loss for m in history], label="validation loss")
    ax.axvline(trained.best_epoch, color="grey", linestyle="--", label=f"best checkpoint (epoch {trained.best_epoch})")
    ax.set(xlabel="epoch", ylabel=loss_name, yscale="log", title=f"Loss curve ({trained.family})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_outcome(spec: DatasetSpec, outputs: np.ndarray, targets: np.ndarray, out_dir: Path) -> Path:
    if spec.task == "regression":
        return plot_predictions(outputs.reshape(-1), targets, spec.target.name, out_dir / "predicted_vs_actual.png")
    labels = list(range(len(spec.label_texts())))
    matrix = confusion_matrix(targets, outputs.argmax(axis=1), labels=labels)
    return plot_confusion(matrix, spec.label_texts(), out_dir / "confusion_matrix.png")


def evaluate_checkpoint(trained: TrainedModel, splits: DataSplits, out_dir: Path) -> EvaluationReport:
    """Score the best checkpoint on the held-out test rows beside the trivial baseline; plots go to out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec, targets, train_targets = splits.spec, splits.targets("test"), splits.targets("train")
    outputs = predict_outputs(load_checkpoint(trained.checkpoint_path), splits.feeds("test"))
    trivial, trivial_name = baseline_outputs(spec, train_targets, len(targets))
    loss_name = "cross-entropy" if spec.task == "classification" else "MSE of the standardised target"
    report = EvaluationReport(
        scores=score_outputs(spec, outputs, targets, train_targets),
        baseline=score_outputs(spec, trivial, targets, train_targets),
        baseline_name=trivial_name,
        outcome_png=plot_outcome(spec, outputs, targets, out_dir),
        loss_curve_png=plot_loss_curve(trained, loss_name, out_dir / "loss_curve.png"),
    )
    return report


@task(name="evaluate_model", cache_policy=NO_CACHE)
def evaluate_model(trained: TrainedModel, splits: DataSplits, out_dir: Path) -> EvaluationReport:
    """The test rows' metrics beside the trivial baseline's, and the plots (evaluate_checkpoint, as a task)."""
    return evaluate_checkpoint(trained, splits, out_dir)
