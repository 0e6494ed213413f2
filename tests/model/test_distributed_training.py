"""Data-parallel training with torchrun on CPU (gloo): as good as one process, one checkpoint, and a rank that
dies fails the training with its own words."""

from pathlib import Path

import pytest
from model_tables import sklearn_frame, table_spec

from tasks.core.config import RunConfig, TrainingConfig
from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.core.spec import ModelSpec, Spec
from tasks.data.split import split_dataset
from tasks.model.metrics import score_outputs
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.training import train_model

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def cancer():
    frame = sklearn_frame("breast_cancer")
    spec = table_spec("breast_cancer", frame, "target")
    return spec, split_dataset.fn(frame, spec.dataset, RunConfig().split)


def custom_model(spec: Spec, reference: str) -> Spec:
    return spec.model_copy(update={"model": ModelSpec(family="custom", custom=reference)})


def processes(n: int, **settings) -> TrainingConfig:
    return TrainingConfig.model_validate({"distributed": {"nproc_per_node": n}, **settings})


def accuracy_of(trained, splits) -> float:
    model = load_checkpoint(trained.checkpoint_path)
    scores = score_outputs(splits.spec, predict_outputs(model, splits.feeds("test")), splits.targets("test"))
    return scores.value("test_accuracy")


def test_two_processes_train_as_well_as_one_and_leave_one_checkpoint(cancer, tmp_path):
    spec, splits = cancer
    one = train_model.fn(splits, spec, processes(1), tmp_path / "one")
    two = train_model.fn(splits, spec, processes(2), tmp_path / "two")

    assert two.device == "cpu x2" and len(two.history) >= two.best_epoch > 0
    assert sorted(p.name for p in (tmp_path / "two").rglob("*.pt")) == ["best.pt"]
    # 114 test rows: one row is 0.9 points, and the two runs see the rows in different orders.
    assert abs(accuracy_of(one, splits) - accuracy_of(two, splits)) <= 0.035
    assert accuracy_of(two, splits) >= 0.9


def test_a_rank_that_dies_fails_the_training_with_its_error_and_no_checkpoint(cancer, tmp_path, monkeypatch):
    spec, splits = cancer
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    dying = custom_model(spec, "rank_failures:dies_on_second_rank")

    with pytest.raises(GreenlightError, match=r"rank 1: .*out of memory on rank 1") as raised:
        train_model.fn(splits, dying, processes(2), tmp_path)
    assert "torchrun exited with code" in str(raised.value) and "rank 0" not in str(raised.value)
    assert not (tmp_path / "best.pt").exists()


def test_a_bad_setting_found_in_the_processes_is_raised_as_itself(cancer, tmp_path):
    spec, splits = cancer
    missing = custom_model(spec, "no_such_package:net")

    with pytest.raises(ConfigRejected, match="module 'no_such_package' could not be imported"):
        train_model.fn(splits, missing, processes(2), tmp_path)
