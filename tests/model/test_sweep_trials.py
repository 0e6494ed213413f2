"""A sweep's trial on a tiny table: every epoch reaches the pruner, which can stop it there; an unpruned trial
completes with its checkpoint and its lowest validation loss; a diverging trial is a failed trial, not a failed
sweep."""

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from tasks.core.config import RunConfig
from tasks.core.spec import DatasetSpec, FeatureSpec, Spec, TargetSpec
from tasks.data.parts import DataSplits
from tasks.model.sweep import distributions, train_trial

BATCH = {"type": "choice", "choices": [16]}


def numeric(name: str) -> FeatureSpec:
    return FeatureSpec(name=name, type="numeric")


def tiny_splits() -> tuple[Spec, DataSplits]:
    spec = Spec(
        dataset=DatasetSpec(
            target=TargetSpec(name="y", task="classification", labels=["a", "b"]), features=[numeric("x")]
        )
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    frame = pd.DataFrame({"x": x, "y": np.where(x > 0, "a", "b")})
    return spec, DataSplits(spec.dataset, frame.iloc[:40], frame.iloc[40:50], frame.iloc[50:])


def run_one_trial(pruner: optuna.pruners.BasePruner, tmp_path, **training):
    spec, splits = tiny_splits()
    config = RunConfig.model_validate(
        {
            "training": {"max_epochs": 6, **training},
            "sweep": {
                "trials": 1,
                "space": {"training.batch_size": BATCH},
                "warmup_epochs": 2,
                "prune_interval_epochs": 1,
            },
        }
    )
    study = optuna.create_study(pruner=pruner)
    trial = study.ask(distributions(config.sweep))
    result = train_trial.fn(trial=trial, splits=splits, spec=spec, config=config, work_dir=tmp_path)
    return result, study.trials[0]


def test_every_epoch_reaches_the_pruner_and_a_pruned_trial_stops_there(tmp_path):
    # Prunes any trial whose validation loss is above 0 once it has trained its 2 warm-up epochs: always, at epoch 2.
    result, trial = run_one_trial(optuna.pruners.ThresholdPruner(upper=0.0, n_warmup_steps=2), tmp_path)
    assert result.state == "pruned" and len(result.history) == 2 and result.trained is None
    assert trial.intermediate_values == {m.epoch: m.val_loss for m in result.history}
    assert result.value == result.history[-1].val_loss


def test_an_unpruned_trial_completes_with_its_checkpoint_and_lowest_validation_loss(tmp_path):
    result, trial = run_one_trial(optuna.pruners.NopPruner(), tmp_path)
    assert result.state == "complete" and len(trial.intermediate_values) == len(result.history) == 6
    assert result.trained.checkpoint_path.is_file() and result.trained.checkpoint_path.parent.name == "trial-0"
    assert result.value == min(m.val_loss for m in result.history)
    assert trial.state == TrialState.RUNNING  # the driver tells the study, not the task


def test_a_diverging_trial_is_a_failed_trial_not_a_failed_sweep(tmp_path):
    result, _ = run_one_trial(optuna.pruners.NopPruner(), tmp_path, weight_decay=1e30)
    assert result.state == "failed" and result.value is None and "diverged at epoch 1" in result.error
