"""Training stage: any family on any spec.

Preprocessing is learned from the training split first (tasks.model.preprocess), then the whole model
(tasks.model.network) trains on the raw training feeds in tasks.model.loop: cross-entropy on labels, or mean
squared error on the standardised regression target.
"""

from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tasks.core.cache import stage_cache_key
from tasks.core.config import TrainingConfig
from tasks.core.spec import Spec
from tasks.data.parts import DataSplits
from tasks.model.distributed import train_distributed
from tasks.model.families import AUTO_FAMILY, get_family
from tasks.model.loop import EpochMetrics, FitResult, pick_device, train_on_device
from tasks.model.metrics import MAIN_METRIC
from tasks.model.network import save_checkpoint


@dataclass(frozen=True)
class TrainedModel:
    """A reference to the best checkpoint and how training went."""

    checkpoint_path: Path
    family: str
    best_epoch: int
    history: tuple[EpochMetrics, ...]
    device: str
    seconds: float
    metric_name: str  # what EpochMetrics.val_metric is: "accuracy" or "r2"
    # The same model trained on the training rows alone, where this one also learned the validation rows (a refit):
    # a decision threshold is tuned on its validation outputs (tasks.model.threshold), never on rows seen in training.
    held_out_checkpoint: Path | None = None


# Cached on the splits' content, the spec, the settings and the code (seeded: the same inputs train the same model).
@task(
    name="train_model",
    cache_key_fn=stage_cache_key("training", ignore=["work_dir"], files_of=lambda r: [r.checkpoint_path]),
    persist_result=True,
)
def train_model(splits: DataSplits, spec: Spec, config: TrainingConfig, work_dir: Path) -> TrainedModel:
    """Learn the preprocessing, train the spec's family with early stopping, keep the best checkpoint; in
    torchrun's processes when training.distributed asks for several. A spec with model.family auto trains its
    candidate families and returns the one served (tasks.model.selection; the pipeline records the choice too)."""
    if spec.model.family == AUTO_FAMILY:
        from tasks.model.selection import select_family  # it trains each candidate through this task

        return select_family.fn(splits=splits, spec=spec, config=config, work_dir=work_dir / "selection").trained
    if config.distributed.nproc_per_node > 1:
        done = train_distributed(splits, spec, config, work_dir)
        return trained_model(done.checkpoint_path, spec, splits, done.fit, f"{done.device} x{done.processes}")
    device = pick_device()
    model, fit = train_on_device(splits, spec, config, device)
    checkpoint_path = save_checkpoint(model, fit.best_state, work_dir / "best.pt")
    return trained_model(checkpoint_path, spec, splits, fit, device.type)


def trained_model(checkpoint_path: Path, spec: Spec, splits: DataSplits, fit: FitResult, device: str) -> TrainedModel:
    metric_name = MAIN_METRIC[splits.spec.task].removeprefix("test_")
    family = get_family(spec.model.family).name
    return TrainedModel(checkpoint_path, family, fit.best_epoch, fit.history, device, fit.seconds, metric_name)
