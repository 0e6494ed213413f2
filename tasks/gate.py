"""Promotion gate: absolute thresholds, ONNX parity, and no regression against production."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import GateConfig
from tasks.onnx_model import CandidateScore, ParityReport, onnx_logits
from tasks.registry import ModelVersionRef, download_version_onnx


@dataclass(frozen=True)
class GateCheck:
    """One rule: the measured value, its threshold, how they compare, and whether it passed."""

    name: str
    value: float
    comparison: str  # ">=" or "<=", both inclusive
    threshold: float
    passed: bool

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"{mark}  {self.name}: {self.value:.6g} {self.comparison} {self.threshold:.6g}"


@dataclass(frozen=True)
class BaselineScore:
    """The current production version scored on this run's test rows."""

    version: str
    accuracy: float


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    checks: tuple[GateCheck, ...]
    baseline: BaselineScore | None

    @property
    def verdict(self) -> str:
        return "passed" if self.promote else "failed"

    def report_markdown(self) -> str:
        rows = [
            f"| {c.name} | {c.value:.6g} | {c.comparison} {c.threshold:.6g} | {'pass' if c.passed else 'FAIL'} |"
            for c in self.checks
        ]
        table = "| check | value | threshold | verdict |\n|---|---|---|---|\n" + "\n".join(rows)
        return f"**Gate {self.verdict}**: {self.reason}\n\n{table}"

    def write_json(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2, default=str))
        return path


def at_least(name: str, value: float, threshold: float) -> GateCheck:
    return GateCheck(name, value, ">=", threshold, value >= threshold)


def at_most(name: str, value: float, threshold: float) -> GateCheck:
    return GateCheck(name, value, "<=", threshold, value <= threshold)


@task(name="score_production_baseline", cache_policy=NO_CACHE)
def score_production_baseline(
    production: ModelVersionRef | None, pixels: np.ndarray, labels: np.ndarray, work_dir: Path
) -> BaselineScore | None:
    """Accuracy of the current production model on the same test rows as the candidate."""
    if production is None:
        return None
    onnx_path = download_version_onnx(production, work_dir / f"production-v{production.version}")
    accuracy = float(np.mean(onnx_logits(onnx_path, pixels).argmax(axis=1) == labels))
    return BaselineScore(version=production.version, accuracy=accuracy)


@task(name="decide_promotion", cache_policy=NO_CACHE)
def decide_promotion(
    served: CandidateScore, parity_fp32: ParityReport, baseline: BaselineScore | None, config: GateConfig
) -> GateDecision:
    """Every check must pass; with no production version the absolute thresholds decide alone."""
    checks = [
        at_least("test_accuracy", served.accuracy, config.min_test_accuracy),
        at_most("parity_max_abs_logit_diff", parity_fp32.max_abs_logit_diff, config.max_parity_logit_diff),
        at_least("parity_argmax_agreement", parity_fp32.argmax_agreement, config.min_parity_agreement),
    ]
    if baseline is not None:
        floor = baseline.accuracy - config.max_regression_points / 100.0
        checks.append(at_least(f"test_accuracy_vs_production_v{baseline.version}", served.accuracy, floor))
    failed = [c.name for c in checks if not c.passed]
    if failed:
        reason = f"failed {', '.join(failed)}"
    elif baseline is None:
        reason = "no production version yet, and the absolute thresholds pass"
    else:
        reason = f"thresholds pass and not worse than production v{baseline.version} beyond tolerance"
    return GateDecision(promote=not failed, reason=reason, checks=tuple(checks), baseline=baseline)
