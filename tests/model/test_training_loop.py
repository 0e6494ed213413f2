"""Training on a few rows: a user's own family trains, checkpoints and exports like the built-in ones, and a
diverging run stops at its first NaN epoch, naming the settings that likely caused it."""

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import TrainingConfig
from tasks.core.errors import GreenlightError
from tasks.core.spec import DatasetSpec, FeatureSpec, ModelSpec, Spec, TargetSpec
from tasks.data.split import DataSplits
from tasks.model.network import load_checkpoint
from tasks.model.training import train_model
from tasks.onnx.export import check_parity, export_onnx

ROWS = pd.DataFrame(
    {
        "tenure": [1.0, 5.0, np.nan, 12.0, 30.0, 2.0],
        "charges": [70.1, 20.5, 55.0, 99.9, 35.2, 80.0],
        "contract": ["monthly", "yearly", "monthly", None, "two-year", "monthly"],
        "paperless": [True, False, True, True, False, False],
    }
)


def table_spec(task: str = "classification", family: str = "tabular_mlp", **model) -> Spec:
    features = [
        FeatureSpec(name="tenure", type="numeric", nullable=True),
        FeatureSpec(name="charges", type="numeric"),
        FeatureSpec(name="contract", type="categorical", nullable=True),
        FeatureSpec(name="paperless", type="binary"),
    ]
    labels = {"labels": ["stays", "leaves"]} if task == "classification" else {}
    dataset = DatasetSpec(target=TargetSpec(name="churn", task=task, **labels), features=features)
    return Spec(dataset=dataset, model=ModelSpec(family=family, **model))


def test_a_custom_family_trains_checkpoints_and_exports_like_the_built_in_ones(tmp_path):
    spec = table_spec(family="custom", custom="custom_networks:linear")
    frame = pd.concat([ROWS] * 3, ignore_index=True).assign(churn=["stays", "leaves"] * 9)
    splits = DataSplits(spec.dataset, frame.iloc[:12], frame.iloc[12:15], frame.iloc[15:])
    trained = train_model.fn(splits, spec, TrainingConfig(max_epochs=3), tmp_path)
    assert trained.family == "custom" and len(trained.history) == 3
    path = export_onnx(load_checkpoint(trained.checkpoint_path), tmp_path / "model.onnx")
    parity = check_parity.fn(path, trained.checkpoint_path, splits)
    assert parity.rows == 3 and parity.max_abs_diff <= 1e-5 and parity.agreement == 1.0


def test_a_diverging_run_stops_at_the_first_nan_epoch_naming_it_and_the_likely_cause(tmp_path):
    spec = table_spec()
    frame = pd.concat([ROWS] * 3, ignore_index=True).assign(churn=["stays", "leaves"] * 9)
    splits = DataSplits(spec.dataset, frame.iloc[:12], frame.iloc[12:15], frame.iloc[15:])
    config = TrainingConfig(max_epochs=5, learning_rate=1.0, weight_decay=1e30)
    expected = r"diverged at epoch 1: training loss .*, validation loss nan"
    with pytest.raises(GreenlightError, match=expected) as diverged:
        train_model.fn(splits, spec, config, tmp_path)
    assert "training.weight_decay 1e+30" in str(diverged.value) and "training.learning_rate 1" in str(diverged.value)
    assert not (tmp_path / "best.pt").exists()
