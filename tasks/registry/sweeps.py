"""A sweep's record in MLflow: each trial a nested run under the pipeline's run, and the study's summary on it."""

from prefect import task
from prefect.artifacts import create_image_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.core.errors import TRANSIENT_RETRIES, transient_only
from tasks.model.sweep import StudyRef, SweepResult, TrialResult
from tasks.registry.client import (
    TrackingRun,
    finish_tracking_run,
    log_files,
    log_metric_series,
    log_metrics,
    log_params,
    run_artifact_image_url,
    run_artifact_link,
    set_run_tags,
    start_nested_run,
)
from tasks.registry.tracking import epoch_curves


@task(name="log_trial", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def log_trial(trial: TrialResult, run: TrackingRun, study: StudyRef) -> str:
    """One trial as a nested run: its settings, per-epoch curves, outcome (tag trial_state) and value; returns
    the nested run's id. A pruned trial ends FINISHED (pruning is an outcome), a diverged one FAILED."""
    tags = {"optuna.study": study.name, "optuna.trial": str(trial.number), "trial_state": trial.state}
    tags |= {"error": trial.error[:4000]} if trial.error else {}
    params = {name: str(value) for name, value in trial.params.items()}
    nested = start_nested_run(run, f"trial-{trial.number}", params, tags, start_ms=int(trial.started * 1000))
    log_metric_series(nested, epoch_curves(trial.history))
    summary = {"epochs": len(trial.history), "seconds": trial.finished - trial.started}
    if trial.trained is not None:
        summary["best_epoch"] = trial.trained.best_epoch
    log_metrics(nested, summary | ({} if trial.value is None else {"value": trial.value}))
    finish_tracking_run(nested, succeeded=trial.state != "failed", end_ms=int(trial.finished * 1000))
    return nested.run_id


@task(name="log_sweep", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def log_sweep(run: TrackingRun, sweep: SweepResult) -> None:
    """The study on the pipeline's run: the best trial's settings (params sweep.best.*), the trial counts, the
    trial table and plot (artifacts sweep/), and the same as a Prefect artifact."""
    log_params(run, {f"sweep.best.{name}": value for name, value in sweep.best_params.items()})
    counts = {f"sweep_trials_{outcome}": n for outcome, n in sweep.counts.items()}
    importances = {f"sweep_importance.{name}": share for name, share in sweep.importances.items()}
    log_metrics(
        run, {"sweep_best_value": sweep.best_value, "sweep_trials_this_run": len(sweep.trials), **counts, **importances}
    )
    study = sweep.study
    set_run_tags(
        run,
        {"sweep.study": study.name, "sweep.storage": study.shown_storage, "sweep.best_trial": str(sweep.best_number)},
    )
    log_files(run, [sweep.table, sweep.plot], "sweep")
    link = run_artifact_link(run, f"sweep/{sweep.plot.name}")
    if (image := run_artifact_image_url(run, f"sweep/{sweep.plot.name}")) is not None:
        create_image_artifact(image_url=image, key="sweep-plot", description="Sweep: optimisation history")
    create_markdown_artifact(key="sweep", markdown=sweep.markdown(link), description="Hyper-parameter sweep")
