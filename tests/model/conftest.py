"""One model trained on the real digits, shared by the behavioural checks in this folder."""

from pathlib import Path

import pytest

from tasks.core.config import RunConfig
from tasks.data.files import DataSplits, digits_frame, split_dataset
from tasks.model.training import TrainedModel, train_model


@pytest.fixture(scope="session")
def digits_splits() -> DataSplits:
    return split_dataset.fn(digits_frame(), RunConfig().split)


@pytest.fixture(scope="session")
def trained(digits_splits, tmp_path_factory) -> TrainedModel:
    work_dir: Path = tmp_path_factory.mktemp("trained")
    return train_model.fn(digits_splits, RunConfig().training, work_dir)
