"""The fit loop every training shares (a model's training, a pruned model's fine-tune, a student's distillation),
readable top to bottom: AdamW, the step halved when validation loss stalls, early stopping on validation loss, the
best weights kept. Imports no Prefect: the processes torchrun starts run it too (tasks.model.distributed), and so
do GPU machines that have torch but not the pipeline's stack.

One process by default; with a `DataParallel` each of several processes trains on its shard of every epoch
(DistributedSampler) through DistributedDataParallel, and the losses and validation outputs are gathered so
that every process takes the same early-stopping decisions.
"""

import copy
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tasks.core.config import TrainingConfig
from tasks.core.errors import GreenlightError
from tasks.core.text import TEXT_IDS, TEXT_MASK
from tasks.data.parts import DataSplits, Part
from tasks.model.metrics import MAIN_METRIC, score_outputs
from tasks.model.network import GreenlightModel, model_tensors


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_metric: float  # the task's main metric on the validation rows (accuracy, or R^2)


@dataclass(frozen=True)
class PartTensors:
    """One split part as the model's input tensors and its training targets, on the training device."""

    inputs: tuple[Tensor, ...]
    targets: Tensor
    raw_targets: np.ndarray  # label indices or values in the target's units, for the main metric
    token_inputs: tuple[int, ...] = ()  # positions of a text's ids and mask, padded to the part's longest text

    def batch(self, index: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
        """The rows of index; token inputs cut to the batch's own longest text (a batch of short texts stays cheap)."""
        inputs = [t[index] for t in self.inputs]
        if self.token_inputs:
            mask = inputs[self.token_inputs[1]]
            longest = max(int(mask.sum(dim=1).max()), 1)
            for position in self.token_inputs:
                inputs[position] = inputs[position][:, :longest]
        return tuple(inputs), self.targets[index]


def pick_device() -> torch.device:
    """CUDA when present, else CPU; there is nothing to configure."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_targets(model: GreenlightModel, raw: np.ndarray) -> Tensor:
    """Label indices as int64, or the regression target standardised with the training mean and std."""
    if model.spec.dataset.task == "classification":
        return torch.from_numpy(raw.astype(np.int64))
    return torch.from_numpy(((raw - model.target_mean) / model.target_std).astype(np.float32))


def part_tensors(model: GreenlightModel, splits: DataSplits, part: Part, raw: np.ndarray, device) -> PartTensors:
    """A part's feeds encoded by the model's own preprocessing values, moved to the device once."""
    inputs = tuple(t.to(device) for t in model_tensors(model, splits.feeds(part)))
    tokens = tuple(model.input_names.index(name) for name in (TEXT_IDS, TEXT_MASK) if name in model.input_names)
    return PartTensors(inputs, training_targets(model, raw).to(device), raw, tokens)


def compute_loss(model: GreenlightModel, output: Tensor, targets: Tensor) -> Tensor:
    if model.spec.dataset.task == "classification":
        return nn.functional.cross_entropy(output.float(), targets)
    return nn.functional.mse_loss(output.float().reshape(-1), targets)


# loss(model, output, targets, index): what a batch is trained on; index = its rows in the part (distillation
# looks up the teacher's outputs for the same rows).
BatchLoss = Callable[[GreenlightModel, Tensor, Tensor, Tensor], Tensor]


def task_loss(model: GreenlightModel, output: Tensor, targets: Tensor, index: Tensor) -> Tensor:
    return compute_loss(model, output, targets)


def run_epoch(
    model: GreenlightModel, train: PartTensors, optimizer, config: TrainingConfig, autocast, loss: BatchLoss = task_loss
) -> float:
    """One seeded, shuffled pass over the training rows; returns the mean loss."""
    model.train()
    total, rows = 0.0, len(train.targets)
    for index in torch.randperm(rows, device=train.targets.device).split(config.batch_size):
        inputs, targets = train.batch(index)
        with autocast():
            batch_loss = loss(model, model.network_output(*inputs), targets, index)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        total += batch_loss.item() * len(index)
    return total / rows


def evaluate_loss(
    model: GreenlightModel, part: PartTensors, splits: DataSplits, autocast, chunk: int = 1024
) -> tuple[float, float]:
    """Validation loss and the task's main metric (accuracy or R^2) on a part already on the device, in chunks
    (an encoder's attention over thousands of texts at once would not fit in memory)."""
    model.eval()
    rows = len(part.targets)
    with torch.inference_mode(), autocast():
        outputs = [
            model.network_output(*part.batch(torch.arange(i, min(i + chunk, rows), device=part.targets.device))[0])
            for i in range(0, rows, chunk)
        ]
        output = torch.cat(outputs).float()
    loss = compute_loss(model, output, part.targets).item()
    outputs = model.in_target_units(output).cpu().numpy()
    metrics = score_outputs(splits.spec, outputs, part.raw_targets)
    return loss, metrics.value(MAIN_METRIC[splits.spec.task])


def diverged_message(
    what: str, epoch: int, train_loss: float, val_loss: float, splits: DataSplits, config: TrainingConfig
) -> str:
    """What diverged, at which epoch, and the likely cause among the settings and the data."""
    causes = []
    if config.learning_rate >= 0.05:
        causes.append(f"training.learning_rate {config.learning_rate:g} is high for AdamW (default 0.002)")
    if config.weight_decay > 1.0:
        causes.append(f"training.weight_decay {config.weight_decay:g} is far above any useful value (default 0.0001)")
    if splits.spec.task == "regression":
        largest = float(np.nanmax(np.abs(splits.targets("train").astype(float))))
        if largest > 1e6:
            causes.append(f"the target reaches {largest:.3g}: consider predicting it in other units or its logarithm")
    cause = (
        "; ".join(causes)
        or "extreme values in the inputs or the target (see the data report), or a too-high learning rate"
    )
    return (
        f"{what} diverged at epoch {epoch}: training loss {train_loss:g}, validation loss {val_loss:g}"
        f" (no model was registered). Likely cause: {cause}."
    )


def parameter_groups(model: GreenlightModel, learning_rate: float) -> list:
    """The network's own groups when its family sets steps per part (a pretrained encoder fine-tunes at a
    fraction of the head's step), else every parameter at the run's learning rate."""
    groups = getattr(model.network, "optimizer_groups", None)
    return groups(learning_rate) if callable(groups) else list(model.parameters())


def train_targets(splits: DataSplits, config: TrainingConfig) -> np.ndarray:
    """The training targets; permuted when the config asks for a deliberately useless model (gate drills)."""
    targets = splits.targets("train")
    return np.random.default_rng(config.seed).permutation(targets) if config.shuffle_labels else targets


@dataclass(frozen=True)
class FitResult:
    """The best weights of an early-stopped fit and its epochs."""

    best_state: dict[str, Tensor]
    best_epoch: int
    history: tuple[EpochMetrics, ...]
    seconds: float


@dataclass(frozen=True)
class FitSchedule:
    """How long a fit may run and what it is called in progress bars and errors."""

    label: str  # "training tabular_mlp", "fine-tuning pruned-30", ...
    max_epochs: int
    patience: int


def fit_model(
    model: GreenlightModel,
    splits: DataSplits,
    targets: np.ndarray,
    config: TrainingConfig,
    schedule: FitSchedule,
    loss: BatchLoss = task_loss,
    train: PartTensors | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> FitResult:
    """The loop every fit shares (training, a pruned model's fine-tune, a student's distillation): AdamW, the step
    halved when validation loss stalls, early stopping on validation loss, the best weights kept. `train`: rows
    to fit instead of the training split's (a distillation's transfer set). `on_epoch`: called after each epoch
    (a sweep reports to its pruner there, and may stop the fit by raising)."""
    device = next(model.parameters()).device
    # bf16 autocast only on CUDA: on CPU it is slower than fp32 for models this small.
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    train = train or part_tensors(model, splits, "train", targets, device)
    validation = part_tensors(model, splits, "validation", splits.targets("validation"), device)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config.learning_rate), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    # Halve the step when validation loss stalls for a third of the patience: small tables keep improving
    # with a finer step long after a fixed one has started to bounce.
    patience = schedule.patience
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, patience // 3))

    started, history = time.perf_counter(), []
    best_loss, best_epoch, best_state = float("inf"), 0, None
    progress = tqdm(range(1, schedule.max_epochs + 1), desc=schedule.label, unit="epoch")
    for epoch in progress:
        train_loss = run_epoch(model, train, optimizer, config, autocast, loss)
        val_loss, val_metric = evaluate_loss(model, validation, splits, autocast)
        scheduler.step(val_loss)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise GreenlightError(diverged_message(schedule.label, epoch, train_loss, val_loss, splits, config))
        history.append(EpochMetrics(epoch, train_loss, val_loss, val_metric))
        progress.set_postfix(train_loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", val=f"{val_metric:.4f}")
        if on_epoch is not None:
            on_epoch(history[-1])
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            progress.write(f"early stop at epoch {epoch}: no lower validation loss since epoch {best_epoch}")
            break
    progress.close()
    if best_state is None:
        raise GreenlightError(
            f"{schedule.label} produced no finite validation loss in {len(history)} epochs (it diverged); "
            "lower training.learning_rate or check the target for extreme values"
        )
    return FitResult(best_state, best_epoch, tuple(history), time.perf_counter() - started)
