"""model.family auto's record in MLflow: each candidate's validation score on the run, the table and the plot."""

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.core.errors import TRANSIENT_RETRIES, transient_only
from tasks.model.selection import FamilySelection
from tasks.registry.client import TrackingRun, log_files, log_metrics, set_run_tags


@task(name="log_selection", cache_policy=NO_CACHE, retry_condition_fn=transient_only, **TRANSIENT_RETRIES)
def log_selection(run: TrackingRun, selection: FamilySelection) -> None:
    """Metrics candidate.<name>.validation_<metric> and .seconds, tag model_family_served, and the table and plot
    (artifacts selection/), also as a Prefect artifact."""
    metrics = {}
    for candidate in selection.candidates:
        # "ensemble: gradient_boosting 0.6 + tabular_mlp 0.4" -> candidate.ensemble (MLflow names allow no "+"),
        # "gradient_boosting, log target" -> candidate.gradient_boosting.log_target (nor ",")
        key = "candidate." + candidate.name.split(":")[0].replace(", ", ".").replace(" ", "_")
        if candidate.metric is not None:
            metrics[f"{key}.validation_{selection.metric_name}"] = candidate.metric
            metrics[f"{key}.seconds"] = candidate.seconds
    log_metrics(run, metrics)
    set_run_tags(run, {"model_family_served": selection.served, "model_family_requested": "auto"})
    log_files(run, [selection.table, selection.plot], "selection")
    create_markdown_artifact(
        key="family-selection", markdown=selection.table.read_text(), description="model.family auto: candidates"
    )
