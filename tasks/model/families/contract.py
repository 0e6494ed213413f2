"""What every model family receives and returns: the contract a custom `module:function` is written against.

A family builds the network only, called as network(numeric, codes) (network(numeric, codes, ids, mask) with a text
feature) and answering [n, n_outputs]; tasks.model.network wraps it in the preprocessing and the output layer.
The tensors and the optional hooks (optimizer_groups, attention_heads, seed_student): docs/architecture.md.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from tasks.core.errors import ConfigRejected
from tasks.core.spec import ModelSpec, validation_problems


@dataclass(frozen=True)
class TextDescription:
    """A text feature's tokens: which tokenizer, how many ids it has, and the longest sequence."""

    tokenizer: str  # pretrained, wordpiece or bpe
    vocab_size: int
    max_length: int


@dataclass(frozen=True)
class InputDescription:
    """What a family needs to size its network; built from the spec and the learned preprocessing."""

    task: Literal["classification", "regression"]
    n_outputs: int
    numeric_width: int
    categorical_cardinalities: tuple[int, ...]
    image_shape: tuple[int, int, int] | None  # (channels, height, width) for image_grid specs
    # The spec's model.options as written: built-in families validate them (parse_options); a custom
    # builder reads its own.
    options: Mapping[str, Any] = field(default_factory=dict)
    text: TextDescription | None = None  # a spec with a text feature: forward takes (numeric, codes, ids, mask)
    training_rows: int = 0  # rows of the training split (0: unknown, e.g. when a checkpoint is rebuilt)


@dataclass(frozen=True)
class TrainingRows:
    """The network's inputs for the training and validation rows, after the learned preprocessing, with their
    targets (label indices, or the standardised regression target): what a family that fits by its own algorithm
    rather than gradient steps (a tree ensemble) learns from."""

    train: tuple[np.ndarray, np.ndarray]  # (numeric float32 [n, numeric_width], codes int64 [n, categorical])
    train_targets: np.ndarray
    validation: tuple[np.ndarray, np.ndarray]
    validation_targets: np.ndarray
    seed: int
    # Seconds this fit may take (None: no limit): the family stops adding rounds when it is spent.
    time_budget_s: float | None = None


@dataclass(frozen=True)
class RoundMetrics:
    """One round of a direct fit as the loop records an epoch: losses, and accuracy or R^2 on validation rows."""

    round: int
    train_loss: float
    val_loss: float
    val_metric: float


@dataclass(frozen=True)
class DirectFit:
    """What a direct fit reports: the round kept (early stopping on validation loss) and every round's metrics."""

    best_round: int
    history: tuple[RoundMetrics, ...]


class FamilyOptions(BaseModel):
    """Base of a family's options: unknown keys are refused (a typo must not silently train the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=FamilyOptions)


@dataclass(frozen=True)
class Family:
    """A registered model family: how it builds its network and how long it trains by default."""

    name: str
    build: Callable[[ModelSpec, InputDescription], nn.Module]
    max_epochs: int
    patience: int
    summary: str
    # The gate's default bar on the served file's size (gate.max_model_size_bytes overrides it): far above
    # what this family exports, so only something other than the model trips it.
    max_model_bytes: int = 10_000_000
    # Pruning and distillation in auto (compression.pruning.when / distillation.when): always; only when the fp32
    # file misses a size or latency goal (compression.goals); or never, INT8 included (nothing to prune or distil).
    compression: Literal["always", "when_goals_missed", "never"] = "when_goals_missed"
    # The smaller model that distillation trains on this family's outputs: the student's ModelSpec from the
    # teacher's (None: no default student; compression.distillation.student names one).
    student: Callable[[ModelSpec], ModelSpec] | None = None
    # What model.options it reads (a sweep checks the options it varies against it before the first trial);
    # None: options the family does not check (a custom builder reads its own).
    options: type[FamilyOptions] | None = None
    # fit(network, rows, model spec, task) -> DirectFit: the family trains its built network itself (a tree
    # ensemble is grown by boosting, not by gradient steps); None: the shared loop (tasks.model.loop) trains it.
    fit: Callable[[nn.Module, TrainingRows, ModelSpec, str], DirectFit] | None = None

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse options this family cannot build with (ConfigRejected naming the option and the known ones)."""
        if self.options is not None:
            parse_options(self.options, self.name, options)


def require_text(family: str, inputs: InputDescription) -> TextDescription:
    """A text family's tokens; a spec without a text feature is refused, naming the family for tables."""
    if inputs.text is None:
        raise ConfigRejected(f"model family '{family}' needs a text feature in the spec; for a table use 'tabular_mlp'")
    return inputs.text


def parse_options(kind: type[OptionsT], family: str, options: Mapping[str, Any]) -> OptionsT:
    """A family's options validated; a wrong or unknown option is refused, naming it and the known ones."""
    try:
        return kind.model_validate(dict(options))
    except ValidationError as error:
        known = ", ".join(kind.model_fields)
        raise ConfigRejected(
            f"model.options for family '{family}': {validation_problems(error)} (known options: {known})"
        ) from error
