"""The tabular_mlp family on real tables: quality a user would expect, regression end to end, and string
categoricals with missing values through ONNX export, parity and compression."""

import numpy as np
import pytest
from model_tables import table

from tasks.core.config import CompressionConfig, TrainingConfig
from tasks.model.evaluation import evaluate_checkpoint
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.training import train_model
from tasks.onnx.compress import compress_model
from tasks.onnx.export import check_parity, export_model
from tasks.onnx.runtime import run_model


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    spec, splits = table("penguins")
    trained = train_model.fn(splits, spec, TrainingConfig(), tmp_path_factory.mktemp("penguins"))
    return spec, splits, trained


@pytest.mark.parametrize(("name", "floor"), [("wine", 0.9), ("breast_cancer", 0.93)])
def test_default_training_reaches_a_useful_accuracy(name, floor, tmp_path):
    spec, splits = table(name)
    trained = train_model.fn(splits, spec, TrainingConfig(), tmp_path)
    logits = predict_outputs(load_checkpoint(trained.checkpoint_path), splits.feeds("test"))
    accuracy = np.mean(logits.argmax(axis=1) == splits.targets("test"))
    assert trained.family == "tabular_mlp" and trained.best_epoch < len(trained.history)
    assert accuracy >= floor, f"{name}: test accuracy {accuracy:.4f} below {floor}"


def test_penguins_with_missing_values_and_strings_export_with_exact_parity(penguins, tmp_path):
    spec, splits, trained = penguins
    path = export_model.fn(trained.checkpoint_path, tmp_path)
    parity = check_parity.fn(path, trained.checkpoint_path, splits)
    assert parity.rows == len(splits.test) and parity.max_abs_diff <= 1e-4 and parity.agreement == 1.0
    accuracy = np.mean(run_model(path, splits.feeds("test")).argmax(axis=1) == splits.targets("test"))
    assert accuracy >= 0.95


def test_odd_rows_are_answered_the_same_by_onnx_and_pytorch(penguins, tmp_path):
    spec, splits, trained = penguins
    path = export_model.fn(trained.checkpoint_path, tmp_path)
    odd = splits.test.head(4).copy()
    odd.loc[odd.index[0], ["bill_length_mm", "body_mass_g"]] = np.nan  # missing numbers
    odd.loc[odd.index[1], "island"] = "Atlantis"  # a category never seen in training
    odd.loc[odd.index[2], ["island", "sex"]] = None  # missing categories
    feeds = spec.dataset.feeds(odd)
    onnx_logits, torch_logits = run_model(path, feeds), predict_outputs(load_checkpoint(trained.checkpoint_path), feeds)
    assert np.isfinite(onnx_logits).all()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)


def test_penguins_compression_scores_every_candidate_or_says_why_not(penguins, tmp_path):
    _, splits, trained = penguins
    fp32 = export_model.fn(trained.checkpoint_path, tmp_path)
    result = compress_model.fn(fp32, splits, CompressionConfig())
    names = {c.name for c in result.candidates} | {s.name for s in result.skipped}
    assert names == {"fp32", "int8-static-qdq", "int8-dynamic"} and result.metric_name == "accuracy"
    assert result.chosen.metric >= result.candidates[0].metric - 0.005


def test_diabetes_regression_end_to_end_in_the_target_units(tmp_path):
    spec, splits = table("diabetes")
    trained = train_model.fn(splits, spec, TrainingConfig(max_epochs=30), tmp_path)
    assert trained.metric_name == "r2"
    report = evaluate_checkpoint(trained, splits, tmp_path / "evaluation")
    assert report.scores.value("test_r2") > 0.3 > report.baseline.value("test_r2")
    assert report.outcome_png.name == "predicted_vs_actual.png" and report.outcome_png.stat().st_size > 0
    assert set(report.metrics()) == {"test_r2", "test_rmse", "test_mae"}

    path = export_model.fn(trained.checkpoint_path, tmp_path / "onnx")
    parity = check_parity.fn(path, trained.checkpoint_path, splits)
    assert parity.max_abs_diff < 1e-4 and parity.agreement == 1.0  # relative to the target's std
    predictions = run_model(path, splits.feeds("test"))
    assert predictions.shape == (len(splits.test),)
    assert 25 <= predictions.min() and predictions.max() <= 346  # diabetes progression's own range

    result = compress_model.fn(path, splits, CompressionConfig())
    assert result.metric_name == "r2" and result.chosen.metric >= result.candidates[0].metric - 0.005


def test_a_shuffled_target_trains_a_useless_regression(tmp_path):
    spec, splits = table("diabetes")
    trained = train_model.fn(splits, spec, TrainingConfig(max_epochs=30, shuffle_labels=True), tmp_path)
    report = evaluate_checkpoint(trained, splits, tmp_path / "evaluation")
    assert report.scores.value("test_r2") < 0.1
