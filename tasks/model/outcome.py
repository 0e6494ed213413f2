"""The training stage's result: the model the run goes on with, the spec and settings it trained with, its scores."""

from dataclasses import dataclass, fields
from pathlib import Path

from tasks.core.config import RunConfig
from tasks.core.records import Note, Record, RunLinks
from tasks.model.evaluation import EvaluationReport
from tasks.model.loop import epoch_curves
from tasks.model.resolve import ResolvedDataset
from tasks.model.threshold import ThresholdChoice
from tasks.model.training import TrainedModel


@dataclass(frozen=True)
class EvaluatedModel:
    """What later stages export, compress and register: a sweep's best trial or auto's choice included."""

    trained: TrainedModel
    data: ResolvedDataset  # the spec it stands for (auto's or the sweep's choice folded in)
    config: RunConfig  # the settings it trained with (a sweep's best trial's)
    evaluation: EvaluationReport
    threshold: ThresholdChoice | None  # a binary model's decision threshold; None for other tasks
    rows: dict[str, int]  # rows per split

    def record(self, links: RunLinks) -> Record:
        """Per-epoch curves, test metrics (balanced accuracy, ROC AUC, PR AUC and minority F1 among them, where the
        test rows define them) and plots, the checkpoint, and the decision threshold served."""
        trained, evaluation = self.trained, self.evaluation
        chosen, why = threshold_record(self.threshold)
        plots = [value for f in fields(evaluation) if isinstance(value := getattr(evaluation, f.name), Path)]
        return Record(
            metrics={
                **evaluation.metrics(),
                **{f"rows_{split}": float(n) for split, n in self.rows.items()},
                **chosen,
                "best_epoch": trained.best_epoch,
                "train_seconds": trained.seconds,
            },
            tags={"device": trained.device, **why},
            files={"evaluation": (*plots, trained.checkpoint_path)},
            series=epoch_curves(trained.history),
            notes=(Note("test-metrics", evaluation.table_markdown(), "Test-set metrics"),),
        )


def threshold_record(choice: ThresholdChoice | None) -> tuple[dict[str, float], dict[str, str]]:
    """A binary model's decision threshold as metrics (the threshold, the validation minority F1 at argmax and at
    the best cut) and a tag saying why it was kept or not; nothing for other tasks."""
    if choice is None or not choice.minority:
        return {}, {}
    metrics = {
        "decision_threshold": choice.threshold,
        "validation_minority_f1_at_argmax": choice.f1_at_argmax,
        "validation_minority_f1_at_best_threshold": choice.f1_at_best,
    }
    return metrics, {"decision_threshold": choice.reason[:5000]}
