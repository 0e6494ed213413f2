"""Custom model families for the unit and model tests, plugged in as `custom: custom_networks:NAME` (pytest puts
this folder, tests/conftest.py's, on sys.path, as a user's own package would be importable)."""

import torch
from torch import nn


class LinearOnInputs(nn.Module):
    """The numeric inputs and a 2-wide embedding per categorical column, straight to the outputs."""

    def __init__(self, inputs) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, 2) for n in inputs.categorical_cardinalities)
        self.linear = nn.Linear(inputs.numeric_width + 2 * len(self.embeddings), inputs.n_outputs)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = [numeric, *(e(codes[:, i]) for i, e in enumerate(self.embeddings))]
        return self.linear(torch.cat(parts, dim=1))


class NotExportable(LinearOnInputs):
    """Fine in PyTorch, but torch.special.i0 has no ONNX (opset 17) export."""

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return torch.special.i0(super().forward(numeric, codes))


def linear(inputs) -> nn.Module:
    return LinearOnInputs(inputs)


def not_exportable(inputs) -> nn.Module:
    return NotExportable(inputs)


def not_a_module(inputs) -> str:
    return "a network"


class OneOutputTooMany(LinearOnInputs):
    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        output = super().forward(numeric, codes)
        return torch.cat([output, output[:, :1]], dim=1)


def one_output_too_many(inputs) -> nn.Module:
    return OneOutputTooMany(inputs)


def takes_one_input(inputs) -> nn.Module:
    return nn.Linear(inputs.numeric_width, inputs.n_outputs)


def raises(inputs) -> nn.Module:
    raise ValueError("needs at least 3 numeric columns")
