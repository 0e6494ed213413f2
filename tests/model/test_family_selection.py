"""model.family auto on a real table: every candidate scored on validation rows, the best (or their blend) served
as one checkpoint that exports to ONNX with parity, and the record a user browses (table, plot) written."""

import numpy as np
import pandas as pd
import pytest
from model_tables import table

from tasks.core.config import SplitConfig, TrainingConfig
from tasks.core.errors import GreenlightError
from tasks.core.spec import DatasetSpec, FeatureSpec, ModelSpec, Spec, TargetSpec
from tasks.data.split import split_dataset
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.selection import (
    blend,
    candidate_families,
    log_target_worth_trying,
    save_ensemble,
    select_family,
    train_candidate,
    with_log_target,
)
from tasks.onnx.export import check_parity, export_model


@pytest.fixture(scope="module")
def penguins_auto():
    spec, splits = table("penguins")
    return spec.model_copy(update={"model": ModelSpec(family="auto")}), splits


def test_auto_scores_every_candidate_and_serves_the_best_on_validation(penguins_auto, tmp_path):
    spec, splits = penguins_auto
    selection = select_family.fn(splits, spec, TrainingConfig(max_epochs=40), tmp_path)
    names = [c.name for c in selection.candidates]
    assert names[:2] == ["gradient_boosting", "tabular_mlp"] and names[2].startswith("ensemble: ")
    served = [c for c in selection.candidates if c.note == "served"]
    assert len(served) == 1 and served[0].metric == max(c.metric for c in selection.candidates)
    assert selection.spec.model.family in ("gradient_boosting", "tabular_mlp", "ensemble")
    assert load_checkpoint(selection.trained.checkpoint_path).spec == selection.spec
    assert "| gradient_boosting |" in selection.table.read_text() and selection.plot.stat().st_size > 5000


def test_a_blend_of_trees_and_a_network_is_one_graph_answering_like_its_members(penguins_auto, tmp_path):
    spec, splits = penguins_auto
    config = TrainingConfig(max_epochs=20)
    trees, network = (train_candidate(f, splits, spec, config, tmp_path, 60.0) for f in candidate_families(spec))
    path = save_ensemble(spec, trees, network, 0.3, tmp_path / "ensemble.pt")
    outputs = predict_outputs(load_checkpoint(path), splits.feeds("validation"))
    np.testing.assert_allclose(outputs, blend(spec, trees.outputs, network.outputs, 0.3), atol=1e-5)
    onnx_path = export_model.fn(path, tmp_path / "onnx")
    parity = check_parity.fn(onnx_path, path, splits)
    assert parity.max_abs_diff <= 1e-4 and parity.agreement == 1.0


def test_a_spill_of_the_time_budget_skips_the_later_candidates_and_says_so(penguins_auto, tmp_path):
    spec, splits = penguins_auto
    selection = select_family.fn(splits, spec, TrainingConfig(time_budget_s=1.0), tmp_path)
    skipped = [c for c in selection.candidates if c.note.startswith("skipped")]
    assert [c.name for c in skipped] == ["tabular_mlp"] and "budget" in skipped[0].note
    assert selection.spec.model.family == "gradient_boosting"
    # The served trees are grown again on train + validation rows, for the rounds early stopping kept (scaled).
    served = next(c for c in selection.candidates if c.note.startswith("served"))
    assert "refit" in served.note and selection.spec.model.options["max_rounds"] > selection.trained.best_epoch


def skewed_prices(rows: int = 900, seed: int = 0):
    """A price-like target: multiplicative in its inputs, a long right tail (skew ~3), never negative."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.normal(size=rows), "age": rng.normal(size=rows), "rooms": rng.normal(size=rows)})
    frame["price"] = 1000 * np.exp(1 + frame["size"] + 0.5 * frame["age"] + 0.2 * rng.normal(size=rows))
    dataset = DatasetSpec(
        name="prices",
        target=TargetSpec(name="price", task="regression"),
        features=[FeatureSpec(name=c, type="numeric") for c in ("size", "age", "rooms")],
    )
    spec = Spec(dataset=dataset, model=ModelSpec(family="auto"))
    return frame, spec, split_dataset.fn(frame, dataset, SplitConfig(seed=seed))


def test_a_skewed_non_negative_target_gets_trees_on_log_target_too_and_the_better_is_kept(tmp_path):
    _, spec, splits = skewed_prices()
    assert log_target_worth_trying(spec, splits)
    selection = select_family.fn(splits, spec, TrainingConfig(max_epochs=30), tmp_path)
    scored = {c.name: c for c in selection.candidates}
    raw, logged = scored["gradient_boosting"], scored["gradient_boosting, log target"]
    kept_log = logged.metric > raw.metric
    assert (selection.spec.dataset.target.transform == "log") == kept_log
    assert ("tabular_mlp, log target" if kept_log else "tabular_mlp") in scored  # the network learns the same target
    assert "not kept" in (raw if kept_log else logged).note
    assert "| gradient_boosting, log target |" in selection.table.read_text()


def test_a_log_target_model_answers_in_the_targets_units_through_onnx(tmp_path):
    frame, spec, splits = skewed_prices()
    trained = train_candidate("gradient_boosting", splits, with_log_target(spec), TrainingConfig(), tmp_path, 60.0)
    model = load_checkpoint(trained.trained.checkpoint_path)
    assert model.preprocessing.target.log and model.spec.dataset.target.transform == "log"
    predictions = predict_outputs(model, splits.feeds("test"))
    truth = splits.targets("test")
    assert predictions.min() > 0 and 0.5 < np.median(predictions) / np.median(truth) < 2.0  # prices, not logs
    onnx_path = export_model.fn(trained.trained.checkpoint_path, tmp_path / "onnx")
    parity = check_parity.fn(onnx_path, trained.trained.checkpoint_path, splits)
    assert parity.max_abs_diff <= 1e-4


def test_a_log_target_is_refused_for_negative_values_and_for_classification(tmp_path):
    frame, spec, splits = skewed_prices()
    shifted = frame.assign(price=frame["price"] - frame["price"].median())  # half the rows below zero
    assert not log_target_worth_trying(spec, split_dataset.fn(shifted, spec.dataset, SplitConfig(seed=0)))
    logged = with_log_target(spec)
    with pytest.raises(GreenlightError, match="transform log, which needs values >= 0"):
        train_candidate(
            "gradient_boosting",
            split_dataset.fn(shifted, logged.dataset, SplitConfig(seed=0)),
            logged,
            TrainingConfig(),
            tmp_path,
            60.0,
        )
    with pytest.raises(ValueError, match="transform 'log' is for a regression target"):
        TargetSpec(name="y", task="classification", labels=["a", "b"], transform="log")
