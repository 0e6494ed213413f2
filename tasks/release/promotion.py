"""Promotion lifecycle: the gate under a lock, human approval, history, rollback, forced promotion.

Every move of the `production` alias happens inside `promotion_lock`, a Prefect global concurrency
limit of one slot per model, held in Prefect's database, so runs finishing together (in one process
or many sharing a Prefect server or PREFECT_HOME) decide one after another, each against the
production version the previous one left.
"""

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from prefect import get_client, pause_flow_run, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.input import RunInput
from prefect.runtime import flow_run

from tasks.core.config import GateConfig
from tasks.core.errors import GreenlightError
from tasks.onnx.compress import CompressionResult
from tasks.onnx.runtime import ParityReport
from tasks.registry.client import (
    ModelVersionRef,
    TrackingRun,
    alias_history,
    download_version_onnx,
    find_version,
    get_version,
    log_files,
    move_production_alias,
    record_alias_move,
    set_run_tags,
    tag_model_version,
)
from tasks.release.gate import Approval, Baseline, GateDecision, ModelMetrics, decide_promotion, score_onnx_model
from tasks.release.serving_check import ServingCheck

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


def score_baseline(production: ModelVersionRef | None, pixels: np.ndarray, labels: np.ndarray, work_dir: Path):
    """Production's metrics on the candidate's test rows, or None on the first run."""
    if production is None:
        return None
    onnx_path = download_version_onnx(production, work_dir / f"production-v{production.version}")
    return Baseline(production.version, score_onnx_model(onnx_path, pixels, labels))


def record_decision(run: TrackingRun, version: ModelVersionRef, decision: GateDecision, work_dir: Path):
    """Gate report as JSON + markdown on the run, and as tags + description on the version."""
    report_json = decision.write_json(work_dir / "gate_report.json")
    report_md = work_dir / "gate_report.md"
    report_md.write_text(decision.report_markdown())
    log_files(run, [report_json, report_md], "gate")
    tags = {"gate_verdict": decision.verdict, "gate_reason": decision.reason[:4000], "gate_policy": decision.policy}
    tags |= {
        f"gate.{c.name}": f"{c.value:.6g} {c.comparison} {c.threshold:.6g}: {'pass' if c.passed else 'FAIL'}"
        for c in decision.checks
    }
    set_run_tags(run, {"gate_verdict": decision.verdict, "model_version": version.version})
    return tag_model_version(version, tags, description=decision.report_markdown())


@task(name="request_approval", cache_policy=NO_CACHE)
def request_approval(
    version: ModelVersionRef,
    candidate: ModelMetrics,
    compression: CompressionResult,
    parity: ParityReport,
    serving: ServingCheck | None,
    config: GateConfig,
    pixels: np.ndarray,
    labels: np.ndarray,
    work_dir: Path,
) -> Approval | None:
    """When asked for, show the gate's preview and pause until a person approves or rejects."""
    if not config.require_approval:
        return None
    baseline = score_baseline(find_version(version.tracking_uri, version.name), pixels, labels, work_dir)
    preview = decide_promotion(candidate, compression, parity, serving, baseline, config)
    if not preview.promote:
        return None  # the gate refuses anyway: nobody needs to be asked
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
    candidate: ModelMetrics,
    compression: CompressionResult,
    parity: ParityReport,
    serving: ServingCheck | None,
    approval: Approval | None,
    config: GateConfig,
    pixels: np.ndarray,
    labels: np.ndarray,
    work_dir: Path,
) -> GateDecision:
    """Under the lock: re-read production, score it on the same rows, decide, record, maybe move the alias."""
    with promotion_lock(version.name):
        production = find_version(version.tracking_uri, version.name)
        baseline = score_baseline(production, pixels, labels, work_dir)
        decision = decide_promotion(candidate, compression, parity, serving, baseline, config, approval)
        record_decision(run, version, decision, work_dir)
        if decision.promote:
            move_production(version, "gate", decision.reason)
    create_markdown_artifact(key="gate-report", markdown=decision.report_markdown(), description="Promotion gate")
    return decision


def rollback(tracking_uri: str, model_name: str, reason: str) -> AliasMove:
    """Move `production` back to the version it pointed to before its last move."""
    with promotion_lock(model_name):
        moves = alias_history(tracking_uri, model_name)
        current = find_version(tracking_uri, model_name)
        if current is None or not moves or moves[-1].get("from_version") in (None, "None"):
            raise GreenlightError(f"'{model_name}' has no earlier production version to roll back to")
        target = get_version(tracking_uri, model_name, moves[-1]["from_version"])
        return move_production(target, "rollback", reason)


def force_promote(tracking_uri: str, model_name: str, version: str, reason: str) -> AliasMove:
    """Promote a version by hand, whatever its gate said; the reason is mandatory and recorded."""
    if not reason.strip():
        raise GreenlightError("a forced promotion needs --reason: say why the gate is being overridden")
    with promotion_lock(model_name):
        try:
            target = get_version(tracking_uri, model_name, version)
        except Exception as error:  # noqa: BLE001  MLflow raises several types for a missing version
            raise GreenlightError(f"{model_name} has no version {version}: {error}") from error
        tag_model_version(target, {"forced_promotion": reason[:4000]})
        return move_production(target, "forced", reason)
