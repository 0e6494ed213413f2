"""ensemble: a weighted average of several families' networks over the same learned preprocessing, as one network.

What `model.family: auto` serves when it measures better on validation than the best single family: the log of
the weighted mean probability (classification), or the weighted standardised prediction (regression).
"""

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from tasks.core.spec import ModelSpec
from tasks.model.families.contract import Family, FamilyOptions, InputDescription, parse_options


class EnsembleMember(FamilyOptions):
    family: str
    options: dict = Field(default_factory=dict)
    weight: float = Field(gt=0.0, le=1.0)


class EnsembleOptions(FamilyOptions):
    """model.options of ensemble: its members, each a family, its options and its weight (weights sum to 1)."""

    members: tuple[EnsembleMember, ...] = Field(min_length=2, max_length=8)

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> "EnsembleOptions":
        total = sum(m.weight for m in self.members)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"ensemble weights must sum to 1, got {total:.6f}")
        if any(m.family == "ensemble" for m in self.members):
            raise ValueError("an ensemble cannot hold an ensemble")
        return self


class WeightedEnsemble(nn.Module):
    def __init__(self, members: list[nn.Module], weights: list[float], task: str) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        self.classification = task == "classification"

    def forward(self, *inputs: Tensor) -> Tensor:
        outputs = [member(*inputs).float() for member in self.members]
        if self.classification:
            probabilities = sum(self.weights[i] * torch.softmax(o, dim=1) for i, o in enumerate(outputs))
            return torch.log(probabilities.clamp_min(1e-12))
        return sum(self.weights[i] * o.reshape(-1, 1) for i, o in enumerate(outputs))


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    from tasks.model.families import build_network  # the registry imports this module

    options = parse_options(EnsembleOptions, model.family, model.options)
    members = [build_network(ModelSpec(family=m.family, options=m.options), inputs) for m in options.members]
    return WeightedEnsemble(members, [m.weight for m in options.members], inputs.task)


def ensemble_spec(members: list[tuple[ModelSpec, float]]) -> ModelSpec:
    """The ModelSpec of a weighted ensemble of these members (weights normalised to sum to 1)."""
    total = sum(weight for _, weight in members)
    return ModelSpec(
        family="ensemble",
        options={
            "members": [
                {"family": m.family, "options": dict(m.options), "weight": float(weight / total)}
                for m, weight in members
            ]
        },
    )


FAMILY = Family(
    name="ensemble",
    build=build,
    max_epochs=1,
    patience=1,
    summary="a weighted average of other families' outputs (what model.family auto serves when it measures better)",
    options=EnsembleOptions,
    # Its members are already trained and chosen; shrinking one would need the blend re-weighed.
    compression="never",
)
