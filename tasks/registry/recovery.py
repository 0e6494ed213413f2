"""Records left by a run that died (kill -9, a lost machine, an OOM kill), found by their owner tag and marked
abandoned / KILLED / Crashed the next time anything looks: the next run, `greenlight status`, `show` or
`history` (docs/recovery.md)."""

from dataclasses import dataclass
from uuid import UUID

from tasks.core.processes import Owner, is_alive, is_dead, read_owner
from tasks.registry.client import (
    end_abandoned_run,
    run_status,
    running_runs,
    tag_model_version,
    versions_with_verdict,
)

OWNER_TAG = "greenlight.owner"
NO_FLOW_RUN = "none"  # the prefect_flow_run_id tag of a run started outside a Prefect flow run


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


def recover_abandoned(
    tracking_uri: str, experiment_name: str, model_name: str | None, found_by: str = "a later run"
) -> Recovered:
    """Mark the pending versions and RUNNING runs whose process is gone (or, for a version, whose run ended),
    and the Prefect flow runs of those runs. `found_by`: who looked, for the Crashed state's message."""
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
            gone = f"the process running it ({owner.text()}) is gone"
            # The flow run first: the MLflow run marked KILLED is no longer found, so its flow run must be done.
            if (flow_run_id := tags.get("prefect_flow_run_id", NO_FLOW_RUN)) != NO_FLOW_RUN:
                lines += mark_flow_run_crashed(flow_run_id, f"{gone}; found by {found_by}")
                flow_runs.append(flow_run_id)
            end_abandoned_run(tracking_uri, run_id, gone)
            lines.append(f"marked MLflow run {run_id} KILLED: {gone}")
    return Recovered(tuple(lines), tuple(flow_runs))


def mark_flow_run_crashed(flow_run_id: str, message: str) -> list[str]:
    """The Prefect flow run of a dead process Crashed, with `message`, when it is not final yet (Running,
    Pending, Paused); the line saying so, or none (already final, or not in this Prefect database). Outside
    a flow run with no PREFECT_API_URL, Prefect opens PREFECT_HOME's database with a temporary server."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        try:
            found = client.read_flow_run(UUID(flow_run_id))
        except (ObjectNotFound, ValueError):
            return []  # another Prefect database, or no longer there
        if found.state is not None and found.state.is_final():
            return []
        client.set_flow_run_state(found.id, Crashed(message=message), force=True)
    state = found.state.name if found.state is not None else "no state"
    return [f"marked Prefect flow run {found.name} ({flow_run_id}) Crashed (was {state}): {message}"]
