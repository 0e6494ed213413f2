"""Records left by a run that died (kill -9, a lost machine, an OOM kill): found and marked as such.

Every pipeline run tags its MLflow run, and the version it registers, with its owner: host, pid and the
process's start time. A version still `pending` whose owner is gone, or whose run already ended, was never
judged by the gate and never will be: it becomes `abandoned` (the gate cannot promote it, nor can
`greenlight promote`), its MLflow run KILLED, and its Prefect flow run Crashed. This runs at the start of
every pipeline run and of every command that shows versions: the next time anything looks at it.
"""

import json
import os
import socket
from dataclasses import asdict, dataclass

import psutil

from tasks.registry.client import (
    end_abandoned_run,
    run_status,
    running_runs,
    tag_model_version,
    versions_with_verdict,
)

OWNER_TAG = "greenlight.owner"


@dataclass(frozen=True)
class Owner:
    """The process that runs a pipeline run: pid reuse is told apart by the start time."""

    host: str
    pid: int
    started: float

    def text(self) -> str:
        return f"pid {self.pid} on {self.host}"


def current_owner() -> str:
    """This process as an owner tag value."""
    me = psutil.Process(os.getpid())
    return json.dumps(asdict(Owner(socket.gethostname(), me.pid, round(me.create_time(), 2))))


def read_owner(raw: str | None) -> Owner | None:
    try:
        return Owner(**json.loads(raw)) if raw else None
    except (TypeError, ValueError):
        return None


def is_alive(owner: Owner | None) -> bool:
    """The owner process runs on this host now (same pid, same start time)."""
    if owner is None or owner.host != socket.gethostname():
        return False
    try:
        return round(psutil.Process(owner.pid).create_time(), 2) == owner.started
    except psutil.NoSuchProcess:
        return False


def is_dead(owner: Owner | None) -> bool:
    """The owner is known to be gone: on this host, and no process with its pid and start time."""
    return owner is not None and owner.host == socket.gethostname() and not is_alive(owner)


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
