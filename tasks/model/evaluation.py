"""Evaluation stage: held-out test metrics, confusion matrix and loss curve."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from tasks.core.schema import LABELS
from tasks.data.files import DataSplits
from tasks.model.training import EpochMetrics, TrainedModel, load_checkpoint, predict_logits


@dataclass(frozen=True)
class EvaluationReport:
    """Test-set metrics of the fp32 model and the plots that show them."""

    accuracy: float
    macro_f1: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    confusion: tuple[tuple[int, ...], ...]
    confusion_png: Path
    loss_curve_png: Path

    def metrics(self) -> dict[str, float]:
        """Flat metric names as logged to MLflow."""
        flat = {"test_accuracy": self.accuracy, "test_macro_f1": self.macro_f1}
        for label, (p, r) in enumerate(zip(self.precision, self.recall, strict=True)):
            flat[f"test_precision_class_{label}"] = p
            flat[f"test_recall_class_{label}"] = r
        return flat

    def table_markdown(self) -> str:
        rows = [f"| {k} | {p:.4f} | {r:.4f} |" for k, p, r in zip(LABELS, self.precision, self.recall, strict=True)]
        head = f"**test accuracy {self.accuracy:.4f}, macro F1 {self.macro_f1:.4f}**\n\n"
        return head + "| class | precision | recall |\n|---|---|---|\n" + "\n".join(rows)


def plot_confusion(matrix: np.ndarray, path: Path) -> Path:
    """Confusion-matrix heat map with counts in each cell."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    ax.set(xticks=LABELS, yticks=LABELS, xlabel="predicted", ylabel="true", title="Test confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_curve(history: tuple[EpochMetrics, ...], best_epoch: int, path: Path) -> Path:
    """Train and validation loss per epoch, with the kept checkpoint marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [m.epoch for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [m.train_loss for m in history], label="train loss")
    ax.plot(epochs, [m.val_loss for m in history], label="validation loss")
    ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best checkpoint (epoch {best_epoch})")
    ax.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="Loss curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@task(name="evaluate_model", cache_policy=NO_CACHE)
def evaluate_model(trained: TrainedModel, splits: DataSplits, out_dir: Path) -> EvaluationReport:
    """Score the best checkpoint on the held-out test rows; plots go to out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    predicted = predict_logits(load_checkpoint(trained.checkpoint_path), splits.x_test).argmax(axis=1)
    precision, recall, _, _ = precision_recall_fscore_support(
        splits.y_test, predicted, labels=list(LABELS), zero_division=0
    )
    matrix = confusion_matrix(splits.y_test, predicted, labels=list(LABELS))
    report = EvaluationReport(
        accuracy=float(accuracy_score(splits.y_test, predicted)),
        macro_f1=float(f1_score(splits.y_test, predicted, average="macro", labels=list(LABELS), zero_division=0)),
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
        confusion_png=plot_confusion(matrix, out_dir / "confusion_matrix.png"),
        loss_curve_png=plot_loss_curve(trained.history, trained.best_epoch, out_dir / "loss_curve.png"),
    )
    create_markdown_artifact(key="test-metrics", markdown=report.table_markdown(), description="Test-set metrics")
    return report
