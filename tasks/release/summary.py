"""What one pipeline run produced, for the CLI and the flow's return value."""

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.timing import stage_seconds
from tasks.registry.client import ModelVersionRef, find_version, get_version, log_metrics
from tasks.registry.tracking import RunContext
from tasks.release.gate import GateDecision


@dataclass(frozen=True)
class PipelineSummary:
    """The run, the version, the decision, where production stands now, and where the time went."""

    tracking_uri: str
    run_id: str
    model_name: str
    version: str
    promoted: bool
    decision: GateDecision
    bento_tag: str
    compression: str
    production_version: str | None
    family: str  # the served model's family (what model.family auto chose)
    stage_seconds: dict[str, float]  # per stage, and "_started_at": when the flow's body began (wall clock)


@task(name="summarize_run", cache_policy=NO_CACHE)
def summarize_run(run: RunContext, version: ModelVersionRef, decision: GateDecision) -> PipelineSummary:
    """What the CLI prints, and the time each stage took (also on the MLflow run, as stage_seconds.<stage>)."""
    seconds = stage_seconds()
    timings = {name: s for name, s in seconds.items() if not name.startswith("_")}
    log_metrics(
        run.tracking, {f"stage_seconds.{name.replace(' ', '_').replace('+', 'and')}": s for name, s in timings.items()}
    )
    current = get_version(version.tracking_uri, version.name, version.version)
    production = find_version(run.tracking_uri, version.name)
    return PipelineSummary(
        tracking_uri=run.tracking_uri,
        run_id=run.tracking.run_id,
        model_name=version.name,
        version=version.version,
        promoted=decision.promote,
        decision=decision,
        bento_tag=current.tags.get("bento_tag", ""),
        compression=current.tags.get("compression", ""),
        production_version=production.version if production else None,
        family=current.tags.get("model_family", ""),
        stage_seconds=seconds,
    )
