"""Promotion lifecycle: the gate under a lock, human approval, history, rollback, forced promotion.

Every move of the `production` alias happens inside `promotion_lock`, a Prefect global concurrency
limit of one slot per model, held in Prefect's database, so runs finishing together (in one process
or many sharing a Prefect server or PREFECT_HOME) decide one after another, each against the
production version the previous one left.
"""

import getpass
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prefect import get_client, pause_flow_run, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.input import RunInput
from prefect.runtime import flow_run

from tasks.core.config import GateConfig, ShadowGateConfig
from tasks.core.errors import GreenlightError
from tasks.core.spec import DatasetSpec
from tasks.data.split import DataSplits
from tasks.registry.client import (
    ModelVersionRef,
    TrackingRun,
    alias_history,
    describe_version,
    download_version_onnx,
    find_version,
    get_version,
    log_files,
    move_production_alias,
    read_version_spec,
    record_alias_move,
    remove_shadow_alias,
    set_run_tags,
    tag_model_version,
)
from tasks.release.gate import (
    Approval,
    Baseline,
    GateCheck,
    GateDecision,
    GateEvidence,
    ShadowFigures,
    decide_promotion,
    failed_only_shadow,
    score_model,
    shadow_checks,
)
from tasks.release.verdicts import never_judged

LOCK_TIMEOUT_S = 900


@dataclass(frozen=True)
class AliasMove:
    """One move of `production`: from which version to which, when, why, and who or what did it."""

    from_version: str | None
    to_version: str
    at: str
    kind: str  # "gate", "rollback" or "forced"
    reason: str
    actor: str


class ApprovalForm(RunInput):
    """The form a reviewer fills in the Prefect UI when a run pauses before promotion."""

    approve: bool
    reviewer: str
    comment: str = ""


def current_actor() -> str:
    """The flow run that acts, or the person at the terminal (GREENLIGHT_ACTOR overrides)."""
    if run_id := flow_run.get_id():
        return f"flow run {flow_run.get_name()} ({run_id})"
    return os.environ.get("GREENLIGHT_ACTOR") or f"user {getpass.getuser()}"


def ensure_lock_exists(name: str) -> None:
    """Create the one-slot limit unless it exists; a run creating it at the same moment is fine."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except (ObjectAlreadyExists, httpx.HTTPStatusError):
            # Two creators: the loser gets a conflict (SQLite answers it as a 500). It exists now, or this raises.
            client.read_global_concurrency_limit_by_name(name)


@contextmanager
def promotion_lock(model_name: str) -> Iterator[None]:
    """Hold the model's one promotion slot; creates the limit on first use."""
    name = f"greenlight-promotion-{model_name}"
    ensure_lock_exists(name)
    with concurrency(name, occupy=1, timeout_seconds=LOCK_TIMEOUT_S, strict=True):
        yield


def move_production(target: ModelVersionRef, kind: str, reason: str) -> AliasMove:
    """Point `production` at target and record the move; call with promotion_lock held."""
    previous = find_version(target.tracking_uri, target.name)
    move = AliasMove(
        from_version=previous.version if previous else None,
        to_version=target.version,
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        kind=kind,
        reason=reason,
        actor=current_actor(),
    )
    move_production_alias(target)
    record_alias_move(target.tracking_uri, target.name, {k: str(v) for k, v in move.__dict__.items()})
    tag_model_version(target, {"promoted_at": move.at, "promotion_kind": kind, "promotion_reason": reason[:4000]})
    return move


def score_production(production: ModelVersionRef | None, splits: DataSplits, work_dir: Path) -> Baseline | None:
    """Production's metrics on the candidate's test rows; None on the first run, or when production answers
    another spec (other columns, labels or task), which these rows cannot score: the report says so."""
    if production is None:
        return None
    spec = read_version_spec(production)
    if spec is None or not comparable(spec.dataset, splits.spec):
        print(f"production v{production.version} answers another spec: not compared on these rows")
        return None
    onnx_path = download_version_onnx(production, work_dir / f"production-v{production.version}")
    scored = DataSplits(spec.dataset, splits.train, splits.validation, splits.test)
    return Baseline(f"production v{production.version}", score_model(onnx_path, scored))


def comparable(production: DatasetSpec, candidate: DatasetSpec) -> bool:
    """Production can be scored on the candidate's test rows: same task and labels, its columns present."""
    same_target = (production.target.name, production.task, production.label_texts()) == (
        candidate.target.name,
        candidate.task,
        candidate.label_texts(),
    )
    return same_target and set(production.input_columns) <= set(candidate.input_columns)


def record_decision(
    run: TrackingRun, version: ModelVersionRef, decision: GateDecision, work_dir: Path, config: GateConfig | None = None
):
    """Gate report as JSON + markdown on the run, and as tags + description on the version (with the gate
    configuration it was judged with: `greenlight promote` re-judges shadow checks with the same bars)."""
    report_json = decision.write_json(work_dir / "gate_report.json")
    report_md = work_dir / "gate_report.md"
    report_md.write_text(decision.report_markdown())
    log_files(run, [report_json, report_md], "gate")
    tags = {"gate_verdict": decision.verdict, "gate_reason": decision.reason[:4000], "gate_policy": decision.policy}
    if config is not None:
        tags[GATE_CONFIG_TAG] = config.model_dump_json()
    # The versions this one was measured against: production at the gate, and the drift reference.
    tags["lineage.compared_with"] = decision.baseline.name if decision.baseline else "none (first run policy)"
    reference = decision.data.reference_version if decision.data else None
    tags["lineage.drift_reference"] = f"production v{reference}" if reference else "none"
    tags |= check_tags(decision.checks)
    # The test metrics the gate judged, as tags: `greenlight status` and the registry UI list them.
    tags |= {name: f"{value:.6f}" for name, value in decision.candidate.values.items() if "." not in name}
    set_run_tags(run, {"gate_verdict": decision.verdict, "model_version": version.version})
    return tag_model_version(version, tags, description=decision.report_markdown())


# The gate configuration a version was judged with, as JSON (GateConfig): what `greenlight promote` re-judges against.
GATE_CONFIG_TAG = "gate_config"


def with_shadow_hint(decision: GateDecision, version: ModelVersionRef) -> GateDecision:
    """A refusal for the lack of shadow evidence alone says what to do next, with the version's number."""
    if not failed_only_shadow(decision.failed_checks()):
        return decision
    hint = (
        f"{decision.reason}: no shadow evidence yet; registered, not promoted. Shadow it on live traffic"
        f" (`greenlight shadow {version.version} --model-name {version.name}` beside a running `greenlight serve`),"
        f" then `greenlight promote {version.version} --model-name {version.name}` judges the evidence"
    )
    return replace(decision, reason=hint)


@task(name="request_approval", cache_policy=NO_CACHE)
def request_approval(
    version: ModelVersionRef, evidence: GateEvidence, config: GateConfig, splits: DataSplits, work_dir: Path
) -> Approval | None:
    """When asked for, show the gate's preview and pause until a person approves or rejects."""
    if not config.require_approval:
        return None
    production = score_production(find_version(version.tracking_uri, version.name), splits, work_dir)
    # The preview is every other check; the approval itself is judged again under the lock.
    preview = decide_promotion(evidence, production, config.model_copy(update={"require_approval": False}))
    if not preview.promote:
        return None  # the gate refuses as things stand: nobody is asked, and the locked decision refuses too
    create_markdown_artifact(
        key="approval-request", markdown=f"Approve promotion of {version.uri}?\n\n{preview.report_markdown()}"
    )
    try:
        form = pause_flow_run(wait_for_input=ApprovalForm, timeout=config.approval_timeout_s)
    except Exception as error:  # noqa: BLE001  a timeout fails the pause: record it as a rejection
        return Approval(False, "nobody", f"no answer within {config.approval_timeout_s} s ({type(error).__name__})")
    return Approval(form.approve, form.reviewer, form.comment)


@task(name="promote_if_better", cache_policy=NO_CACHE)
def promote_if_better(
    run: TrackingRun,
    version: ModelVersionRef,
    evidence: GateEvidence,
    config: GateConfig,
    splits: DataSplits,
    work_dir: Path,
) -> GateDecision:
    """Under the lock: re-read production, score it on the same rows, decide, record, maybe move the alias."""
    with promotion_lock(version.name):
        production = score_production(find_version(version.tracking_uri, version.name), splits, work_dir)
        decision = with_shadow_hint(decide_promotion(evidence, production, config), version)
        record_decision(run, version, decision, work_dir, config)
        if decision.promote:
            move_production(version, "gate", decision.reason)
    create_markdown_artifact(key="gate-report", markdown=decision.report_markdown(), description="Promotion gate")
    return decision


def history_disagreement(moves: list[dict[str, str]], current: ModelVersionRef | None) -> str | None:
    """What is wrong when the alias is not where Greenlight's last recorded move put it (a move by hand in
    the MLflow UI or API, which records nothing), else None."""
    if not moves:
        return None if current is None else f"production points to v{current.version} but no move was recorded"
    last = moves[-1]["to_version"]
    if current is None:
        return f"production was removed outside Greenlight: the last recorded move put it at v{last}"
    if current.version != last:
        return (
            f"production points to v{current.version}, but the last recorded move put it at v{last}"
            f" ({moves[-1]['at']}):"
            " it was moved outside Greenlight (the MLflow UI or API), which records no history"
        )
    return None


def rollback(tracking_uri: str, model_name: str, reason: str) -> AliasMove:
    """Move `production` back to the version it pointed to before its last move; refuses when the alias
    was moved by hand since, because 'the previous version' is then unknown."""
    with promotion_lock(model_name):
        moves = alias_history(tracking_uri, model_name)
        current = find_version(tracking_uri, model_name)
        if problem := history_disagreement(moves, current):
            raise GreenlightError(
                f"'{model_name}': {problem}. Rollback does not guess which version was before it: choose one"
                " (`greenlight status`), then `greenlight promote VERSION --reason '...'` records the move."
            )
        if current is None or not moves or moves[-1].get("from_version") in (None, "None"):
            raise GreenlightError(f"'{model_name}' has no earlier production version to roll back to")
        target = get_version(tracking_uri, model_name, moves[-1]["from_version"])
        return move_production(target, "rollback", reason)


def force_promote(tracking_uri: str, model_name: str, version: str, reason: str) -> AliasMove:
    """Promote a version by hand, whatever its gate said; the reason is mandatory and recorded."""
    if not reason.strip():
        raise GreenlightError("a forced promotion needs --reason: say why the gate is being overridden")
    try:
        target = get_version(tracking_uri, model_name, version)
    except Exception as error:  # noqa: BLE001  MLflow raises several types for a missing version
        raise GreenlightError(f"{model_name} has no version {version}: {error}") from error
    if problem := never_judged(target):
        raise GreenlightError(f"{problem}, so it cannot be promoted, even by hand")
    with promotion_lock(model_name):
        tag_model_version(target, {"forced_promotion": reason[:4000]})
        return move_production(target, "forced", reason)


class ShadowEvidenceLacking(GreenlightError):
    """`greenlight promote` re-judged a version's shadow checks on the captured evidence, and it falls short."""

    exit_code = 3  # as a gate refusal of `greenlight run`


def awaits_shadow_evidence(target: ModelVersionRef) -> bool:
    """The version's recorded gate refused it on the shadow checks alone (gate.<check> tags ending in FAIL)."""
    tags = target.tags
    failed = [
        key.removeprefix("gate.") for key, value in tags.items() if key.startswith("gate.") and value.endswith("FAIL")
    ]
    return tags.get("gate_verdict") == "failed" and failed_only_shadow(failed)


def recorded_shadow_config(target: ModelVersionRef) -> ShadowGateConfig:
    """The shadow bars the version's gate judged it with (the gate_config tag)."""
    raw = target.tags.get(GATE_CONFIG_TAG)
    if raw is None:
        raise GreenlightError(
            f"{target.uri} records no gate configuration ({GATE_CONFIG_TAG} tag): its shadow checks cannot be"
            " judged again; promote it by hand with --reason"
        )
    return GateConfig.model_validate_json(raw).shadow


def promote_on_shadow_evidence(target: ModelVersionRef, evidence: ShadowFigures) -> AliasMove:
    """Judge the shadow checks again on the evidence captured since, with the bars the version was judged with:
    passing moves `production` to it (and ends its shadowing), lacking raises ShadowEvidenceLacking, alias unmoved."""
    checks = shadow_checks(evidence, recorded_shadow_config(target))
    figures = "; ".join(check.line() for check in checks)
    if not all(check.passed for check in checks):
        raise ShadowEvidenceLacking(
            f"{target.uri} was refused for lack of shadow evidence, and still lacks it: {figures}. Keep it shadowed"
            f" under live traffic (`greenlight show {target.version}` shows the figures), then promote again"
        )
    reason = f"shadow evidence: {evidence.requests} requests, agreement {evidence.agreement:.4f}"
    # The registry UI shows the description as the gate report: the refusal stays, the verdict on the evidence follows.
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    report = describe_version(target.tracking_uri, target.name, target.version).description
    report += f"\n\n## Shadow evidence, judged {stamp}: passed\n\n" + "\n".join(f"- {c.line()}" for c in checks)
    with promotion_lock(target.name):
        tags = {"gate_verdict": "passed", "gate_reason": reason} | check_tags(checks)
        tag_model_version(target, tags, description=report)
        move = move_production(target, "shadow", reason)
    remove_shadow_alias(target.tracking_uri, target.name, only=target.version)  # production now: nothing to shadow
    return move


def check_tags(checks: Iterable[GateCheck]) -> dict[str, str]:
    """Each check as a version tag: gate.<name> = "<value> <comparison> <threshold>: pass|FAIL"."""
    return {
        f"gate.{c.name}": f"{c.value:.6g} {c.comparison} {c.threshold:.6g}: {'pass' if c.passed else 'FAIL'}"[:5000]
        for c in checks
    }
