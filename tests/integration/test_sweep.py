"""`greenlight sweep` as a user runs it: a reviewed spec with a `sweep:` section, trials as Prefect tasks and nested
MLflow runs, the best trial's model through the gate, and a second sweep resuming the same study.

A small real table (palmerpenguins) and short trainings (--max-epochs 15), so the module stays near a minute.
"""

import os
from pathlib import Path
from uuid import UUID

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from registry_support import registry_state

from deployments.cli import main
from tasks.core.locations import resolve_locations

pytestmark = pytest.mark.slow
MODEL = "penguins-sweep"
SPACE = {
    "training.learning_rate": {"type": "float", "low": 0.003, "high": 0.03, "log": True},
    "model.options.dropout": {"type": "choice", "choices": [0.0, 0.2]},
}
STATES = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    """`greenlight init`'s spec of the penguins, with a reviewed sweep section: two settings, prune from trial 2."""
    from palmerpenguins import load_penguins

    folder = tmp_path_factory.mktemp("sweep")
    load_penguins().to_csv(folder / "penguins.csv", index=False)
    path = folder / "greenlight.yaml"
    argv = ["init", "--data", str(folder / "penguins.csv"), "--target", "species", "--model-name", MODEL]
    assert main([*argv, "--out", str(path)]) == 0
    spec = yaml.safe_load(path.read_text())
    spec["sweep"] = {"space": SPACE, "startup_trials": 1, "warmup_epochs": 3}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def client(prefect_harness, greenlight_home) -> MlflowClient:
    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def sweep(spec_file: Path, *flags: str) -> int:
    return main(["sweep", "--spec", str(spec_file), "--max-epochs", "15", *flags])


@pytest.fixture(scope="module")
def first_sweep(spec_file, client):
    return sweep(spec_file, "--trials", "3", "--concurrency", "2"), client.get_model_version(MODEL, "1")


@pytest.fixture(scope="module")
def second_sweep(first_sweep, spec_file, client):
    return sweep(spec_file, "--trials", "5"), client.get_model_version(MODEL, "2")


def nested_runs(client: MlflowClient, parent_run_id: str) -> list:
    experiment = client.get_run(parent_run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}'")


def study_of(client: MlflowClient, parent_run_id: str) -> optuna.Study:
    name = client.get_run(parent_run_id).data.tags["sweep.study"]
    return optuna.load_study(study_name=name, storage=resolve_locations().study_storage)


def test_each_trial_is_a_nested_run_with_its_settings_curves_and_outcome(first_sweep, client):
    exit_code, version = first_sweep
    assert exit_code in (0, 3)  # the gate decided
    trials = nested_runs(client, version.run_id)
    study = study_of(client, version.run_id)
    assert sorted(int(run.data.tags["optuna.trial"]) for run in trials) == [0, 1, 2]
    for run in trials:
        trial = study.trials[int(run.data.tags["optuna.trial"])]
        assert STATES[run.data.tags["trial_state"]] == trial.state  # complete or pruned, as the study says
        assert run.info.status == "FINISHED" and set(run.data.params) == set(SPACE)
        assert run.data.metrics["value"] == pytest.approx(trial.value)
        curve = client.get_metric_history(run.info.run_id, "val_loss")
        assert {point.step: point.value for point in curve} == pytest.approx(trial.intermediate_values)
    # --concurrency 2: two trials trained at once, never more.
    spans = [(run.info.start_time, run.info.end_time) for run in trials]
    overlaps = [sum(start <= moment < end for start, end in spans) for moment, _ in spans]
    assert max(overlaps) == 2


def test_the_registered_model_is_the_best_trials_and_went_through_the_gate(first_sweep, client):
    _, version = first_sweep
    assert version.tags["gate_verdict"] in ("passed", "failed") and version.tags["gate_reason"]
    assert {Path(f.path).name for f in client.list_artifacts(version.run_id, "gate")} >= {"gate_report.json"}
    best = study_of(client, version.run_id).best_trial
    parent = client.get_run(version.run_id)
    assert {k.removeprefix("sweep.best."): v for k, v in parent.data.params.items() if k.startswith("sweep.best.")} == {
        name: str(value) for name, value in best.params.items()
    }
    # The model registered is that trial's model: the run's training curve is the best trial's, epoch for epoch.
    (best_run,) = [
        run for run in nested_runs(client, version.run_id) if run.data.tags["optuna.trial"] == str(best.number)
    ]
    curves = [client.get_metric_history(run_id, "val_loss") for run_id in (version.run_id, best_run.info.run_id)]
    assert [(p.step, p.value) for p in curves[0]] == [(p.step, p.value) for p in curves[1]]
    # ...and the spec registered with it names the model options it trained with.
    spec = yaml.safe_load(Path(client.download_artifacts(version.run_id, "spec/spec.yaml")).read_text())
    assert spec["model"]["options"]["dropout"] == best.params["model.options.dropout"]
    assert float(parent.data.params["training.learning_rate"]) == 0.002  # the base setting, kept as given


def test_each_trial_is_a_prefect_task_run_of_the_flow_run(first_sweep, client):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    _, version = first_sweep
    flow_run_id = UUID(client.get_run(version.run_id).data.tags["prefect_flow_run_id"])
    with get_client(sync_client=True) as prefect:
        runs = prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    trial_runs = [run for run in runs if run.name.startswith("trial-")]
    assert sorted(run.name for run in trial_runs) == ["trial-0", "trial-1", "trial-2"]
    assert all(run.state.is_completed() for run in trial_runs)


def test_a_second_sweep_of_the_same_study_resumes_it_to_the_new_total(first_sweep, second_sweep, client):
    exit_code, version = second_sweep
    assert exit_code in (0, 3) and version.tags["gate_verdict"] in ("passed", "failed")
    first_parent = first_sweep[1].run_id
    study = study_of(client, version.run_id)
    assert study.study_name == study_of(client, first_parent).study_name
    assert len(study.trials) == 5
    assert sorted(int(run.data.tags["optuna.trial"]) for run in nested_runs(client, version.run_id)) == [3, 4]
    best = client.get_run(version.run_id).data.tags["sweep.best_trial"]
    assert best == str(study.best_trial.number)


def test_a_bad_search_space_is_refused_with_exit_2_and_changes_nothing(second_sweep, spec_file, client, capsys):
    before = registry_state(client, MODEL), optuna.get_all_study_names(resolve_locations().study_storage)
    experiment = client.get_experiment_by_name("greenlight").experiment_id
    runs_before = len(client.search_runs([experiment], max_results=1000))
    spec = yaml.safe_load(spec_file.read_text())
    spec["sweep"]["space"] = {"model.options.hiden": {"type": "choice", "choices": [[8]]}}
    bad = spec_file.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump(spec))
    assert main(["sweep", "--spec", str(bad), "--trials", "2"]) == 2
    assert "sweep.space 'model.options.hiden'" in capsys.readouterr().err
    after = registry_state(client, MODEL), optuna.get_all_study_names(resolve_locations().study_storage)
    assert after == before and len(client.search_runs([experiment], max_results=1000)) == runs_before
