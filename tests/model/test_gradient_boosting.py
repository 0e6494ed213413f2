"""The gradient_boosting family: the served graph answers exactly like LightGBM's own trees, reaches the accuracy
a user expects of boosted trees on real tables, and goes through ONNX export with odd rows answered like torch."""

import numpy as np
import pytest
import torch
from model_tables import table, table_spec

from tasks.core.config import TrainingConfig
from tasks.model.families.contract import TrainingRows
from tasks.model.families.gradient_boosting import (
    GradientBoostingOptions,
    TreeEnsemble,
    grow_booster,
    load_trees,
    objective,
    tree_inputs,
)
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.training import train_model
from tasks.onnx.export import check_parity, export_model
from tasks.onnx.runtime import run_model


def synthetic_rows(task: str, n_outputs: int, seed: int = 0) -> TrainingRows:
    """Numbers (some exactly on likely thresholds) and two categorical codes that decide part of the target."""
    rng = np.random.default_rng(seed)

    def part(rows: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        numeric = rng.normal(size=(rows, 4)).astype(np.float32).round(2)
        codes = np.stack([rng.integers(2, 9, rows), rng.integers(1, 5, rows)], axis=1)
        signal = numeric[:, 0] + np.isin(codes[:, 0], [3, 5, 7]) * 1.5 - (codes[:, 1] == 2) + rng.normal(0, 0.3, rows)
        if task == "regression":
            return (numeric, codes), signal.astype(np.float32)
        edges = np.quantile(signal, np.linspace(0, 1, n_outputs + 1)[1:-1])
        return (numeric, codes), np.digitize(signal, edges)

    train, train_targets = part(600)
    validation, validation_targets = part(200)
    return TrainingRows(train, train_targets, validation, validation_targets, seed=seed)


@pytest.mark.parametrize(("task", "n_outputs"), [("classification", 2), ("classification", 3), ("regression", 1)])
def test_the_torch_walk_answers_exactly_like_lightgbm(task, n_outputs):
    rows = synthetic_rows(task, n_outputs)
    ensemble = TreeEnsemble(n_numeric=4, n_codes=2, n_outputs=n_outputs)
    booster, _ = grow_booster(ensemble, rows, GradientBoostingOptions(max_rounds=200), task)
    ensemble.categories = 10
    load_trees(ensemble, booster.dump_model(num_iteration=booster.best_iteration), objective(n_outputs, task)[1])
    numeric, codes = rows.validation
    with torch.inference_mode():
        ours = ensemble(torch.from_numpy(numeric), torch.from_numpy(codes)).numpy()
    theirs = booster.predict(tree_inputs(rows.validation), num_iteration=booster.best_iteration, raw_score=True)
    theirs = theirs.reshape(len(numeric), -1)
    # Binary: LightGBM's one raw score is the positive class's logit; the negative class's is 0.
    expected = np.concatenate([np.zeros_like(theirs), theirs], axis=1) if n_outputs == 2 else theirs
    assert ensemble.trees > 10 and any(row > 0 for row in ensemble.member_row.tolist())  # categorical splits used
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def penguins_trees(tmp_path_factory):
    spec, splits = table("penguins")
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"family": "gradient_boosting"})})
    trained = train_model.fn(splits, spec, TrainingConfig(), tmp_path_factory.mktemp("trees"))
    return spec, splits, trained


def test_trees_on_penguins_export_with_parity_and_answer_odd_rows_like_torch(penguins_trees, tmp_path):
    spec, splits, trained = penguins_trees
    assert trained.family == "gradient_boosting" and trained.best_epoch <= len(trained.history)
    path = export_model.fn(trained.checkpoint_path, tmp_path)
    parity = check_parity.fn(path, trained.checkpoint_path, splits)
    assert parity.max_abs_diff <= 1e-4 and parity.agreement == 1.0
    accuracy = np.mean(run_model(path, splits.feeds("test")).argmax(axis=1) == splits.targets("test"))
    assert accuracy >= 0.95
    odd = splits.test.head(4).copy()
    odd.loc[odd.index[0], ["bill_length_mm", "body_mass_g"]] = np.nan
    odd.loc[odd.index[1], "island"] = "Atlantis"
    odd.loc[odd.index[2], ["island", "sex"]] = None
    feeds = spec.dataset.feeds(odd)
    np.testing.assert_allclose(
        run_model(path, feeds), predict_outputs(load_checkpoint(trained.checkpoint_path), feeds), atol=1e-4
    )


def test_trees_predict_a_regression_target_in_its_own_units(tmp_path):
    spec, splits = table("diabetes")
    spec = table_spec("diabetes", splits.train, "target", family="gradient_boosting")
    trained = train_model.fn(splits, spec, TrainingConfig(), tmp_path)
    predicted = predict_outputs(load_checkpoint(trained.checkpoint_path), splits.feeds("test"))
    actual = splits.targets("test")
    r2 = 1 - np.sum((predicted - actual) ** 2) / np.sum((actual - actual.mean()) ** 2)
    assert 25 < predicted.mean() < 300 and r2 > 0.3, f"R^2 {r2:.3f}, mean prediction {predicted.mean():.1f}"


def test_a_text_spec_is_refused_with_the_families_that_read_text():
    from tasks.model.families import FAMILIES
    from tasks.model.families.contract import InputDescription, TextDescription

    inputs = InputDescription("classification", 2, 0, (), None, text=TextDescription("wordpiece", 1000, 64))
    with pytest.raises(Exception, match="text_ngram / pretrained_encoder"):
        FAMILIES["gradient_boosting"].build(spec_model("gradient_boosting"), inputs)


def spec_model(family: str):
    from tasks.core.spec import ModelSpec

    return ModelSpec(family=family)
