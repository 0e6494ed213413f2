"""Sweeps: the search space is checked before anything starts, a trial's drawn settings become the spec and training
settings it trains with, and it asks the pruner on the configured epochs (a trial trained and pruned:
tests/model/test_sweep_trials.py)."""

import argparse
import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from deployments.cli import build_parser, load_run_config, main
from tasks.core.config import RunConfig
from tasks.core.errors import ConfigRejected
from tasks.core.locations import resolve_locations
from tasks.core.spec import DatasetSpec, FeatureSpec, ModelSpec, Spec, TargetSpec
from tasks.model.sweep import (
    SETTINGS_ATTR,
    StudyRef,
    asks_pruner,
    check_model_options,
    check_same_settings,
    distributions,
    trial_settings,
)


def sweep_config(space: dict, **settings) -> RunConfig:
    return RunConfig.model_validate({"sweep": {"trials": 4, "space": space, **settings}})


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sweep", *argv])


def test_the_default_space_is_learning_rate_weight_decay_and_batch_size_and_no_sweep():
    sweep = RunConfig().sweep
    assert sweep.trials == 0  # a plain run
    assert set(sweep.space) == {"training.learning_rate", "training.weight_decay", "training.batch_size"}
    assert distributions(sweep)["training.learning_rate"] == FloatDistribution(1e-4, 1e-2, log=True)


@pytest.mark.parametrize(
    "space, message",
    [
        ({"learnig_rate": {"type": "float", "low": 0.001, "high": 0.01}}, "'learnig_rate' is not a setting"),
        ({"training.seed": {"type": "int", "low": 1, "high": 9}}, "training.learning_rate, training.weight_decay"),
        ({"training.shuffle_labels": {"type": "choice", "choices": [True]}}, "'training.shuffle_labels' is not"),
        ({"training.learning_rate": {"low": 0.001, "high": 0.01}}, "'training.learning_rate' needs type"),
        ({"training.learning_rate": {"type": "float", "low": 1e-4, "high": 2.0}}, "can draw 2.0: Input should be less"),
        ({"training.batch_size": {"type": "choice", "choices": [0, 64]}}, "'training.batch_size' can draw 0"),
        ({"training.batch_size": {"type": "float", "low": 16, "high": 64}}, "takes whole numbers"),
        ({"training.learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "low above 0"),
        ({"training.learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}, "low 0.1 is above high 0.01"),
        ({"training.batch_size": {"type": "choice", "choices": [32, 32]}}, "a value twice"),
    ],
)
def test_a_bad_search_space_is_refused_naming_the_entry(tmp_path, space, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps({"sweep": {"trials": 3, "space": space}}))
    with pytest.raises(ConfigRejected) as rejected:
        load_run_config(parse("--config", str(path)))
    assert message in str(rejected.value) and "sweep.space" in str(rejected.value)


def test_sweep_flags_and_a_spec_files_sweep_section_reach_the_config(tmp_path):
    path = tmp_path / "greenlight.yaml"
    spec = Spec(
        dataset=DatasetSpec(
            target=TargetSpec(name="y", task="classification", labels=["a", "b"]), features=[numeric("x")]
        )
    )
    space = {"model.options.dropout": {"type": "float", "low": 0.0, "high": 0.4}}
    path.write_text(spec.to_yaml() + "sweep: " + json.dumps({"trials": 8, "space": space, "pruner": "hyperband"}))
    config = load_run_config(parse("--spec", str(path), "--concurrency", "2"))
    assert (config.sweep.trials, config.sweep.concurrency, config.sweep.pruner) == (8, 2, "hyperband")
    assert list(config.sweep.space) == ["model.options.dropout"]
    config = load_run_config(parse("--spec", str(path), "--trials", "20", "--study-name", "churn-a"))
    assert (config.sweep.trials, config.sweep.study_name) == (20, "churn-a")


def test_sweep_without_trials_is_refused_before_anything_starts(capsys):
    assert main(["sweep"]) == 2
    assert "greenlight sweep needs --trials N" in capsys.readouterr().err


def test_a_sweep_cannot_train_its_trials_in_torchruns_processes():
    with pytest.raises(ValueError, match="nproc_per_node > 1 do not go together"):
        RunConfig.model_validate({"sweep": {"trials": 3}, "training": {"distributed": {"nproc_per_node": 2}}})


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"model.options.hiden": {"type": "choice", "choices": [[64]]}}, "hiden: Extra inputs are not permitted"),
        ({"model.options.max_embedding_dim": {"type": "float", "low": 4, "high": 32}}, "max_embedding_dim"),
        ({"model.options.dropout": {"type": "float", "low": 0.0, "high": 1.0}}, "can draw 1.0"),
    ],
)
def test_a_model_option_the_family_refuses_is_refused_naming_it_and_the_known_ones(entry, message):
    with pytest.raises(ConfigRejected) as rejected:
        check_model_options(sweep_config(entry).sweep, ModelSpec(family="tabular_mlp"))
    assert message in str(rejected.value) and "known options: hidden, dropout" in str(rejected.value)


def test_model_options_of_a_family_that_reads_them_pass():
    space = {
        "model.options.hidden": {"type": "choice", "choices": [[64, 32], [128]]},
        "model.options.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    }
    check_model_options(sweep_config(space).sweep, ModelSpec(family="tabular_mlp"))


def test_a_trials_params_become_the_spec_and_training_settings_it_trains_with():
    space = {
        "training.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "training.batch_size": {"type": "int", "low": 16, "high": 128, "step": 16},
        "model.options.hidden": {"type": "choice", "choices": [[64, 32], [128]]},
    }
    config = sweep_config(space, seed=3)
    found = distributions(config.sweep)
    assert found["training.batch_size"] == IntDistribution(16, 128, step=16)
    # Optuna's choices are plain values: a list of layer widths stands as its JSON text, and reads back as the list.
    assert found["model.options.hidden"] == CategoricalDistribution(["[64, 32]", "[128]"])
    spec = Spec(
        dataset=DatasetSpec(
            target=TargetSpec(name="y", task="classification", labels=["a", "b"]), features=[numeric("x")]
        ),
        model=ModelSpec(family="tabular_mlp", options={"dropout": 0.2}),
    )
    params = {"training.learning_rate": 0.003, "training.batch_size": 48, "model.options.hidden": "[128]"}
    trial_spec, training = trial_settings(params, spec, config)
    assert trial_spec.model.options == {"dropout": 0.2, "hidden": [128]} and spec.model.options == {"dropout": 0.2}
    assert (training.learning_rate, training.batch_size, training.weight_decay) == (0.003, 48, 1e-4)


def test_studies_live_in_their_own_database_beside_mlflows_unless_a_url_is_given(tmp_path):
    home = {"GREENLIGHT_HOME": str(tmp_path)}
    assert resolve_locations(home).study_storage == f"sqlite:///{tmp_path / 'studies.db'}"
    assert resolve_locations(home).tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    url = "postgresql+psycopg://optuna:secret@db:5432/optuna"
    assert resolve_locations({**home, "GREENLIGHT_STUDY_STORAGE": url}).study_storage == url
    assert StudyRef(url, "churn", 0).shown_storage == "postgresql+psycopg://optuna:***@db:5432/optuna"


def test_a_study_of_other_data_or_settings_is_refused_naming_what_differs():
    study = optuna.create_study()
    settings = {"data": "aaaa", "dataset": "d1", "training": "t1"}
    check_same_settings(study, settings, "sqlite:///studies.db")  # the first run records them
    assert study.user_attrs[SETTINGS_ATTR] == settings
    check_same_settings(study, dict(settings), "sqlite:///studies.db")  # the same: resumed
    with pytest.raises(ConfigRejected, match=r"holds trials of another data, training: .* name another study"):
        check_same_settings(study, {**settings, "data": "bbbb", "training": "t2"}, "sqlite:///studies.db")


def numeric(name: str) -> FeatureSpec:
    return FeatureSpec(name=name, type="numeric")


BATCH = {"type": "choice", "choices": [16]}


def test_a_trial_asks_the_pruner_from_the_warm_ups_end_every_interval():
    sweep = sweep_config({"training.batch_size": BATCH}, warmup_epochs=10, prune_interval_epochs=5).sweep
    assert [epoch for epoch in range(1, 31) if asks_pruner(epoch, sweep)] == [10, 15, 20, 25, 30]
    assert not any(asks_pruner(epoch, sweep.model_copy(update={"pruner": "none"})) for epoch in range(1, 31))
