"""Training stage: any family on any spec.

Preprocessing is learned from the training split first (tasks.model.preprocess), then the whole model
(preprocessing + the family's network, tasks.model.network) trains on the raw training feeds in the loop of
tasks.model.loop: AdamW, the learning rate halved when validation loss stalls, early stopping on validation
loss, best checkpoint kept. Loss: cross-entropy on labels, or mean squared error on the standardised
regression target.
"""

from dataclasses import dataclass
from pathlib import Path

from prefect import task

from tasks.core.cache import stage_cache_key
from tasks.core.config import TrainingConfig
from tasks.core.spec import Spec
from tasks.data.parts import DataSplits
from tasks.model.families import get_family
from tasks.model.loop import EpochMetrics, FitSchedule, fit_model, pick_device, seed_everything, train_targets
from tasks.model.metrics import MAIN_METRIC
from tasks.model.network import GreenlightModel, save_checkpoint
from tasks.model.preprocess import fit_preprocessing


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


# Cached on the splits' content, the spec, the settings and the code (seeded: the same inputs train the same model).
@task(
    name="train_model",
    cache_key_fn=stage_cache_key("training", ignore=["work_dir"], files_of=lambda r: [r.checkpoint_path]),
    persist_result=True,
)
def train_model(splits: DataSplits, spec: Spec, config: TrainingConfig, work_dir: Path) -> TrainedModel:
    """Learn the preprocessing, train the spec's family with early stopping, keep the best checkpoint."""
    seed_everything(config.seed)
    device, family = pick_device(), get_family(spec.model.family)
    schedule = FitSchedule(
        f"training {family.name}", config.max_epochs or family.max_epochs, config.patience or family.patience
    )
    targets = train_targets(splits, config)
    model = GreenlightModel(spec, fit_preprocessing(splits.spec, splits.feeds("train"), targets)).to(device)
    fit = fit_model(model, splits, targets, config, schedule)
    checkpoint_path = save_checkpoint(model, fit.best_state, work_dir / "best.pt")
    metric_name = MAIN_METRIC[splits.spec.task].removeprefix("test_")
    return TrainedModel(
        checkpoint_path, family.name, fit.best_epoch, fit.history, device.type, fit.seconds, metric_name
    )
