"""Promotion gate: every rule explicit, every threshold's origin named, evidence kept with the version.

The gate judges one value, GateEvidence, with inclusive comparisons: by default relative bars (beat the trivial
baseline, do not fall behind production on the same rows), absolute ones where configured (docs/promotion.md).
"""

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import ChangeThreshold, GateConfig, ShadowGateConfig
from tasks.core.policy import ApprovalPolicy
from tasks.core.spec import DatasetSpec
from tasks.data.report import DataVerdict
from tasks.data.split import DataSplits
from tasks.model.families import get_family
from tasks.model.metrics import METRIC_TITLES, ModelMetrics, baseline_outputs, score_outputs
from tasks.onnx.compress import CompressionResult
from tasks.onnx.runtime import ParityReport, run_model
from tasks.release.serving_check import ServingCheck

# Absolute thresholds of the run configuration: (config field, metric, ">=" or "<=").
ABSOLUTE = (
    ("min_test_accuracy", "test_accuracy", ">="),
    ("min_test_macro_f1", "test_macro_f1", ">="),
    ("min_class_recall", "test_min_class_recall", ">="),
    ("min_test_r2", "test_r2", ">="),
    ("max_test_rmse", "test_rmse", "<="),
    ("max_test_mae", "test_mae", "<="),
)
# When the configuration names no change threshold: accuracy may slip half a point against production
# (a retrain on fresher data is worth that), R^2 one hundredth.
DEFAULT_CHANGE = {
    "classification": ChangeThreshold(metric="test_accuracy", min_absolute_change=-0.005),
    "regression": ChangeThreshold(metric="test_r2", min_absolute_change=-0.01),
}


@dataclass(frozen=True)
class Baseline:
    """A model the candidate is compared with on the same test rows: production, or the trivial one."""

    name: str  # "production v3" or "majority class 'Adelie'"
    metrics: ModelMetrics
    # Production only: the rows both models scored and how their specs differ ("36 test rows both can score").
    compared_on: str = ""
    # Production only, non-empty when the candidate is production's own model, and how that is known (the served
    # ONNX file's sha256): an identical rerun, which must not move the alias to a copy of what already answers.
    same_model: str = ""


@dataclass(frozen=True)
class OtherSpec:
    """Production answers a spec whose model cannot score the candidate's test rows (labels it never learned, a
    column it reads that the candidate's rows lack, another target): nothing to compare on, so promotion waits for
    an explicit gate.accept_new_spec (`greenlight run --accept-new-spec`) instead of passing as a first run."""

    name: str  # "production v3"
    why: str  # "label 'c' it never learned"


@dataclass(frozen=True)
class Approval:
    """A person's answer to the pause before promotion."""

    approved: bool
    reviewer: str  # the name typed into the form: Prefect's API records no user of its own
    comment: str
    submitted_by: str = ""  # who recorded the answer: the waiting flow run (form), or the user at the terminal
    at: str = ""  # when the answer came (ISO, UTC)
    timed_out: bool = False  # nobody answered within the timeout: a refusal by nobody


@dataclass(frozen=True)
class HeldOutScores:
    """The test-split metrics the gate judges: the served candidate, its fp32 model, and the trivial baseline."""

    candidate: ModelMetrics
    fp32: ModelMetrics
    trivial: Baseline


class ShadowFigures(Protocol):
    """What the shadow checks read of a candidate's shadow evidence (tasks/monitoring/shadow_evidence.py's
    ShadowEvidence; the monitoring stage comes after this one, so the gate names only the figures it needs)."""

    requests: int
    agreement: float | None  # None: no rows to agree on
    where: str  # the folder the evidence was read from


@dataclass(frozen=True)
class GateEvidence:
    """Everything the gate judges about one candidate, gathered once."""

    scores: HeldOutScores
    compression: CompressionResult
    parity: ParityReport
    serving: ServingCheck | None  # None: gate.serving.enabled is false, the bento was not started
    data: DataVerdict | None = None  # None only where no data was checked (unit tests of other rules)
    approval: Approval | None = None
    family: str | None = None  # the trained model's family, whose size bar applies unless the config sets one
    shadow: ShadowFigures | None = None  # None in a training run: no live traffic has seen the new version yet
    policy: ApprovalPolicy | None = None  # the registered model's approval policy, read under the promotion lock

    def with_approval(self, approval: Approval | None) -> "GateEvidence":
        return replace(self, approval=approval)


@dataclass(frozen=True)
class GateCheck:
    """One rule: the measured value, its threshold, where the threshold came from, and the verdict.

    A check that did not run (ran=False) has no value; it fails when it was required (passed=False) and
    is only reported when the configuration switched it off (passed=True)."""

    name: str
    value: float
    comparison: str  # ">=" or "<=", always inclusive
    threshold: float
    passed: bool
    source: str = ""
    ran: bool = True

    @property
    def verdict(self) -> str:
        if not self.ran:
            return "NOT RUN" if self.passed else "NOT RUN (required): FAIL"
        return "PASS" if self.passed else "FAIL"

    def value_text(self) -> str:
        return f"{self.value:.6g}" if self.ran else "-"

    def line(self) -> str:
        origin = f"  ({self.source})" if self.source else ""
        return f"{self.verdict}  {self.name}: {self.value_text()} {self.comparison} {self.threshold:.6g}{origin}"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    policy: str  # which rule set decided: "first run: <policy>" or "compared with production vN"
    checks: tuple[GateCheck, ...]
    candidate: ModelMetrics
    baseline: Baseline | None
    approval: Approval | None = None
    data: DataVerdict | None = None
    served: str = ""  # the compression candidate served and why (CompressionResult.reason)
    trivial: Baseline | None = None  # the trivial model on the same test rows (None: decided without it)
    compression_steps: tuple[str, ...] = ()  # why pruning, distillation and INT8 ran or were skipped
    duplicate_of: str = ""  # "production v3": the candidate is that version's model; the alias stays

    @property
    def verdict(self) -> str:
        if self.duplicate_of:
            return "duplicate"
        return "passed" if self.promote else "failed"

    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def report_markdown(self) -> str:
        shown = {"PASS": "pass", "FAIL": "**FAIL**", "NOT RUN": "not run"}
        rows = [
            f"| {c.name} | {c.value_text()} | {c.comparison} {c.threshold:.6g} |"
            f" {shown.get(c.verdict, '**NOT RUN (required)**')} | {c.source} |"
            for c in self.checks
        ]
        head = "| check | value | threshold | verdict | threshold from |\n|---|---|---|---|---|\n"
        baseline = self.baseline.name if self.baseline else "no comparable production version"
        approval = ""
        if self.approval is not None:
            answer = "approved" if self.approval.approved else "rejected"
            approval = f"\n\nHuman review: {answer} by {self.approval.reviewer}: {self.approval.comment}"
        summary = f"**Gate {self.verdict}**: {self.reason}\n\nPolicy: {self.policy} (baseline: {baseline})."
        data = f"\n\n{self.data.markdown()}" if self.data is not None else ""
        served = f"\n\nServed file: {self.served}." if self.served else ""
        steps = "\n".join(f"- {line}" for line in self.compression_steps)
        served += f"\n\nCompression steps:\n{steps}" if steps else ""
        return f"{summary}{data}{served}\n\n{self.metrics_markdown()}\n\n{head}" + "\n".join(rows) + approval

    def metrics_markdown(self) -> str:
        """The served file's headline test metrics beside the trivial model's: on an imbalanced table accuracy
        alone hides a model that never answers the minority (balanced accuracy, ROC AUC and minority F1 show it)."""
        rows = f" on {self.candidate.rows} rows" if self.candidate.rows else ""
        text = f"Test metrics of the served file{rows}: {self.candidate.summary()}."
        if self.trivial is not None:
            text += f" Trivial baseline ({self.trivial.name}): {self.trivial.metrics.summary(minority=False)}."
        return text

    def write_json(self, path: Path) -> Path:
        path.write_text(json.dumps({"verdict": self.verdict, **asdict(self)}, indent=2, default=str))
        return path


def compare(name: str, value: float, comparison: str, threshold: float, source: str) -> GateCheck:
    passed = value >= threshold if comparison == ">=" else value <= threshold
    return GateCheck(name, float(value), comparison, float(threshold), bool(passed), source)


def not_run(name: str, comparison: str, threshold: float, why: str, required: bool) -> GateCheck:
    """A check whose evidence does not exist: it fails when required, and says why either way."""
    return GateCheck(name, math.nan, comparison, float(threshold), not required, why, ran=False)


def score_model(path: Path, splits: DataSplits) -> ModelMetrics:
    """An ONNX model's metrics on the test rows of the splits (the minority class: the training split's)."""
    outputs = run_model(path, splits.feeds("test"))
    return score_outputs(splits.spec, outputs, splits.targets("test"), splits.targets("train"))


def held_out_scores(
    spec: DatasetSpec, served: np.ndarray, fp32: np.ndarray, targets: np.ndarray, train_targets: np.ndarray
) -> HeldOutScores:
    """The served file's and its fp32 model's outputs on the test rows scored beside the trivial model's,
    which is learned from the training targets (as is the minority class every model is scored on)."""
    outputs, what = baseline_outputs(spec, train_targets, len(targets))
    trivial = Baseline(what, score_outputs(spec, outputs, targets, train_targets))
    return HeldOutScores(
        score_outputs(spec, served, targets, train_targets), score_outputs(spec, fp32, targets, train_targets), trivial
    )


@task(name="score_candidate", cache_policy=NO_CACHE)
def score_candidate(compression: CompressionResult, splits: DataSplits) -> HeldOutScores:
    """The served candidate, its fp32 model and the trivial baseline on the test rows: what will answer is
    what the gate judges, on rows that chose nothing (compression chose on the validation rows)."""
    fp32 = next(c for c in compression.candidates if c.name == "fp32")
    feeds = splits.feeds("test")
    served, reference = run_model(compression.chosen.path, feeds), run_model(fp32.path, feeds)
    return held_out_scores(splits.spec, served, reference, splits.targets("test"), splits.targets("train"))


def absolute_checks(candidate: ModelMetrics, config: GateConfig) -> list[GateCheck]:
    """The thresholds the run configuration sets for this task's metrics."""
    return [
        compare(metric, candidate.value(metric), comparison, getattr(config, field), f"gate.{field}")
        for field, metric, comparison in ABSOLUTE
        if getattr(config, field) is not None and metric in candidate.values
    ]


def baseline_check(scores: HeldOutScores, config: GateConfig) -> GateCheck:
    """Beat the trivial model: remove at least min_gain_over_baseline of its error on the same rows; for
    classification on gate.baseline_metric (auto: ROC AUC for two classes, where the majority model's constant
    scores rank nothing, 0.50; balanced accuracy for more, where its score is 1 / n_classes)."""
    gain, trivial = config.min_gain_over_baseline, scores.trivial
    if scores.candidate.task == "regression":
        rmse, what = trivial.metrics.value("test_rmse"), f"trivial baseline ({trivial.name}) on the same rows"
        source = f"{what}, {gain:.0%} less error (gate.min_gain_over_baseline)"
        return compare("test_rmse_vs_trivial", scores.candidate.value("test_rmse"), "<=", rmse * (1 - gain), source)
    metric = f"test_{baseline_metric(scores.candidate, config)}"
    value, base = scores.candidate.value(metric), trivial.metrics.value(metric)
    floor = base + gain * (1 - base)
    source = (
        f"{METRIC_TITLES[metric]} {value:.4f} vs {trivial.name} {base:.4f} on the same rows: must beat it by"
        f" {floor - base:.4f}, {gain:.0%} of its error (gate.min_gain_over_baseline, gate.baseline_metric)"
    )
    return compare(f"{metric}_vs_trivial", value, ">=", floor, source)


def baseline_metric(candidate: ModelMetrics, config: GateConfig) -> str:
    """gate.baseline_metric, auto resolved: roc_auc for two classes, balanced_accuracy for more."""
    if config.baseline_metric != "auto":
        return config.baseline_metric
    classes = sum(name.startswith("test_recall.") for name in candidate.values)
    # ROC AUC needs both classes among the test rows (else it is not computed): balanced accuracy then.
    return "roc_auc" if classes == 2 and "test_roc_auc" in candidate else "balanced_accuracy"


def artifact_checks(evidence: GateEvidence, config: GateConfig) -> list[GateCheck]:
    """ONNX parity, what compression cost on the test rows, and the size of what will be served."""
    scores, parity, chosen = evidence.scores, evidence.parity, evidence.compression.chosen
    main = scores.candidate.main
    loss = (scores.fp32.value(main) - scores.candidate.value(main)) * 100.0
    what = "logit" if scores.candidate.task == "classification" else "prediction / target std"
    return [
        compare(
            "parity_max_abs_diff", parity.max_abs_diff, "<=", config.max_parity_diff, f"gate.max_parity_diff ({what})"
        ),
        compare("parity_agreement", parity.agreement, ">=", config.min_parity_agreement, "gate.min_parity_agreement"),
        compare(f"compression_{main.removeprefix('test_')}_loss_points", loss, "<=", *loss_budget(evidence, config)),
        compare("model_size_bytes", chosen.size_bytes, "<=", *size_bar(evidence, config)),
    ]


def loss_budget(evidence: GateEvidence, config: GateConfig) -> tuple[float, str]:
    """gate.max_compression_loss_points, or one test row's worth of accuracy when that is more: on 80 test rows
    one answer moves accuracy by 1.25 points, so a budget under it would refuse any INT8 model for one flip."""
    scores, chosen = evidence.scores, evidence.compression.chosen
    source = f"gate.max_compression_loss_points ({chosen.name} vs fp32, test rows)"
    rows = scores.candidate.rows
    if scores.candidate.task != "classification" or not rows or 100.0 / rows <= config.max_compression_loss_points:
        return config.max_compression_loss_points, source
    return 100.0 / rows, f"one of {rows} test rows, above {source}"


def size_bar(evidence: GateEvidence, config: GateConfig) -> tuple[float, str]:
    """The configured size limit, else the model family's (see GateConfig.max_model_size_bytes)."""
    if config.max_model_size_bytes is not None:
        return config.max_model_size_bytes, "gate.max_model_size_bytes"
    family = get_family(evidence.family or "tabular_mlp")
    return family.max_model_bytes, f"the {family.name} family's bar; gate.max_model_size_bytes overrides it"


def serving_checks(serving: ServingCheck | None, config: GateConfig) -> list[GateCheck]:
    """The bento must start and answer; a bento that never got ready leaves the rest not run, and failed."""
    rules = [
        ("serving_known_batch_agreement", ">=", 1.0, "the built bento on 127.0.0.1"),
        ("serving_errors", "<=", 0.0, "the built bento on 127.0.0.1"),
        ("serving_p99_latency_ms", "<=", config.serving.max_p99_latency_ms, "gate.serving.max_p99_latency_ms"),
    ]
    if serving is None:
        why = "gate.serving.enabled is false: the bento was not started before promotion"
        return [not_run("serving_ready", ">=", 1.0, why, required=False)] + [
            not_run(name, comparison, threshold, why, required=False) for name, comparison, threshold, _ in rules
        ]
    ready = compare("serving_ready", float(serving.ready), ">=", 1.0, "the built bento on 127.0.0.1")
    if not serving.ready:
        why = f"the bento never answered /readyz: {serving.detail.splitlines()[0] if serving.detail else ''}"
        return [ready] + [
            not_run(name, comparison, threshold, why, required=True) for name, comparison, threshold, _ in rules
        ]
    measured = {
        "serving_known_batch_agreement": serving.known_batch_agreement,
        "serving_errors": serving.errors,
        "serving_p99_latency_ms": serving.p99_ms,
    }
    return [ready] + [
        compare(name, measured[name], comparison, threshold, source) for name, comparison, threshold, source in rules
    ]


def data_checks(data: DataVerdict | None) -> list[GateCheck]:
    """The data checks' verdict, repeated on the version: no critical failure, drift under its blocking bars."""
    if data is None:
        return []
    suite = f"{data.expectations} expectations of the spec's suite on {data.source}"
    checks = [compare("data_critical_failures", data.critical_failures, "<=", 0, suite)]
    if data.max_feature_psi is None or data.label_psi is None:
        why = f"drift {data.drift_note}"
        checks += [
            not_run("data_drift_max_feature_psi", "<=", data.feature_block_psi, why, required=False),
            not_run("data_drift_label_psi", "<=", data.label_block_psi, why, required=False),
        ]
    else:
        reference = f"vs production v{data.reference_version}'s training data"
        checks += [
            compare(
                "data_drift_max_feature_psi",
                data.max_feature_psi,
                "<=",
                data.feature_block_psi,
                f"drift.feature_block_psi, {reference}",
            ),
            compare(
                "data_drift_label_psi",
                data.label_psi,
                "<=",
                data.label_block_psi,
                f"drift.label_block_psi, {reference}",
            ),
        ]
    return checks


def approval_check(
    approval: Approval | None, config: GateConfig, policy: ApprovalPolicy | None = None
) -> list[GateCheck]:
    """With the model's approval policy or the run's gate.require_approval, a person's yes is one of the checks: no
    answer, no promotion. A run can add the requirement, never remove its model's policy."""
    policy = policy or ApprovalPolicy()
    if not (config.require_approval or policy.require_approval):
        return []
    required_by = approval_requirement(config, policy)
    if approval is None:
        why = f"{required_by}: nobody approved this candidate (nobody was asked, or production moved)"
        return [not_run("human_approval", ">=", 1.0, why[:500], required=True)]
    if approval.approved and not policy.allows(approval.reviewer):
        who = ", ".join(policy.approvers)
        why = f"{required_by}: approved by {approval.reviewer}, who is not among the policy's approvers ({who})"
        return [compare("human_approval", 0.0, ">=", 1.0, why[:500])]
    source = f"{required_by}: {approval_answer(approval)}"[:500]
    return [compare("human_approval", float(approval.approved), ">=", 1.0, source)]


def approval_answer(approval: Approval) -> str:
    """What happened to the request for approval, as the summary and the report say it."""
    if approval.timed_out:
        return f"nobody approved in time: {approval.comment}"
    return f"{'approved' if approval.approved else 'rejected'} by {approval.reviewer}: {approval.comment}"


def approval_requirement(config: GateConfig, policy: ApprovalPolicy) -> str:
    """Who asked for the approval: the model's policy (saying so when the run asked for less), or the run."""
    if not policy.require_approval:
        return "gate.require_approval"
    overruled = "" if config.require_approval else "; the run's gate.require_approval false does not lift it"
    return f"model policy set by {policy.changed_by} at {policy.changed_at}{overruled}"


SHADOW_CHECKS = ("shadow_requests", "shadow_agreement")


def shadow_checks(evidence: ShadowFigures | None, config: ShadowGateConfig) -> list[GateCheck]:
    """With gate.shadow.min_requests > 0: enough live requests shadowed, and agreement with production on them.
    No evidence (a training run) leaves both not run, and failed: `greenlight promote` re-judges them later."""
    if config.min_requests == 0:
        return []
    requests_source, agreement_source = "gate.shadow.min_requests", "gate.shadow.min_agreement"
    if evidence is None:
        why = "no shadow evidence yet: shadow the version on live traffic (`greenlight shadow VERSION`)"
        return [
            not_run("shadow_requests", ">=", config.min_requests, f"{requests_source}; {why}", required=True),
            not_run("shadow_agreement", ">=", config.min_agreement, f"{agreement_source}; {why}", required=True),
        ]
    where = f"shadowed requests under {evidence.where}"
    checks = [compare("shadow_requests", evidence.requests, ">=", config.min_requests, f"{requests_source}, {where}")]
    if evidence.agreement is None:
        why = f"{agreement_source}; no shadowed rows under {evidence.where} to agree on"
        return checks + [not_run("shadow_agreement", ">=", config.min_agreement, why, required=True)]
    source = f"{agreement_source}, rows answered as production did, {where}"
    return checks + [compare("shadow_agreement", evidence.agreement, ">=", config.min_agreement, source)]


def failed_only_shadow(failed: list[str]) -> bool:
    """The gate refused for the lack of shadow evidence alone: the version waits for live traffic, not a fix."""
    return bool(failed) and set(failed) <= set(SHADOW_CHECKS)


def change_checks(rule: ChangeThreshold, candidate: ModelMetrics, production: Baseline) -> list[GateCheck]:
    """One change threshold as up to two checks, on the value the candidate must reach."""
    if rule.metric not in candidate.values or rule.metric not in production.metrics.values:
        return []
    base, value = production.metrics.value(rule.metric), candidate.value(rule.metric)
    sign = 1.0 if rule.higher_is_better else -1.0
    source = f"{production.name} on the same rows"
    checks = []
    if rule.min_absolute_change is not None:
        floor = base + sign * rule.min_absolute_change
        name = f"{rule.metric}_vs_{production.name.replace(' ', '_')}"
        checks.append(
            compare(name, value, ">=" if sign > 0 else "<=", floor, f"{source}, change {rule.min_absolute_change:+g}")
        )
    if rule.min_relative_change is not None and base != 0:
        relative = sign * (value - base) / abs(base)
        checks.append(compare(f"{rule.metric}_relative_change", relative, ">=", rule.min_relative_change, source))
    return checks


def change_rules(config: GateConfig, task_kind: str) -> list[ChangeThreshold]:
    return config.change_thresholds if config.change_thresholds is not None else [DEFAULT_CHANGE[task_kind]]


def spec_change_check(production: OtherSpec, config: GateConfig) -> GateCheck:
    """Production answers another spec: the comparison cannot run, which refuses unless gate.accept_new_spec."""
    why = f"{production.name} answers another spec: {production.why}"
    if config.accept_new_spec:
        why += "; accepted without a comparison (gate.accept_new_spec, --accept-new-spec)"
    else:
        why += "; to promote without a comparison, rerun with --accept-new-spec (gate.accept_new_spec)"
    return not_run("compared_with_production", ">=", 1.0, why, required=not config.accept_new_spec)


def production_checks(
    evidence: GateEvidence, production: Baseline | OtherSpec | None, config: GateConfig
) -> list[GateCheck]:
    """Against production: the change thresholds on the same rows and the shadow checks, or the spec-change check
    when production's model cannot score these rows; nothing on a first run."""
    if isinstance(production, OtherSpec):
        return [spec_change_check(production, config)]
    if production is None:  # shadow evidence is agreement with production: a first version has none to show
        return []
    candidate = evidence.scores.candidate
    rules = change_rules(config, candidate.task)
    return shadow_checks(evidence.shadow, config.shadow) + [
        c for rule in rules for c in change_checks(rule, candidate, production)
    ]


def gate_policy(production: Baseline | OtherSpec | None, config: GateConfig) -> str:
    """Which rule set judged the candidate, as the summary, the report and the gate_policy tag say it."""
    if production is None:
        return f"first run: {config.first_run_policy}"
    if isinstance(production, OtherSpec):
        accepted = "accepted with --accept-new-spec" if config.accept_new_spec else "refused without --accept-new-spec"
        return f"new spec, not compared: {production.name} answers another spec ({production.why}); {accepted}"
    return f"compared with {production.name}" + (f" on {production.compared_on}" if production.compared_on else "")


def gate_outcome(
    failed: list[str], production: Baseline | OtherSpec | None, approval: Approval | None, config: GateConfig
) -> tuple[bool, str]:
    """Promote or not, and the one-line reason the summary prints. A failed check outranks an identical model (the
    version failed, whatever production is); with every check passed, production's own model is not promoted."""
    if failed == ["human_approval"] and approval is not None:
        return False, approval_answer(approval)
    if "compared_with_production" in failed:
        return False, (
            f"{production.name} answers another spec ({production.why}), so the candidate could not be compared"
            f" with it: failed {', '.join(failed)}. Rerun with --accept-new-spec (gate.accept_new_spec) to promote"
            " it on the other checks alone"
        )
    if failed:
        return False, f"failed {', '.join(failed)}"
    if isinstance(production, Baseline) and production.same_model:
        return False, (
            f"same model as {production.name} ({production.same_model}): {production.name} stays in production;"
            " this version is registered and marked duplicate"
        )
    if production is None and config.first_run_policy == "never_promote":
        return False, "no production version yet and the first-run policy is never_promote"
    if approval is not None and not approval.approved:
        return False, approval_answer(approval)
    if isinstance(production, OtherSpec):
        return True, f"every check passed; not compared with {production.name}, which answers another spec (accepted)"
    return True, "every check passed"


def decide_promotion(
    evidence: GateEvidence, production: Baseline | OtherSpec | None, config: GateConfig
) -> GateDecision:
    """Every check must pass; with no production version the first-run policy applies, with one that answers
    another spec only gate.accept_new_spec promotes, and a candidate that is production's own model never moves it."""
    candidate = evidence.scores.candidate
    checks = data_checks(evidence.data) + absolute_checks(candidate, config) + [baseline_check(evidence.scores, config)]
    checks += artifact_checks(evidence, config) + serving_checks(evidence.serving, config)
    checks += approval_check(evidence.approval, config, evidence.policy)
    checks += production_checks(evidence, production, config)
    failed = [c.name for c in checks if not c.passed]
    approval = evidence.approval
    promote, reason = gate_outcome(failed, production, approval, config)
    baseline = production if isinstance(production, Baseline) else None
    duplicate = baseline.name if baseline is not None and baseline.same_model and not failed else ""
    served, trivial = evidence.compression.reason, evidence.scores.trivial
    decision = GateDecision(
        promote, reason, gate_policy(production, config), tuple(checks), candidate, baseline, approval, evidence.data
    )
    steps = tuple(evidence.compression.step_lines())
    return replace(decision, served=served, trivial=trivial, compression_steps=steps, duplicate_of=duplicate)
