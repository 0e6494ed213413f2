"""A custom network for tests/model/test_distributed_training.py, plugged in as `custom: rank_failures:NAME`
(the test puts this folder on PYTHONPATH, as a user's package is importable in torchrun's processes)."""

import torch
from torch import nn


class DiesOnSecondRank(nn.Module):
    """A linear model whose third training step on rank 1 fails, like a rank that runs out of memory."""

    def __init__(self, inputs) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs.numeric_width, inputs.n_outputs)
        self.steps = 0

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if self.training and torch.distributed.is_initialized() and torch.distributed.get_rank() == 1:
            self.steps += 1
            if self.steps == 3:
                raise RuntimeError("out of memory on rank 1 (simulated by the test's network)")
        return self.linear(numeric)


def dies_on_second_rank(inputs) -> nn.Module:
    return DiesOnSecondRank(inputs)
