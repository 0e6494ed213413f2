"""model.family auto on a real table: every candidate scored on validation rows, the best (or their blend) served
as one checkpoint that exports to ONNX with parity, and the record a user browses (table, plot) written."""

import numpy as np
import pytest
from model_tables import table

from tasks.core.config import TrainingConfig
from tasks.core.spec import ModelSpec
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.selection import blend, candidate_families, save_ensemble, select_family, train_candidate
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
