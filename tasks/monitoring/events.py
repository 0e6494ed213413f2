"""Prefect events about a served version (`greenlight.drift.detected`, `greenlight.performance.dropped`), sent so that
the sender knows whether the server took them: an automation in deployments/prefect.yaml may turn one into a run.
"""

import os
from dataclasses import dataclass

from tasks.core.errors import GreenlightError


@dataclass(frozen=True)
class SentEvent:
    """What was sent and where: a line for the report and the command's output."""

    event: str
    api: str  # the server's /api address, or "the local Prefect" for an ephemeral one
    payload: dict

    def line(self) -> str:
        return f"event {self.event} sent to {self.api}"


def version_resource(model: str, version: str) -> dict[str, str]:
    """The resource an event is about: one model version (automations match on its id, e.g. greenlight.model.*)."""
    return {
        "prefect.resource.id": f"greenlight.model.{model}.{version}",
        "prefect.resource.name": f"{model} v{version}",
        "greenlight.model": model,
        "greenlight.version": str(version),
    }


def send_event(event) -> None:
    """POST a prefect.events.Event to the Prefect server's /events. Not emit_event: its background worker drops an
    event it cannot send with a log line, and the sender must know (the watcher tries the file again, the monitor
    says the alert did not go out)."""
    import httpx
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.request("POST", "/events", json=[event.model_dump(mode="json")])
    except httpx.HTTPError as error:
        api = os.environ.get("PREFECT_API_URL") or "the local Prefect"
        raise GreenlightError(f"the Prefect server at {api} did not take the event {event.event}: {error}") from error


def send_version_event(name: str, model: str, version: str, payload: dict) -> SentEvent:
    """Send event `name` about a model version with its payload; raises GreenlightError when the server refuses."""
    from prefect.events import Event

    full = {"model": model, "version": str(version), **payload}
    send_event(Event(event=name, resource=version_resource(model, version), payload=full))
    return SentEvent(name, os.environ.get("PREFECT_API_URL") or "the local Prefect", full)
