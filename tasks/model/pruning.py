"""Structured pruning: whole neurons, convolution channels and attention heads removed with torch-pruning, then
a short fine-tune; each level is one candidate for the compression stage.

Coupled channels go together, so the network really gets narrower (torch.nn.utils.prune would only mask weights);
the output layer, embeddings and frozen parts are never pruned (docs/compression.md).
"""

import time
from dataclasses import dataclass, replace
from pathlib import Path

from prefect import task
from torch import nn

from tasks.core.cache import stage_cache_key
from tasks.core.config import CompressionConfig, TrainingConfig
from tasks.core.errors import GreenlightError
from tasks.data.split import DataSplits
from tasks.model.families import get_family
from tasks.model.loop import (
    EpochMetrics,
    FitSchedule,
    fit_model,
    pick_device,
    seed_everything,
    train_targets,
)
from tasks.model.network import GreenlightModel, load_checkpoint, model_tensors, read_checkpoint, save_checkpoint

EXAMPLE_ROWS = 4  # rows traced by torch-pruning to find which channels are coupled


@dataclass(frozen=True)
class SkippedCandidate:
    """A candidate that could not be produced, and why (the quantizer's or the pruner's own message)."""

    name: str
    reason: str


@dataclass(frozen=True)
class ShrunkModel:
    """A smaller torch model made from the trained one (pruned, or a distilled student), ready for export."""

    name: str  # "pruned-30", "distilled"
    checkpoint_path: Path
    how: str  # what was done, for reports: "30% of channels removed (10,243 -> 5,011 weights), fine-tuned 30 epochs"
    parameters: int
    seconds: float
    history: tuple[EpochMetrics, ...] = ()


@dataclass(frozen=True)
class ShrinkResult:
    """The smaller models that could be made, and why any could not."""

    models: tuple[ShrunkModel, ...]
    skipped: tuple[SkippedCandidate, ...] = ()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def output_layers(model: GreenlightModel) -> list[nn.Module]:
    """The layers whose outputs are the model's outputs (one per label, or the regression value): never pruned."""
    n_outputs = len(model.spec.dataset.label_texts()) if model.spec.dataset.task == "classification" else 1
    layers = [m for m in model.network.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    width = [m for m in layers if getattr(m, "out_features", getattr(m, "out_channels", None)) == n_outputs]
    return width or layers[-1:]


def never_pruned(model: GreenlightModel) -> list[nn.Module]:
    """The output layer, embeddings, and every module none of whose weights train (a frozen encoder)."""
    weights = {m: list(m.parameters()) for m in model.network.modules()}
    frozen = [m for m, params in weights.items() if params and not any(p.requires_grad for p in params)]
    return output_layers(model) + [m for m in model.modules() if isinstance(m, nn.Embedding)] + frozen


def prune_network(model: GreenlightModel, splits: DataSplits, level: float) -> GreenlightModel:
    """Remove `level` of every prunable layer's neurons / channels / heads, in place."""
    import torch_pruning as tp

    model = model.to("cpu").eval()
    example = tuple(model_tensors(model, splits.feeds("train", rows=EXAMPLE_ROWS)))
    heads_of = getattr(model.network, "attention_heads", None)
    heads = heads_of() if callable(heads_of) else {}
    pruner = tp.pruner.BasePruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=level,
        ignored_layers=never_pruned(model),
        num_heads=heads,
        prune_num_heads=bool(heads),
        prune_head_dims=False,
        head_pruning_ratio=level,
        forward_fn=lambda m, inputs: m(*inputs),
    )
    pruner.step()
    after = getattr(model.network, "after_pruning", None)
    if callable(after):
        after({layer: pruner.num_heads[layer] for layer in heads})
    return model


def fine_tune_schedule(config: CompressionConfig, training: TrainingConfig, family: str) -> FitSchedule:
    """compression.pruning.fine_tune_epochs, or a tenth of the family's training epochs (at least 2), stopped
    early after a third of the training patience (at least 2): a pruned model starts next to the trained one's
    best and recovers within a few epochs or not at all, so waiting the whole patience would only train it anew."""
    kind = get_family(family)
    epochs = config.pruning.fine_tune_epochs
    epochs = epochs if epochs is not None else max(2, kind.max_epochs // 10)
    patience = max(2, (training.patience or kind.patience) // 3)
    return FitSchedule("fine-tuning", max_epochs=epochs, patience=min(max(epochs, 1), patience))


def pruned_candidate(
    checkpoint_path: Path,
    splits: DataSplits,
    level: float,
    fine_tune: FitSchedule,
    training: TrainingConfig,
    out_dir: Path,
) -> ShrunkModel:
    """One level: pruned from the trained checkpoint, fine-tuned (early-stopped on validation), saved with its sizes."""
    started, name = time.perf_counter(), f"pruned-{round(level * 100)}"
    epochs = fine_tune.max_epochs
    model = load_checkpoint(checkpoint_path)
    before = count_parameters(model)
    model = prune_network(model, splits, level).to(pick_device())
    if count_parameters(model) == before:
        raise GreenlightError("torch-pruning found no layer it could narrow in this network")
    state, history = model.state_dict(), ()
    if epochs:
        schedule = replace(fine_tune, label=f"fine-tuning {name}")
        fit = fit_model(model, splits, train_targets(splits, training), training, schedule)
        state, history = fit.best_state, fit.history
    model.load_state_dict(state)
    path = save_checkpoint(model, state, out_dir / f"{name}.pt")
    after = count_parameters(model)
    how = f"{level:.0%} of channels / neurons / heads removed ({before:,} -> {after:,} weights)"
    how += f", fine-tuned {len(history)} of {epochs} epochs"
    return ShrunkModel(name, path, how, after, time.perf_counter() - started, history)


def checkpoints_of(result: ShrinkResult) -> list[Path]:
    """The files a cached ShrinkResult needs (gone: the stage runs again)."""
    return [m.checkpoint_path for m in result.models]


@task(
    name="prune_model",
    cache_key_fn=stage_cache_key("pruning", ignore=["out_dir"], files_of=checkpoints_of),
    persist_result=True,
)
def prune_model(
    checkpoint_path: Path, splits: DataSplits, config: CompressionConfig, training: TrainingConfig, out_dir: Path
) -> ShrinkResult:
    """A pruned, fine-tuned model per compression.pruning.levels; a level torch-pruning cannot do is skipped
    with its reason (a custom network with an operation it does not trace), never the run failed."""
    fine_tune = fine_tune_schedule(config, training, read_checkpoint(checkpoint_path)["family"])
    models, skipped = [], []
    for level in config.pruning.levels:
        seed_everything(training.seed)
        try:
            models.append(pruned_candidate(checkpoint_path, splits, level, fine_tune, training, out_dir))
        except Exception as error:  # noqa: BLE001 - a level that cannot be pruned is reported, not fatal
            reason = (str(error).strip().splitlines() or [""])[0][:300]
            skipped.append(SkippedCandidate(f"pruned-{round(level * 100)}", f"{type(error).__name__}: {reason}"))
    return ShrinkResult(tuple(models), tuple(skipped))
