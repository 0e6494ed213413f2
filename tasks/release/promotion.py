"""Promotion lifecycle: the gate under a lock, human approval, history, rollback, forced promotion.

Every move of the `production` alias happens inside `promotion_lock`, a Prefect global concurrency
limit of one slot per model, held in Prefect's database, so runs finishing together (in one process
or many sharing a Prefect server or PREFECT_HOME) decide one after another, each against the
production version the previous one left.
"""

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
from tasks.core.policy import ApprovalPolicy, person_at_terminal, terminal_actor
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
    read_approval_policy,
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
    OtherSpec,
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
    kind: str  # "gate", "rollback" (one step back), "rollback-to" (a chosen version), "forced" or "shadow"
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
    return terminal_actor()


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


def score_production(
    production: ModelVersionRef | None, splits: DataSplits, work_dir: Path, candidate: ModelVersionRef | None = None
) -> Baseline | OtherSpec | None:
    """Production's metrics on the candidate's test rows (None on the first run), scored with production's own spec:
    it reads its columns of these rows and knows their labels, else OtherSpec says what it cannot score. With the
    candidate's version, also whether the candidate is production's own model (an identical rerun)."""
    if production is None:
        return None
    name = f"production v{production.version}"
    spec = read_version_spec(production)
    if spec is None:
        return OtherSpec(name, "it records no spec (registered before specs existed), so its inputs are unknown")
    if problem := spec_difference(spec.dataset, splits.spec):
        return OtherSpec(name, problem)
    onnx_path = download_version_onnx(production, work_dir / f"production-v{production.version}")
    scored = DataSplits(spec.dataset, splits.train, splits.validation, splits.test)
    rows = f"{len(splits.test)} test rows both can score" + spec_extras(spec.dataset, splits.spec)
    same = same_model(production, candidate) if candidate is not None else ""
    return Baseline(name, score_model(onnx_path, scored), compared_on=rows, same_model=same)


def spec_difference(production: DatasetSpec, candidate: DatasetSpec) -> str | None:
    """Why production's model cannot score the candidate's test rows, or None when it can: the same target and
    task, every label of the candidate's among production's, every column production reads among the candidate's
    inputs (the split keeps only those)."""
    if (production.target.name, production.task) != (candidate.target.name, candidate.task):
        return (
            f"it predicts {production.task} target '{production.target.name}', the candidate"
            f" {candidate.task} target '{candidate.target.name}'"
        )
    known = set(production.label_texts())
    unknown = [label for label in candidate.label_texts() if label not in known]
    if unknown:
        return f"label{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} it never learned"
    missing = [column for column in production.input_columns if column not in candidate.input_columns]
    if missing:
        which = (
            f"column {missing[0]!r}, which it reads, is"
            if len(missing) == 1
            else f"columns {', '.join(map(repr, missing))}, which it reads, are"
        )
        return f"{which} gone from the data or ignored by the candidate's spec"
    return None


def spec_extras(production: DatasetSpec, candidate: DatasetSpec) -> str:
    """How two comparable specs differ, for the policy line: ' (the candidate also reads 'x')' or ''."""
    extra = [column for column in candidate.input_columns if column not in production.input_columns]
    labels = [label for label in production.label_texts() if label not in set(candidate.label_texts())]
    parts = [f"the candidate also reads {', '.join(map(repr, extra))}"] if extra else []
    parts += [f"production also knows {', '.join(map(repr, labels))}"] if labels else []
    return f" (specs differ: {'; '.join(parts)})" if parts else ""


def same_model(production: ModelVersionRef, candidate: ModelVersionRef) -> str:
    """How the candidate is known to be production's own model (the served ONNX file byte for byte, the file the
    service verifies before it answers), or '' when it is not."""
    checksum = candidate.tags.get("onnx_sha256")
    if not checksum or checksum != production.tags.get("onnx_sha256"):
        return ""
    data = candidate.tags.get("data_sha256")
    same_data = ", trained on the same data" if data and data == production.tags.get("data_sha256") else ""
    return f"served ONNX file identical, sha256 {checksum[:12]}{same_data}"


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
    tags["lineage.compared_with"] = decision.baseline.name if decision.baseline else f"none ({decision.policy})"
    if decision.duplicate_of:
        tags["duplicate_of"] = decision.duplicate_of
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
    """When the model's policy or the run asks for it, show the gate's preview and pause until a person approves
    or rejects, or the wait times out; the answer is tagged on the version at once (approval.*)."""
    policy = read_approval_policy(version.tracking_uri, version.name)
    if not (config.require_approval or policy.require_approval):
        return None
    production = score_production(find_version(version.tracking_uri, version.name), splits, work_dir)
    # The preview is every other check; the approval itself is judged again under the lock.
    preview = decide_promotion(evidence, production, config.model_copy(update={"require_approval": False}))
    if not preview.promote:
        return None  # the gate refuses as things stand: nobody is asked, and the locked decision refuses too
    timeout_s = approval_timeout(config, policy)
    who = ", ".join(policy.approvers) if policy.approvers else "anyone"
    print(f"waiting up to {timeout_s} s for approval of {version.uri} by {who} (resume the paused run in Prefect)")
    create_markdown_artifact(
        key="approval-request", markdown=f"Approve promotion of {version.uri}?\n\n{preview.report_markdown()}"
    )
    try:
        form = pause_flow_run(wait_for_input=ApprovalForm, timeout=timeout_s)
    except Exception as error:  # noqa: BLE001  a timeout fails the pause: record it as a rejection
        answer = Approval(False, "nobody", f"no answer within {timeout_s} s ({type(error).__name__})", timed_out=True)
    else:
        answer = Approval(form.approve, form.reviewer.strip(), form.comment)
    return record_approval(version, replace(answer, submitted_by=current_actor(), at=now_text()))


def approval_timeout(config: GateConfig, policy: ApprovalPolicy) -> int:
    """How long a run waits: the policy's wait where it requires approval (the model's owner decides), else the
    run's gate.approval_timeout_s."""
    return policy.approval_timeout_s if policy.require_approval else config.approval_timeout_s


def record_approval(version: ModelVersionRef, approval: Approval) -> Approval:
    """Tag the answer on the version (approval.answer, .reviewer, .comment, .recorded_by, .at): who said what,
    visible in the registry whatever the gate decides next."""
    answer = "timed out" if approval.timed_out else "approved" if approval.approved else "rejected"
    tags = {"answer": answer, "reviewer": approval.reviewer, "comment": approval.comment[:4000]}
    tags |= {"recorded_by": approval.submitted_by, "at": approval.at}
    tag_model_version(version, {f"approval.{key}": value for key, value in tags.items()})
    who = "" if approval.timed_out else f" by {approval.reviewer}"
    print(f"approval of {version.uri}: {answer}{who}: {approval.comment} (recorded by {approval.submitted_by})")
    return approval


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
        # The model's approval policy as it stands now, whatever the run's configuration asked for.
        evidence = replace(evidence, policy=read_approval_policy(version.tracking_uri, version.name))
        production = score_production(find_version(version.tracking_uri, version.name), splits, work_dir, version)
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


def rollback(tracking_uri: str, model_name: str, reason: str, to: str | None = None) -> AliasMove:
    """Move `production` one step back through its history (rollback_target), or to version `to`: one that was
    production before or passed its gate. Refuses when the alias was moved by hand since, because the history no
    longer says where production has been."""
    with promotion_lock(model_name):
        moves = alias_history(tracking_uri, model_name)
        current = find_version(tracking_uri, model_name)
        if problem := history_disagreement(moves, current):
            raise GreenlightError(
                f"'{model_name}': {problem}. Rollback does not guess which version was before it: choose one"
                " (`greenlight status`), then `greenlight promote VERSION --reason '...'` records the move."
            )
        if current is None:
            raise GreenlightError(f"'{model_name}' has no production version to roll back")
        version = to if to is not None else rollback_target(moves)
        if version is None:
            raise GreenlightError(
                f"'{model_name}' has no earlier production version to roll back to from v{current.version}: none"
                " served before it, or each was rolled back from already (`greenlight history`); `greenlight"
                " rollback --to VERSION` chooses one"
            )
        target = rollback_version(tracking_uri, model_name, version, moves, current)
        # A chosen version is a deliberate move, not a verdict on the one it leaves: only steps back mark it.
        return move_production(target, "rollback" if to is None else "rollback-to", reason)


def rollback_target(moves: list[dict[str, str]]) -> str | None:
    """Where the next rollback goes: the latest earlier production version that was not itself left by a step back
    (a version rolled back from was judged bad once: stepping back never returns to it), or None."""
    if not moves:
        return None
    current = moves[-1]["to_version"]
    left_by = {move["from_version"]: move["kind"] for move in moves}  # how each version last stopped serving
    for move in reversed(moves):
        version = move["to_version"]
        if version != current and left_by.get(version) != "rollback":
            return version
    return None


def rollback_version(
    tracking_uri: str, model_name: str, version: str, moves: list[dict[str, str]], current: ModelVersionRef
) -> ModelVersionRef:
    """The version a rollback may move production to: it was production before, or passed its gate; else a
    GreenlightError saying why not (nothing moves)."""
    if version == current.version:
        raise GreenlightError(f"v{version} is already the production version of '{model_name}': nothing to roll back")
    try:
        target = get_version(tracking_uri, model_name, version)
    except Exception as error:  # noqa: BLE001  MLflow raises several types for a missing version
        raise GreenlightError(f"'{model_name}' has no version {version} to roll back to") from error
    served = any(move["to_version"] == version for move in moves)
    verdict = target.tags.get("gate_verdict", "pending")
    if not served and verdict != "passed":
        why = target.tags.get("gate_reason", "its run is not done")
        raise GreenlightError(
            f"{target.uri} was never production and its gate did not pass ({verdict}: {why[:300]}): a rollback"
            f" returns only to a version that served or passed its gate. `greenlight promote {version} --reason"
            " '...'` overrides a gate, recorded as such"
        )
    return target


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
    approve_by_hand(target, reason)
    with promotion_lock(model_name):
        tag_model_version(target, {"forced_promotion": reason[:4000]})
        return move_production(target, "forced", reason)


def approve_by_hand(target: ModelVersionRef, reason: str) -> Approval | None:
    """Under a policy that requires approval, a promotion by hand is the approval of the person at the terminal:
    refused unless they are among the policy's approvers (any person when it names none), recorded as the reviewer.
    None where the policy asks for no approval."""
    policy = read_approval_policy(target.tracking_uri, target.name)
    if not policy.require_approval:
        return None
    person = person_at_terminal()
    if not policy.allows(person):
        raise GreenlightError(
            f"'{target.name}' requires approval by policy ({policy.describe()}), and {person} is not among its"
            f" approvers: one of {', '.join(policy.approvers)} promotes {target.uri} (`greenlight promote"
            f" {target.version} --reason '...'`, GREENLIGHT_ACTOR or their login names them), or approves a run's"
            " pause in Prefect; `greenlight policy` changes the approvers"
        )
    approval = Approval(True, person, f"promoted by hand: {reason}", current_actor(), now_text())
    return record_approval(target, approval)


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
    approve_by_hand(target, f"{reason}, judged by `greenlight promote`")
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
