"""Records left by a run that died (kill -9, a lost machine, an OOM kill), found by their owner tag and marked
abandoned / KILLED / Crashed the next time anything looks (docs/recovery.md)."""

from dataclasses import dataclass

from tasks.core.processes import Owner, is_alive, is_dead, read_owner
from tasks.registry.client import (
    end_abandoned_run,
    run_status,
    running_runs,
    tag_model_version,
    versions_with_verdict,
)

OWNER_TAG = "greenlight.owner"


def abandoned_reason(owner: Owner | None, run_id: str | None) -> str:
    who = owner.text() if owner else "its process"
    return (
        f"the run that registered it ({who}, MLflow run {run_id}) died before the gate decided: it was never"
        " judged and cannot be promoted; run the pipeline again"
    )


@dataclass(frozen=True)
class Recovered:
    """What was marked: one line each for the person, and the Prefect flow runs of the dead runs."""

    lines: tuple[str, ...]
    flow_run_ids: tuple[str, ...]


def recover_abandoned(tracking_uri: str, experiment_name: str, model_name: str | None) -> Recovered:
    """Mark the pending versions and RUNNING runs whose process is gone (or, for a version, whose run ended)."""
    lines, flow_runs = [], []
    if model_name:
        for version in versions_with_verdict(tracking_uri, model_name, "pending"):
            owner = read_owner(version.tags.get(OWNER_TAG))
            ended = version.run_id is not None and run_status(tracking_uri, version.run_id) != "RUNNING"
            if is_dead(owner) or (ended and not is_alive(owner)):
                reason = abandoned_reason(owner, version.run_id)
                tag_model_version(version, {"gate_verdict": "abandoned", "gate_reason": reason})
                lines.append(f"marked {version.uri} abandoned: {reason}")
    for run_id, tags in running_runs(tracking_uri, experiment_name):
        owner = read_owner(tags.get(OWNER_TAG))
        if is_dead(owner):
            end_abandoned_run(tracking_uri, run_id, f"the process running it ({owner.text()}) died")
            lines.append(f"marked MLflow run {run_id} KILLED: the process running it ({owner.text()}) died")
            if tags.get("prefect_flow_run_id", "none") != "none":
                flow_runs.append(tags["prefect_flow_run_id"])
    return Recovered(tuple(lines), tuple(flow_runs))
