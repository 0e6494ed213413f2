"""What a version's gate said, read from its `gate_verdict` tag: judged (passed, failed) or never judged.

A version is `pending` from registration until its gate decides, `abandoned` when the run that registered it died
first (tasks/registry/recovery.py), `error` when that run failed (tasks/registry/tracking.py); a verdict never goes
back to one of these. Promotion and every export ask here, without Prefect (an export imports none).
"""

from tasks.registry.client import ModelVersionRef

NEVER_JUDGED = ("pending", "abandoned", "error")


def never_judged(target: ModelVersionRef) -> str | None:
    """Why the version was never built and checked like a candidate, or None when a gate judged it."""
    verdict = target.tags.get("gate_verdict", "pending")
    if verdict not in NEVER_JUDGED:
        return None
    why = target.tags.get("gate_reason", "its run is not done")
    return f"{target.uri} has no gate verdict ({verdict}: {why}): it was never built and checked like a candidate"
