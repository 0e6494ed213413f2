"""`greenlight show VERSION`: one version's verdict, signature, lineage and gate report, as a person reads them."""

import os
from datetime import UTC, datetime

from tasks.core.keys import key_id, load_verify_key, signed_payload, verify
from tasks.core.records import LINEAGE_TAG_PREFIX
from tasks.model.metrics import HEADLINE, METRIC_TITLES
from tasks.monitoring.shadow_evidence import ShadowEvidence
from tasks.registry.client import VersionRecord, read_version_spec
from tasks.release.handoff import FORCED_EXPORT_TAG


def signature_text(record: VersionRecord) -> str:
    """Whether the version is signed, and, where GREENLIGHT_VERIFY_KEY_FILE is set here, whether it verifies."""
    tags = record.ref.tags
    signature = tags.get("signature")
    if signature in (None, "", "none"):
        why = (
            "no GREENLIGHT_SIGNING_KEY_FILE was set when it was registered"
            if signature == "none"
            else "no signature tag"
        )
        return f"UNSIGNED ({why}); a service given GREENLIGHT_VERIFY_KEY_FILE refuses it"
    text = f"signed with key {tags.get('signature_key_id', '?')}"
    public = load_verify_key(os.environ)
    if public is None:
        return f"{text}; not checked here (set GREENLIGHT_VERIFY_KEY_FILE to check it)"
    spec = read_version_spec(record.ref)
    spec_json = spec.model_dump(mode="json") if spec is not None else None
    payload = signed_payload(tags.get("onnx_sha256", ""), spec_json, record.ref.name, record.ref.version)
    problem = verify(public, payload, signature)
    if problem is None:
        return f"{text}: VALID under the verify key {key_id(public)}"
    return f"{text}: INVALID under the verify key {key_id(public)} ({problem}): the entry changed after signing"


def metrics_text(tags: dict[str, str]) -> str:
    """The served file's headline test metrics, as the gate recorded them on the version: for classification
    balanced accuracy, ROC AUC, PR AUC and the minority's F1 beside accuracy, which alone hides a model that
    never answers a rare class."""
    shown = [name for name in HEADLINE.get(tags.get("task", ""), ()) if name in tags]
    if not shown:
        return "none recorded (the gate has not judged this version)"
    return ", ".join(f"{METRIC_TITLES[name]} {float(tags[name]):.4f}" for name in shown) + " (served file, test rows)"


def live_drift_text(tags: dict[str, str]) -> str:
    """The latest `greenlight monitor` check of the version (its monitor.* tags), or that there was none."""
    if "monitor.drift_status" not in tags:
        return "not checked (greenlight monitor)"
    when, rows = tags.get("monitor.checked_at", "?"), tags.get("monitor.rows", "?")
    found = f"{tags['monitor.drift_status']} at {when} on {rows} rows"
    return f"{found}: {tags.get('monitor.worst_features', '')}; report {tags.get('monitor.report', '?')}"


def decisions_text(tags: dict[str, str]) -> list[str]:
    """What people decided about the version, as recorded on it: the human review (approval.*: answer, reviewer,
    who recorded it, when), a forced promotion and a forced export, each with its reason."""
    lines = []
    if "approval.answer" in tags:
        answer, reviewer = tags["approval.answer"], tags.get("approval.reviewer", "?")
        who = "" if answer == "timed out" else f" by {reviewer}"
        recorded = f"recorded by {tags.get('approval.recorded_by', '?')} at {tags.get('approval.at', '?')}"
        lines.append(f"review        {answer}{who}: {tags.get('approval.comment', '')} ({recorded})")
    if "forced_promotion" in tags:
        lines.append(f"forced        promoted by hand: {tags['forced_promotion']}")
    if FORCED_EXPORT_TAG in tags:
        lines.append(f"forced        exported unjudged: {tags[FORCED_EXPORT_TAG]}")
    return lines


def render_version(record: VersionRecord, shadow: ShadowEvidence | None = None) -> str:
    ref, tags = record.ref, record.ref.tags
    created = datetime.fromtimestamp(record.created_ms / 1000, UTC).isoformat(timespec="seconds")
    aliases = ", ".join(f"@{a}" for a in record.aliases) or "none"
    lines = [
        f"{ref.uri}   aliases: {aliases}",
        f"gate          {tags.get('gate_verdict', '?')}: {tags.get('gate_reason', '')}",
        f"test metrics  {metrics_text(tags)}",
        f"registered    {created} by MLflow run {ref.run_id} ({record.run_status})",
        f"served file   {tags.get('compression', '?')} ONNX, sha256 {tags.get('onnx_sha256', '?')}",
        f"bento         {tags.get('bento_tag', 'none')}",
        f"signature     {signature_text(record)}",
        f"live drift    {live_drift_text(tags)}",
        *decisions_text(tags),
        "lineage",
    ]
    lineage = {k.removeprefix(LINEAGE_TAG_PREFIX): v for k, v in tags.items() if k.startswith(LINEAGE_TAG_PREFIX)}
    if not lineage:
        lines.append("  none recorded (registered before lineage was recorded)")
    width = max((len(k) for k in lineage), default=0)
    lines += [f"  {key:<{width}}  {value}" for key, value in sorted(lineage.items())]
    if shadow is not None:  # its answers to live requests beside production's (`greenlight shadow`)
        lines += ["shadow", *(f"  {line}" for line in shadow.lines())]
    lines += ["gate report", *(f"  {line}" for line in (record.description or "none yet").splitlines())]
    return "\n".join(lines)
