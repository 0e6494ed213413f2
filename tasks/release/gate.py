"""Promotion gate: every rule explicit, every decision explained, evidence kept with the version.

All comparisons are inclusive: a value equal to its threshold passes. Change thresholds compare the
candidate with the current production version scored on the same test rows, like MLflow's
MetricThreshold: candidate - production >= min_absolute_change and
(candidate - production) / production >= min_relative_change (signs flip when lower is better).
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import f1_score, recall_score

from tasks.core.config import ChangeThreshold, GateConfig
from tasks.core.schema import LABELS
from tasks.onnx.compress import CompressionResult
from tasks.onnx.runtime import ParityReport, onnx_logits
from tasks.release.serving_check import ServingCheck


@dataclass(frozen=True)
class ModelMetrics:
    """A model file's metrics on a set of test rows (the candidate's, or production's on the same rows)."""

    test_accuracy: float
    test_macro_f1: float
    class_recall: tuple[float, ...]

    @property
    def test_min_class_recall(self) -> float:
        return min(self.class_recall)

    def value(self, metric: str) -> float:
        return float(getattr(self, metric))


@dataclass(frozen=True)
class Baseline:
    """The production version at decision time, scored on the candidate's test rows."""

    version: str
    metrics: ModelMetrics


@dataclass(frozen=True)
class Approval:
    """A person's answer to the pause before promotion."""

    approved: bool
    reviewer: str
    comment: str


@dataclass(frozen=True)
class GateCheck:
    """One rule: the measured value, its threshold, how they compare, and whether it passed."""

    name: str
    value: float
    comparison: str  # ">=" or "<=", always inclusive
    threshold: float
    passed: bool

    def line(self) -> str:
        return (
            f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.value:.6g} {self.comparison} {self.threshold:.6g}"
        )


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    policy: str  # which rule set decided: "first-run: <policy>" or "compared with production vN"
    checks: tuple[GateCheck, ...]
    candidate: ModelMetrics
    baseline: Baseline | None
    approval: Approval | None = None

    @property
    def verdict(self) -> str:
        return "passed" if self.promote else "failed"

    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def report_markdown(self) -> str:
        rows = [
            f"| {c.name} | {c.value:.6g} | {c.comparison} {c.threshold:.6g} | {'pass' if c.passed else '**FAIL**'} |"
            for c in self.checks
        ]
        table = "| check | value | threshold | verdict |\n|---|---|---|---|\n" + "\n".join(rows)
        baseline = f"production v{self.baseline.version}" if self.baseline else "no production version"
        approval = ""
        if self.approval is not None:
            answer = "approved" if self.approval.approved else "rejected"
            approval = f"\n\nHuman review: {answer} by {self.approval.reviewer}: {self.approval.comment}"
        head = f"**Gate {self.verdict}**: {self.reason}\n\nPolicy: {self.policy} (baseline: {baseline})."
        return f"{head}\n\n{table}{approval}"

    def write_json(self, path: Path) -> Path:
        path.write_text(json.dumps({"verdict": self.verdict, **asdict(self)}, indent=2, default=str))
        return path


def at_least(name: str, value: float, threshold: float) -> GateCheck:
    return GateCheck(name, float(value), ">=", float(threshold), bool(value >= threshold))


def at_most(name: str, value: float, threshold: float) -> GateCheck:
    return GateCheck(name, float(value), "<=", float(threshold), bool(value <= threshold))


def score_onnx_model(path: Path, pixels: np.ndarray, labels: np.ndarray) -> ModelMetrics:
    """Accuracy, macro F1 and per-class recall of an ONNX model on labelled rows."""
    predicted = onnx_logits(path, pixels).argmax(axis=1)
    recall = recall_score(labels, predicted, labels=list(LABELS), average=None, zero_division=0)
    return ModelMetrics(
        test_accuracy=float(np.mean(predicted == labels)),
        test_macro_f1=float(f1_score(labels, predicted, labels=list(LABELS), average="macro", zero_division=0)),
        class_recall=tuple(float(r) for r in recall),
    )


@task(name="score_candidate", cache_policy=NO_CACHE)
def score_candidate(onnx_path: Path, pixels: np.ndarray, labels: np.ndarray) -> ModelMetrics:
    """The served candidate's metrics on the test rows: what the gate judges is what will answer."""
    return score_onnx_model(onnx_path, pixels, labels)


def value_checks(candidate: ModelMetrics, config: GateConfig) -> list[GateCheck]:
    return [
        at_least("test_accuracy", candidate.test_accuracy, config.min_test_accuracy),
        at_least("test_macro_f1", candidate.test_macro_f1, config.min_test_macro_f1),
        at_least("test_min_class_recall", candidate.test_min_class_recall, config.min_class_recall),
    ]


def artifact_checks(compression: CompressionResult, parity: ParityReport, config: GateConfig) -> list[GateCheck]:
    """ONNX parity, what compression cost, and the size of what will be served."""
    fp32 = next(c for c in compression.candidates if c.name == "fp32")
    loss_points = (fp32.accuracy - compression.chosen.accuracy) * 100.0
    return [
        at_most("parity_max_abs_logit_diff", parity.max_abs_logit_diff, config.max_parity_logit_diff),
        at_least("parity_argmax_agreement", parity.argmax_agreement, config.min_parity_agreement),
        at_most("compression_accuracy_loss_points", loss_points, config.max_compression_loss_points),
        at_most("model_size_bytes", compression.chosen.size_bytes, config.max_model_size_bytes),
    ]


def serving_checks(serving: ServingCheck | None, config: GateConfig) -> list[GateCheck]:
    if serving is None:
        return []
    return [
        at_least("serving_ready", float(serving.ready), 1.0),
        at_least("serving_known_batch_agreement", serving.known_batch_agreement, 1.0),
        at_most("serving_errors", serving.errors, 0),
        at_most("serving_p99_latency_ms", serving.p99_ms, config.serving.max_p99_latency_ms),
    ]


def change_check(rule: ChangeThreshold, candidate: ModelMetrics, baseline: Baseline) -> list[GateCheck]:
    """One change threshold as up to two checks, on the value the candidate must reach."""
    base = baseline.metrics.value(rule.metric)
    sign = 1.0 if rule.greater_is_better else -1.0
    checks = []
    if rule.min_absolute_change is not None:
        floor = base + sign * rule.min_absolute_change
        name = f"{rule.metric}_vs_production_v{baseline.version}"
        value = candidate.value(rule.metric)
        checks.append(at_least(name, value, floor) if sign > 0 else at_most(name, value, floor))
    if rule.min_relative_change is not None and base != 0:
        relative = sign * (candidate.value(rule.metric) - base) / abs(base)
        checks.append(at_least(f"{rule.metric}_relative_change", relative, rule.min_relative_change))
    return checks


def decide_promotion(
    candidate: ModelMetrics,
    compression: CompressionResult,
    parity: ParityReport,
    serving: ServingCheck | None,
    baseline: Baseline | None,
    config: GateConfig,
    approval: Approval | None = None,
) -> GateDecision:
    """Every check must pass; with no production version the first-run policy applies."""
    checks = value_checks(candidate, config) + artifact_checks(compression, parity, config)
    checks += serving_checks(serving, config)
    if baseline is not None:
        checks += [c for rule in config.change_thresholds for c in change_check(rule, candidate, baseline)]
    policy = (
        f"first run: {config.first_run_policy}" if baseline is None else f"compared with production v{baseline.version}"
    )
    failed = [c.name for c in checks if not c.passed]
    promote, reason = not failed, "every check passed"
    if failed:
        reason = f"failed {', '.join(failed)}"
    elif baseline is None and config.first_run_policy == "never_promote":
        promote, reason = False, "no production version yet and the first-run policy is never_promote"
    elif approval is not None and not approval.approved:
        promote, reason = False, f"rejected by {approval.reviewer}: {approval.comment}"
    return GateDecision(promote, reason, policy, tuple(checks), candidate, baseline, approval)
