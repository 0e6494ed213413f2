"""The fit loop every training shares (a model's training, a pruned model's fine-tune, a student's distillation),
readable top to bottom: AdamW, the step halved when validation loss stalls, early stopping, the best weights kept.

Imports no Prefect: torchrun's processes (tasks.model.distributed) and GPU machines without the pipeline's stack
run it too. With a `DataParallel` each process trains its shard and all take the same early-stopping decisions.
"""

import copy
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from tasks.core.config import TrainingConfig
from tasks.core.errors import GreenlightError
from tasks.core.spec import Spec
from tasks.core.text import TEXT_IDS, TEXT_MASK
from tasks.data.parts import DataSplits, Part
from tasks.model.families import get_family
from tasks.model.families.contract import TrainingRows
from tasks.model.metrics import MAIN_METRIC, score_outputs
from tasks.model.network import GreenlightModel, model_tensors
from tasks.model.preprocess import fit_preprocessing


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_metric: float  # the task's main metric on the validation rows (accuracy, or R^2)


def epoch_curves(history: tuple[EpochMetrics, ...]) -> tuple[tuple[str, float, int], ...]:
    """(metric, value, epoch) points of a fit's history: train_loss, val_loss, val_metric per epoch."""
    return tuple(
        (name, float(value), m.epoch)
        for m in history
        for name, value in asdict(m).items()
        if name != "epoch" and isinstance(value, int | float)
    )


@dataclass(frozen=True)
class PartTensors:
    """One split part as the model's input tensors and its training targets, on the training device."""

    inputs: tuple[Tensor, ...]
    targets: Tensor
    raw_targets: np.ndarray  # label indices or values in the target's units, for the main metric
    token_inputs: tuple[int, ...] = ()  # positions of a text's ids and mask, padded to the part's longest text
    # Where batches go when the part itself stays in host memory (too large for the GPU); None: already there.
    batch_device: torch.device | None = None

    def batch(self, index: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
        """The rows of index; token inputs cut to the batch's own longest text (a batch of short texts stays cheap)."""
        index = index if self.batch_device is None else index.cpu()
        inputs = [t[index] for t in self.inputs]
        if self.token_inputs:
            mask = inputs[self.token_inputs[1]]
            longest = max(int(mask.sum(dim=1).max()), 1)
            for position in self.token_inputs:
                inputs[position] = inputs[position][:, :longest]
        targets = self.targets[index]
        if self.batch_device is not None:  # pinned, so the copy runs while the GPU still works on the last batch
            inputs = [t.pin_memory().to(self.batch_device, non_blocking=True) for t in inputs]
            targets = targets.pin_memory().to(self.batch_device, non_blocking=True)
        return tuple(inputs), targets


def pick_device() -> torch.device:
    """CUDA when present, else CPU; there is nothing to configure."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_targets(model: GreenlightModel, raw: np.ndarray) -> Tensor:
    """Label indices as int64, or the regression target standardised with the training mean and std (of
    log(1 + y) under the target's transform log)."""
    if model.spec.dataset.task == "classification":
        return torch.from_numpy(raw.astype(np.int64))
    return torch.from_numpy(model.preprocessing.target.learned(raw).astype(np.float32))


def fits_on_device(tensors: list[Tensor], device: torch.device) -> bool:
    """Whether a part can live on the device for the whole fit: always on CPU; on a GPU when it takes at most a
    quarter of the free memory (the rest is for the model, its activations and the optimiser's state)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return sum(t.nbytes for t in tensors) <= free // 4


def part_tensors(model: GreenlightModel, splits: DataSplits, part: Part, raw: np.ndarray, device) -> PartTensors:
    """A part's feeds encoded by the model's own preprocessing values, moved to the device once (or, when too
    large for the GPU, kept in host memory and sent a batch at a time)."""
    tensors = [*model_tensors(model, splits.feeds(part)), training_targets(model, raw)]
    tokens = tuple(model.input_names.index(name) for name in (TEXT_IDS, TEXT_MASK) if name in model.input_names)
    if not fits_on_device(tensors, torch.device(device)):
        return PartTensors(tuple(tensors[:-1]), tensors[-1], raw, tokens, batch_device=torch.device(device))
    tensors = [t.to(device) for t in tensors]
    return PartTensors(tuple(tensors[:-1]), tensors[-1], raw, tokens)


def precompute_features(model: GreenlightModel, *parts: PartTensors) -> None:
    """A network whose text features are fixed (a frozen encoder's pooled vectors) computes them once for every
    row of these parts, before the first epoch: a one-off pass is not an epoch's pace (the time budget's
    estimate), and every epoch then trains only what learns."""
    precompute = getattr(model.network, "precompute", None)
    if callable(precompute):
        for part in parts:
            if part.token_inputs:
                precompute(*(part.inputs[i] for i in part.token_inputs))


def compute_loss(model: GreenlightModel, output: Tensor, targets: Tensor) -> Tensor:
    if model.spec.dataset.task == "classification":
        return nn.functional.cross_entropy(output.float(), targets)
    return nn.functional.mse_loss(output.float().reshape(-1), targets)


# loss(model, output, targets, index): what a batch is trained on; index = its rows in the part (distillation
# looks up the teacher's outputs for the same rows).
BatchLoss = Callable[[GreenlightModel, Tensor, Tensor, Tensor], Tensor]


def task_loss(model: GreenlightModel, output: Tensor, targets: Tensor, index: Tensor) -> Tensor:
    return compute_loss(model, output, targets)


@dataclass(frozen=True)
class DataParallel:
    """This process's place among the processes torchrun started (tasks.model.distributed): its shard of each
    epoch, and sums and outputs gathered from all of them, so every process takes the same decisions."""

    rank: int
    world_size: int
    device: torch.device  # where collectives run: the process's GPU under NCCL, the CPU under gloo

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def epoch_rows(self, rows: int, epoch: int, seed: int) -> Tensor:
        """This process's share of a seeded shuffle of the rows, a new one each epoch."""
        sampler = DistributedSampler(range(rows), num_replicas=self.world_size, rank=self.rank, seed=seed)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)

    def own_rows(self, rows: int) -> range:
        """A contiguous share of the rows, for evaluation (the shares in rank order are the rows in order)."""
        return range(rows * self.rank // self.world_size, rows * (self.rank + 1) // self.world_size)

    def sum(self, *values: float) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, output: Tensor) -> Tensor:
        shares: list = [None] * self.world_size
        torch.distributed.all_gather_object(shares, output.cpu())
        return torch.cat([share for share in shares if share.numel()])  # a rank with no rows sends an empty 1-d one


@dataclass(frozen=True)
class Engine:
    """How training batches run: the forward to call (the network's output, maybe compiled or wrapped in
    DistributedDataParallel), the autocast, the rows per step, and the processes sharing the work."""

    forward: Callable[..., Tensor]
    autocast: Callable
    batch_size: int
    parallel: DataParallel | None = None


class NetworkOutput(nn.Module):
    """The network's own output as a module's forward, which DistributedDataParallel and torch.compile wrap
    (the model's forward is the export's: outputs in the target's units)."""

    def __init__(self, model: GreenlightModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.model.network_output(*inputs)


# Below this many trainable parameters a network's training step waits on kernel launches, not arithmetic.
COMPILE_MIN_PARAMETERS = 1_000_000
GPU_MIN_STEPS_PER_EPOCH = 16


def should_compile(model: GreenlightModel, config: TrainingConfig, parallel: DataParallel | None) -> bool:
    device = next(model.parameters()).device
    if config.compile != "auto":
        return config.compile == "on"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return device.type == "cuda" and parallel is None and trainable >= COMPILE_MIN_PARAMETERS


def prepare_engine(
    model: GreenlightModel, config: TrainingConfig, rows: int, parallel: DataParallel | None
) -> tuple[Engine, float]:
    """The forward, autocast and rows per step for the model's device, and the learning rate that goes with them.

    CPU: the configured batch, fp32. GPU: bf16 autocast, TF32 matmuls, wider steps (gpu_batch_multiplier).
    Several processes: each takes its share of the step, so the optimisation matches one process's.
    """
    device = next(model.parameters()).device
    batch_size, learning_rate, autocast = config.batch_size, config.learning_rate, nullcontext
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
        wide = batch_size * config.gpu_batch_multiplier
        if rows >= GPU_MIN_STEPS_PER_EPOCH * wide:
            batch_size, learning_rate = wide, learning_rate * math.sqrt(config.gpu_batch_multiplier)
    forward: nn.Module = NetworkOutput(model)
    if parallel is not None:
        batch_size = max(1, math.ceil(batch_size / parallel.world_size))
        # find_unused_parameters: a family's network may hold parameters a forward does not reach (a
        # pretrained encoder's pooler); DDP would otherwise wait for their gradients forever.
        device_ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(forward, device_ids=device_ids, find_unused_parameters=True)
    if should_compile(model, config, parallel):
        # In auto, a network that torch.compile cannot trace (a user's custom one) trains eagerly instead.
        torch._dynamo.config.suppress_errors = config.compile == "auto"
        forward = torch.compile(forward)
    return Engine(forward, autocast, batch_size, parallel), learning_rate


def run_epoch(
    model: GreenlightModel, train: PartTensors, optimizer, engine: Engine, epoch: int, seed: int, loss: BatchLoss
) -> float:
    """One seeded, shuffled pass over the training rows (this process's shard of them); returns the mean loss."""
    model.train()
    rows = len(train.targets)
    if engine.parallel is None:
        order = torch.randperm(rows, device=train.targets.device)
    else:
        order = engine.parallel.epoch_rows(rows, epoch, seed).to(train.targets.device)
    total = torch.zeros((), dtype=torch.float64, device=train.targets.device)
    for index in order.split(engine.batch_size):
        inputs, targets = train.batch(index)
        with engine.autocast():
            batch_loss = loss(model, engine.forward(*inputs), targets, index)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        total += batch_loss.detach() * len(index)  # summed on the device: a GPU is not stopped at every step
    if engine.parallel is None:
        return total.item() / rows
    total, seen = engine.parallel.sum(total.item(), len(order))
    return total / seen


def evaluate_loss(
    model: GreenlightModel, part: PartTensors, splits: DataSplits, engine: Engine, chunk: int = 1024
) -> tuple[float, float]:
    """Validation loss and the task's main metric (accuracy or R^2) on a part already on the device, in chunks
    (an encoder's attention over thousands of texts at once would not fit in memory); with several processes
    each scores its share and all score the gathered outputs."""
    model.eval()
    rows = len(part.targets)
    share = range(rows) if engine.parallel is None else engine.parallel.own_rows(rows)
    device = part.targets.device
    with torch.inference_mode(), engine.autocast():
        outputs = [
            model.network_output(*part.batch(torch.arange(i, min(i + chunk, share.stop), device=device))[0])
            for i in range(share.start, share.stop, chunk)
        ]
        output = torch.cat(outputs).float() if outputs else torch.empty(0, device=device)
    if engine.parallel is not None:
        output = engine.parallel.gather(output).to(device)
    loss = compute_loss(model, output, part.targets.to(output.device)).item()
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
    parallel: DataParallel | None = None,
) -> FitResult:
    """The loop every fit shares (training, a pruned model's fine-tune, a student's distillation): AdamW, the step
    halved when validation loss stalls, early stopping on validation loss, the best weights kept. `train`: rows
    to fit instead of the training split's (a distillation's transfer set). `on_epoch`: called after each epoch
    (a sweep reports to its pruner there, and may stop the fit by raising). `parallel`: this process's place
    among torchrun's (tasks.model.distributed)."""
    device = next(model.parameters()).device
    train = train or part_tensors(model, splits, "train", targets, device)
    validation = part_tensors(model, splits, "validation", splits.targets("validation"), device)
    precompute_features(model, train, validation)
    engine, learning_rate = prepare_engine(model, config, len(train.targets), parallel)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, learning_rate), lr=learning_rate, weight_decay=config.weight_decay
    )
    # Halve the step when validation loss stalls for a third of the patience: small tables keep improving
    # with a finer step long after a fixed one has started to bounce.
    patience = schedule.patience
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, patience // 3))

    started, history = time.perf_counter(), []
    best_loss, best_epoch, best_state = float("inf"), 0, None
    quiet = parallel is not None and not parallel.leader  # one progress bar, not one per process
    progress = tqdm(range(1, schedule.max_epochs + 1), desc=schedule.label, unit="epoch", disable=quiet)
    for epoch in progress:
        train_loss = run_epoch(model, train, optimizer, engine, epoch, config.seed, loss)
        val_loss, val_metric = evaluate_loss(model, validation, splits, engine)
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
            if not quiet:
                progress.write(f"early stop at epoch {epoch}: no lower validation loss since epoch {best_epoch}")
            break
        spent = out_of_time(time.perf_counter() - started, epoch, schedule.max_epochs, config.time_budget_s)
        if parallel is not None:  # every process must stop at the same epoch
            spent = parallel.sum(float(spent))[0] > 0
        if spent:
            if not quiet:
                progress.write(
                    f"{schedule.label}: stopped at epoch {epoch}, the time budget (training.time_budget_s = "
                    f"{config.time_budget_s:.0f} s) is spent; the best epoch ({best_epoch}) is kept"
                )
            break
    progress.close()
    if best_state is None:
        raise GreenlightError(
            f"{schedule.label} produced no finite validation loss in {len(history)} epochs (it diverged); "
            "lower training.learning_rate or check the target for extreme values"
        )
    return FitResult(best_state, best_epoch, tuple(history), time.perf_counter() - started)


def out_of_time(elapsed: float, epoch: int, max_epochs: int, budget: float | None) -> bool:
    """Whether another epoch would overrun the budget, at the pace measured so far (the first epoch's pace says,
    once, how many epochs the budget affords)."""
    if budget is None:
        return False
    pace = elapsed / epoch
    if epoch == 1 and pace * max_epochs > budget:
        print(f"an epoch takes {pace:.2f} s: the time budget ({budget:.0f} s) affords ~{int(budget / pace)} epochs")
    return elapsed + pace > budget


def train_on_device(
    splits: DataSplits,
    spec: Spec,
    config: TrainingConfig,
    device: torch.device,
    parallel: DataParallel | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> tuple[GreenlightModel, FitResult]:
    """Learn the preprocessing, then fit the spec's family with early stopping: one process's training, or one
    of torchrun's processes (each learns the same preprocessing from the same rows). `on_epoch`: see fit_model."""
    seed_everything(config.seed)
    family = get_family(spec.model.family)
    schedule = FitSchedule(
        f"training {family.name}", config.max_epochs or family.max_epochs, config.patience or family.patience
    )
    targets = train_targets(splits, config)
    model = GreenlightModel(spec, fit_preprocessing(spec.dataset, splits.feeds("train"), targets))
    if family.fit is not None:  # a tree ensemble grows itself on the CPU, in one process
        return model, fit_directly(model, splits, targets, config, schedule)
    model = model.to(device)
    return model, fit_model(model, splits, targets, config, schedule, on_epoch=on_epoch, parallel=parallel)


def network_arrays(model: GreenlightModel, splits: DataSplits, part: Part) -> tuple[np.ndarray, ...]:
    """A part as the network's inputs (the learned preprocessing applied), as arrays."""
    model.eval()
    with torch.inference_mode():
        return tuple(t.numpy() for t in model.network_inputs(*model_tensors(model, splits.feeds(part))))


def fit_directly(
    model: GreenlightModel, splits: DataSplits, targets: np.ndarray, config: TrainingConfig, schedule: FitSchedule
) -> FitResult:
    """A family that trains its network itself (gradient_boosting) on the preprocessed rows; the same FitResult
    as the loop's, rounds for epochs, so evaluation, checkpoints and export treat it like any network."""
    started = time.perf_counter()
    family = get_family(model.spec.model.family)
    rows = TrainingRows(
        train=network_arrays(model, splits, "train"),
        train_targets=training_targets(model, targets).numpy(),
        validation=network_arrays(model, splits, "validation"),
        validation_targets=training_targets(model, splits.targets("validation")).numpy(),
        seed=config.seed,
        time_budget_s=config.time_budget_s,
    )
    print(f"{schedule.label}: {len(rows.train_targets):,} training rows, early stopping on validation")
    done = family.fit(model.network, rows, model.spec.model, model.spec.dataset.task)
    history = tuple(EpochMetrics(r.round, r.train_loss, r.val_loss, r.val_metric) for r in done.history)
    print(f"{schedule.label}: kept round {done.best_round} of {len(history)}")
    state = copy.deepcopy(model.state_dict())
    return FitResult(state, done.best_round, history, time.perf_counter() - started)
