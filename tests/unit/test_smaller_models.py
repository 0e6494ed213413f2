"""Smaller models, without training one: pruning settings that mean nothing are refused, a pruned model's
fine-tune stops early, and a plan that skips pruning and distillation costs nothing. Pruning and distilling trained
models: tests/model/test_pruning_and_distillation.py."""

import pytest
from pydantic import ValidationError

from flows.training import shrink_model
from tasks.core.config import (
    CompressionConfig,
    GateConfig,
    PruningConfig,
    RunConfig,
    TrainingConfig,
)
from tasks.model.pruning import fine_tune_schedule
from tasks.model.training import TrainedModel
from tasks.onnx.goals import decide_compression
from tasks.onnx.runtime import CandidateScore
from tasks.registry.tracking import RunContext


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"levels": [0.3, 1.0]}, "each above 0 and below 1"),
        ({"levels": [0.5, 0.5]}, "repeat"),
        ({"fine_tune_epochs": -1}, "greater than or equal to 0"),
    ],
)
def test_pruning_settings_that_mean_nothing_are_refused(settings, message):
    with pytest.raises(ValidationError, match=message):
        PruningConfig.model_validate(settings)


def test_a_pruned_model_fine_tunes_with_early_stopping_not_a_fixed_count():
    # A tenth of the family's epochs, stopped after a third of its patience: tables 30 epochs / patience 8,
    # the CNN 4 / 2. The fine-tune used to run every epoch (patience = epochs).
    table = fine_tune_schedule(CompressionConfig(), TrainingConfig(), "tabular_mlp")
    assert (table.max_epochs, table.patience) == (30, 8)
    cnn = fine_tune_schedule(CompressionConfig(), TrainingConfig(), "image_cnn")
    assert (cnn.max_epochs, cnn.patience) == (4, 2)
    asked = CompressionConfig(pruning=PruningConfig(fine_tune_epochs=100))
    assert fine_tune_schedule(asked, TrainingConfig(patience=30), "tabular_mlp").patience == 10


def test_skipped_steps_read_no_checkpoint_and_prepare_no_rows(tmp_path):
    # A plan that skips pruning and distillation costs nothing: the stage never opens the (here missing) checkpoint.
    fp32 = CandidateScore("fp32", tmp_path / "model.onnx", 48_600, 0.98, 1.0, 0.06)
    plan = decide_compression(fp32, "tabular_mlp", CompressionConfig(), GateConfig())
    trained = TrainedModel(
        checkpoint_path=tmp_path / "missing.pt",
        family="tabular_mlp",
        best_epoch=1,
        history=(),
        device="cpu",
        seconds=0.0,
        metric_name="accuracy",
    )
    run = RunContext(tracking=None, work_dir=tmp_path, locations=None, experiment_name="unused")
    assert shrink_model(splits=None, trained=trained, plan=plan, config=RunConfig(), run=run) == []
    assert not (tmp_path / "smaller").exists()
