"""tabular_mlp: the default family for tables. Standardised numbers and one embedding per categorical
feature, concatenated into a small MLP (the shape of fastai's tabular model)."""

import torch
from pydantic import Field
from torch import Tensor, nn

from tasks.core.spec import ModelSpec
from tasks.model.families.contract import Family, FamilyOptions, InputDescription, parse_options


class TabularMLPOptions(FamilyOptions):
    """model.options of tabular_mlp."""

    # Two layers are enough for tables of hundreds to tens of thousands of rows; more overfits the small ones.
    hidden: tuple[int, ...] = Field((128, 64), min_length=1, max_length=8)
    # Moderate dropout: with early stopping on validation loss it is the main regulariser on 150-row tables.
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # fastai's rule of thumb sizes an embedding at 1.6 * cardinality ** 0.56; the cap keeps a 1,000-level
    # column from dwarfing the numeric inputs on a small table.
    max_embedding_dim: int = Field(16, ge=1, le=512)


def embedding_dim(cardinality: int, cap: int) -> int:
    """Width of one categorical embedding: 3 codes -> 3, 10 -> 6, 100 -> 21 (capped)."""
    return max(1, min(cap, round(1.6 * cardinality**0.56)))


class TableInputs(nn.Module):
    """The numeric inputs and one embedding per categorical column, side by side (also a text model's table side)."""

    def __init__(self, inputs: InputDescription, max_embedding_dim: int) -> None:
        super().__init__()
        dims = [embedding_dim(c, max_embedding_dim) for c in inputs.categorical_cardinalities]
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, d) for c, d in zip(inputs.categorical_cardinalities, dims, strict=True)
        )
        self.width = inputs.numeric_width + sum(dims)

    def forward(self, numeric: Tensor, codes: Tensor) -> Tensor:
        embedded = [embedding(codes[:, i]) for i, embedding in enumerate(self.embeddings)]
        return torch.cat([numeric, *embedded], dim=1) if embedded else numeric


class TabularMLP(nn.Module):
    """Embeddings per categorical column, concatenated with the numeric inputs, then Linear-ReLU-Dropout."""

    def __init__(self, inputs: InputDescription, options: TabularMLPOptions) -> None:
        super().__init__()
        self.table = TableInputs(inputs, options.max_embedding_dim)
        layers: list[nn.Module] = []
        width = self.table.width
        for size in options.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(options.dropout)]
            width = size
        layers.append(nn.Linear(width, inputs.n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, numeric: Tensor, codes: Tensor) -> Tensor:
        return self.layers(self.table(numeric, codes))


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    return TabularMLP(inputs, parse_options(TabularMLPOptions, model.family, model.options))


def student(teacher: ModelSpec) -> ModelSpec:
    """The distilled student: a quarter of the teacher's width per layer, at least 4 ((128, 64) -> (32, 16))."""
    options = parse_options(TabularMLPOptions, teacher.family, teacher.options)
    return ModelSpec(
        family="tabular_mlp", options={**teacher.options, "hidden": [max(4, h // 4) for h in options.hidden]}
    )


FAMILY = Family(
    name="tabular_mlp",
    build=build,
    # Tables here are small (a 500-row table is 8 batches an epoch): many cheap epochs, stopped by patience.
    max_epochs=300,
    patience=25,
    summary="numeric inputs + an embedding per categorical feature, then an MLP",
    student=student,
    options=TabularMLPOptions,
)
