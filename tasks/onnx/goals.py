"""Which compression steps a run takes, and why: pruning and distillation only where they pay.

The fp32 file is measured first; then per step: a family with nothing to compress skips all, then
compression.<step>.when, the family's own rule, else compression.goals. INT8 is made unless the family says never.
"""

from dataclasses import dataclass
from typing import Literal

from tasks.core.config import CompressionConfig, GateConfig
from tasks.model.families import Family, get_family
from tasks.onnx.runtime import CandidateScore

When = Literal["auto", "always", "never"]


def size_text(size_bytes: float) -> str:
    """Bytes as a person reads a file size: 48.6 kB, 12.3 MB."""
    return f"{size_bytes / 1e6:.3g} MB" if size_bytes >= 1e6 else f"{size_bytes / 1e3:.3g} kB"


@dataclass(frozen=True)
class Goals:
    """The goals the fp32 file is measured against, with where the size goal came from."""

    max_bytes: int
    max_latency_ms: float  # one row (batch 1)
    size_source: str  # "compression.goals.max_bytes", "gate.max_model_size_bytes" or the family's bar

    def missed_by(self, fp32: CandidateScore) -> list[str]:
        """The goals this file misses, as words ([] when it meets them all)."""
        missed = []
        if fp32.size_bytes > self.max_bytes:
            missed.append(f"the size goal ({size_text(self.max_bytes)})")
        if fp32.latency_ms_batch1 > self.max_latency_ms:
            missed.append(f"the latency goal ({self.max_latency_ms:g} ms at batch 1)")
        return missed

    def text(self) -> str:
        return f"{size_text(self.max_bytes)}, {self.max_latency_ms:g} ms"


def resolve_goals(config: CompressionConfig, gate: GateConfig, family: Family) -> Goals:
    """compression.goals.max_bytes, else the gate's size bar (gate.max_model_size_bytes, else the family's)."""
    latency = config.goals.max_latency_ms
    if config.goals.max_bytes is not None:
        return Goals(config.goals.max_bytes, latency, "compression.goals.max_bytes")
    if gate.max_model_size_bytes is not None:
        return Goals(gate.max_model_size_bytes, latency, "gate.max_model_size_bytes")
    return Goals(family.max_model_bytes, latency, f"the {family.name} family's size bar")


@dataclass(frozen=True)
class StepDecision:
    """Whether one compression step (pruning, distillation, INT8) runs, and why, in words for the reports."""

    step: str
    runs: bool
    why: str

    def line(self, done: bool = True) -> str:
        """The step, ran or skipped, and why; done=False says "runs" rather than "ran" (the plan, before the step)."""
        verb = ("ran" if done else "runs") if self.runs else "skipped"
        return f"{self.step}: {verb} — {self.why}"


@dataclass(frozen=True)
class CompressionPlan:
    """The trained model's fp32 file as measured, the goals, and the decision for each step."""

    fp32: CandidateScore
    goals: Goals
    steps: tuple[StepDecision, ...]

    def runs(self, step: str) -> bool:
        return next(s.runs for s in self.steps if s.step == step)

    def lines(self, done: bool = True) -> list[str]:
        return [s.line(done) for s in self.steps]

    def markdown(self) -> str:
        goals = (
            f"Goals: at most {size_text(self.goals.max_bytes)} ({self.goals.size_source}) and "
            f"{self.goals.max_latency_ms:g} ms for one row (compression.goals.max_latency_ms)."
        )
        return "\n".join([goals, "", *(f"- {line}" for line in self.lines())])


def never_reason(family: Family) -> str:
    return f"the {family.name} family has nothing to prune or distil, and INT8 does not apply to it"


def latency_text(ms: float) -> str:
    """0.021 ms, 0.4 ms, 3.1 ms, 120.0 ms: two figures below a millisecond, tenths above."""
    return f"{ms:.2g} ms" if ms < 1 else f"{ms:.1f} ms"


def measured(fp32: CandidateScore) -> str:
    return f"{size_text(fp32.size_bytes)}, {latency_text(fp32.latency_ms_batch1)} at batch 1"


def decide_step(step: str, asked: tuple[When, str], family: Family, fp32: CandidateScore, goals: Goals) -> StepDecision:
    """One step's decision. asked: the configuration's `when` for this step and the words that say so."""
    when, setting = asked
    if family.compression == "never":
        return StepDecision(step, False, never_reason(family))
    if when != "auto":
        return StepDecision(step, when == "always", setting)
    if family.compression == "always":
        return StepDecision(step, True, f"the {family.name} family always compresses (fp32 file: {measured(fp32)})")
    missed = goals.missed_by(fp32)
    if missed:
        return StepDecision(step, True, f"the fp32 file ({measured(fp32)}) misses {' and '.join(missed)}")
    return StepDecision(step, False, f"the fp32 file ({measured(fp32)}) meets the goals ({goals.text()})")


def pruning_asked(config: CompressionConfig) -> tuple[When, str]:
    if not config.pruning.levels:
        return "never", "compression.pruning.levels is empty"
    return config.pruning.when, f"compression.pruning.when is {config.pruning.when}"


def distillation_asked(config: CompressionConfig) -> tuple[When, str]:
    if not config.distillation.enabled:
        return "never", "compression.distillation.enabled is false"
    return config.distillation.when, f"compression.distillation.when is {config.distillation.when}"


def int8_decision(family: Family) -> StepDecision:
    if family.compression == "never":
        return StepDecision("INT8", False, never_reason(family))
    why = "seconds of ONNX Runtime quantization; an INT8 file is served only within the budgets of fp32"
    return StepDecision("INT8", True, why)


def decide_compression(
    fp32: CandidateScore, family: str, config: CompressionConfig, gate: GateConfig
) -> CompressionPlan:
    """Each step's decision for a trained model of this family whose fp32 file measured `fp32`."""
    kind = get_family(family)
    goals = resolve_goals(config, gate, kind)
    steps = (
        decide_step("pruning", pruning_asked(config), kind, fp32, goals),
        decide_step("distillation", distillation_asked(config), kind, fp32, goals),
        int8_decision(kind),
    )
    return CompressionPlan(fp32, goals, steps)
