"""One model trained on the real digits, shared by the behavioural checks in this folder."""

from pathlib import Path

import pytest

from tasks.core.config import RunConfig
from tasks.core.spec import Spec, digits_frame, digits_spec
from tasks.data.split import DataSplits, split_dataset
from tasks.model.training import TrainedModel, train_model


@pytest.fixture(scope="session")
def digits() -> Spec:
    return digits_spec()


@pytest.fixture(scope="session")
def digits_splits(digits) -> DataSplits:
    return split_dataset.fn(digits_frame(), digits.dataset, RunConfig().split)


@pytest.fixture(scope="session")
def trained(digits, digits_splits, tmp_path_factory) -> TrainedModel:
    work_dir: Path = tmp_path_factory.mktemp("trained")
    return train_model.fn(digits_splits, digits, RunConfig().training, work_dir)
