"""A user's own model family, plugged in by `custom: custom_models:small_linear` (tests put this folder on
sys.path, as a user's package would be importable)."""

import torch


class SmallLinear(torch.nn.Module):
    """Numeric inputs and one embedding per categorical column, straight to the outputs."""

    def __init__(self, numeric_width: int, cardinalities: list[int], outputs: int) -> None:
        super().__init__()
        self.embeddings = torch.nn.ModuleList(torch.nn.Embedding(n, 4) for n in cardinalities)
        self.linear = torch.nn.Linear(numeric_width + 4 * len(cardinalities), outputs)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [embedding(codes[:, i]) for i, embedding in enumerate(self.embeddings)]
        return self.linear(torch.cat(parts, dim=1))


def small_linear(inputs) -> torch.nn.Module:
    return SmallLinear(inputs.numeric_width, list(inputs.categorical_cardinalities), inputs.n_outputs)
