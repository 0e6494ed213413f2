"""Compression stage: plan the steps (tasks.onnx.goals), make INT8 candidates of the trained model and of each
smaller one (tasks.model.pruning, tasks.model.distillation), and choose what to serve.

Every candidate is scored on the validation rows (metric, size, latency at batch 1 and per batch, fp32 and every
candidate timed together, turn about: timed_together); the best on compression.objective within fp32's budgets is
served. A quantizer that fails leaves its candidate skipped.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.cache import stage_cache_key
from tasks.core.config import CompressionConfig, GateConfig
from tasks.core.plotting import one_plot_at_a_time
from tasks.core.spec import TEXT_INPUT, DatasetSpec
from tasks.data.split import DataSplits
from tasks.model.metrics import MAIN_METRIC, score_outputs
from tasks.model.pruning import SkippedCandidate
from tasks.onnx.export import ExportedModel
from tasks.onnx.goals import CompressionPlan, decide_compression
from tasks.onnx.runtime import (
    CandidateScore,
    batch_of,
    graph_feeds,
    interleaved_latency_ms,
    median_latency_ms,
    open_session,
    run_model,
)

CALIBRATION_BATCH_ROWS = 64


class _FeedsReader(CalibrationDataReader):
    """Feeds calibration rows to the static quantizer in small batches."""

    def __init__(self, feeds: dict[str, np.ndarray], batch_size: int = CALIBRATION_BATCH_ROWS) -> None:
        rows = len(next(iter(feeds.values())))
        self._batches = iter(
            [{name: values[i : i + batch_size] for name, values in feeds.items()} for i in range(0, rows, batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


@dataclass(frozen=True)
class LatencyRounds:
    """How many interleaved rounds each candidate's latency medians are of (per batch, and at batch 1)."""

    per_batch: int
    batch1: int

    def text(self, candidates: int) -> str:
        return (
            f"Latencies: medians of {self.per_batch} rounds per batch and {self.batch1} at batch 1, each round"
            f" timing the {candidates} files in turn (the order reversed every other round), so a busy machine"
            " slows them alike."
        )


@dataclass(frozen=True)
class CompressionResult:
    """Every candidate measured on the validation rows, the skipped ones, and the one chosen for serving."""

    candidates: tuple[CandidateScore, ...]
    chosen: CandidateScore
    reason: str
    metric_name: str = "accuracy"  # what CandidateScore.metric is: "accuracy" or "r2"
    skipped: tuple[SkippedCandidate, ...] = ()
    plot: Path | None = None  # the candidates' metric against batch-1 latency (plot_candidates)
    batch_size: int = 64  # the rows of latency_ms_per_batch
    smaller: tuple[ExportedModel, ...] = ()  # the pruned and distilled models the candidates came from
    teacher_checkpoint: Path | None = None  # the trained model's checkpoint (source "fp32")
    plan: CompressionPlan | None = None  # which steps ran and why (None: every step, as callers without a plan ask)
    latency_rounds: LatencyRounds | None = None  # how the latencies were timed (None: fp32 alone, nothing to compare)

    @property
    def chosen_checkpoint(self) -> Path | None:
        """The torch checkpoint the served file came from: what its parity is checked against."""
        sources = {m.name: m.checkpoint_path for m in self.smaller}
        return sources.get(self.chosen.source, self.teacher_checkpoint)

    def table_markdown(self) -> str:
        rows = [
            f"| {c.name}{' (chosen)' if c is self.chosen else ''} | {c.size_bytes / 1024:.1f} | "
            f"{c.metric:.4f} | {shown_rows(c.changed_rows)} | {c.latency_ms_batch1:.3f} | "
            f"{c.latency_ms_per_batch:.3f} |"
            for c in self.candidates
        ]
        rows += [f"| {s.name} (skipped) | | | | | {s.reason} |" for s in self.skipped]
        header = (
            f"| candidate | size (KiB) | validation {self.metric_name} | answers unlike fp32 (rows) |"
            f" latency batch 1 (ms) | latency batch {self.batch_size} (ms) |\n|---|---|---|---|---|---|"
        )
        made = [f"- {m.name}: {m.how} ({m.seconds:.1f} s); ONNX parity {m.parity.agreement:.4f}" for m in self.smaller]
        steps = ["", self.plan.markdown()] if self.plan is not None else []
        timing = [self.latency_rounds.text(len(self.candidates))] if self.latency_rounds is not None else []
        body = [header, *rows, "", *timing, self.reason, *steps]
        return "\n".join([*body, *(["", "Smaller models:", *made] if made else [])])

    def step_lines(self) -> list[str]:
        """Why each step (pruning, distillation, INT8) ran or was skipped, for the gate report."""
        return self.plan.lines() if self.plan is not None else []

    def step_tags(self) -> dict[str, str]:
        """The same as MLflow run tags: compression.pruning = "skipped — the fp32 file ... meets the goals ..."."""
        steps = self.plan.steps if self.plan is not None else ()
        return {f"compression.{s.step.lower()}": s.line().removeprefix(f"{s.step}: ") for s in steps}


def shown_rows(rows: int | None) -> str:
    return "-" if rows is None else str(rows)


def prepare_for_quantization(fp32_path: Path) -> Path:
    """Shape inference and graph optimisation that ONNX Runtime's quantizers expect first."""
    prepared = fp32_path.with_name(f"{fp32_path.stem}.prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    return prepared


def quantize_int8_static(prepared: Path, calibration: dict[str, np.ndarray], out_dir: Path) -> Path:
    """Static INT8 QDQ quantization, activations calibrated on training rows."""
    path = out_dir / f"{prepared.name.removesuffix('.prep.onnx')}.int8-static.onnx"
    quantize_static(
        str(prepared),
        str(path),
        _FeedsReader(calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    return path


def quantize_int8_dynamic(prepared: Path, calibration: dict[str, np.ndarray], out_dir: Path) -> Path:
    """Dynamic INT8 quantization: weights stored as int8, activations quantized at run time."""
    path = out_dir / f"{prepared.name.removesuffix('.prep.onnx')}.int8-dynamic.onnx"
    quantize_dynamic(str(prepared), str(path), weight_type=QuantType.QInt8)
    return path


QUANTIZERS = {"int8-static-qdq": quantize_int8_static, "int8-dynamic": quantize_int8_dynamic}


def keep_metadata(fp32_path: Path, quantized: Path) -> None:
    """Copy the fp32 file's metadata (a text model's tokenizer) onto a quantized file, which the quantizers drop."""
    import onnx

    source = onnx.load(str(fp32_path), load_external_data=False)
    if not source.metadata_props:
        return
    target = onnx.load(str(quantized))
    onnx.helper.set_model_props(target, {prop.key: prop.value for prop in source.metadata_props})
    onnx.save(target, str(quantized))


def quantize_candidates(fp32_path: Path, calibration: dict[str, np.ndarray]) -> tuple[dict[str, Path], list]:
    """The INT8 files that could be made, and a SkippedCandidate for each quantizer that failed.

    calibration: the spec's raw feeds; a text feed is tokenized by the fp32 file's own tokenizer first."""
    paths, skipped, quantizers = {}, [], dict(QUANTIZERS)
    if TEXT_INPUT in calibration:
        calibration = graph_feeds(open_session(fp32_path), calibration)
        # An encoder's attention activations calibrate badly (a few outliers set the scale) and slowly; its
        # MatMul weights are where dynamic INT8 pays.
        quantizers.pop("int8-static-qdq")
        skipped.append(SkippedCandidate("int8-static-qdq", "not tried for text encoders: dynamic INT8 is their case"))
    try:
        prepared = prepare_for_quantization(fp32_path)
    except Exception as error:  # the pre-processor fails on some graphs: every INT8 candidate is then skipped
        reason = f"pre-processing for quantization failed: {type(error).__name__}: {error}"
        return paths, skipped + [SkippedCandidate(name, reason) for name in quantizers]
    for name, quantize in quantizers.items():
        try:
            paths[name] = quantize(prepared, calibration, fp32_path.parent)
            keep_metadata(fp32_path, paths[name])
            open_session(paths[name])  # a file ONNX Runtime cannot load is no candidate either
        except Exception as error:
            paths.pop(name, None)
            skipped.append(SkippedCandidate(name, f"{type(error).__name__}: {error}"))
    prepared.unlink()
    return paths, skipped


def score_candidate(
    name: str,
    path: Path,
    spec: DatasetSpec,
    feeds: dict[str, np.ndarray],
    targets: np.ndarray,
    batch_size: int,
    source: str = "fp32",
    reference: np.ndarray | None = None,
    timed: bool = True,
) -> CandidateScore:
    """The main metric on the given rows and the median latency of one batch, as the service would run it;
    with `reference` (fp32's answers), on how many rows this file answers otherwise. `timed=False`: latencies
    left 0, for timed_together to measure with the other candidates."""
    session = open_session(path)
    outputs = run_model(session, feeds)
    metrics = score_outputs(spec, outputs, targets)
    answers = class_answers(spec, outputs)
    changed = int((answers != reference).sum()) if reference is not None and answers is not None else None
    return CandidateScore(
        name=name,
        path=path,
        size_bytes=path.stat().st_size,
        metric=metrics.value(MAIN_METRIC[spec.task]),
        latency_ms_per_batch=median_latency_ms(session, batch_of(feeds, batch_size)) if timed else 0.0,
        latency_ms_batch1=median_latency_ms(session, batch_of(feeds, 1)) if timed else 0.0,
        source=source,
        changed_rows=changed,
        rows=len(targets),
    )


def class_answers(spec: DatasetSpec, outputs: np.ndarray) -> np.ndarray | None:
    """A classifier's label per row (None for regression: no answer is the same or different, only closer)."""
    return np.asarray(outputs).argmax(axis=1) if spec.task == "classification" else None


def timed_together(
    scores: list[CandidateScore],
    sessions: list,
    feeds: dict[str, np.ndarray],
    batch_size: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[CandidateScore], LatencyRounds]:
    """The candidates (fp32 first) with latencies timed together, round by round (interleaved_latency_ms):
    fp32 timed alone minutes before its INT8 files, on a machine that got busy meanwhile, made every INT8 file
    look slower than fp32 and fp32 got served. `sessions`: one per candidate, in the same order."""
    per_batch = interleaved_latency_ms(sessions, batch_of(feeds, batch_size), clock=clock)
    batch1 = interleaved_latency_ms(sessions, batch_of(feeds, 1), clock=clock)
    timed = [
        replace(score, latency_ms_per_batch=batch_ms, latency_ms_batch1=one_ms)
        for score, batch_ms, one_ms in zip(scores, per_batch.medians_ms, batch1.medians_ms, strict=True)
    ]
    return timed, LatencyRounds(per_batch.rounds, batch1.rounds)


def within_budgets(candidate: CandidateScore, fp32: CandidateScore, config: CompressionConfig) -> bool:
    """Metric within the budget of fp32's and no slower per batch than allowed; and for a file of another torch
    model (pruned, distilled), evidence that it answers as fp32 does (answers_like_fp32)."""
    budget = config.accuracy_budget_points / 100.0
    return within_metric_and_latency(candidate, fp32, config) and (
        candidate.source == fp32.source or answers_like_fp32(candidate, fp32, budget)
    )


def within_metric_and_latency(candidate: CandidateScore, fp32: CandidateScore, config: CompressionConfig) -> bool:
    return (
        candidate.metric >= fp32.metric - config.accuracy_budget_points / 100.0
        and candidate.latency_ms_per_batch <= fp32.latency_ms_per_batch * config.max_latency_ratio
    )


def answers_like_fp32(candidate: CandidateScore, fp32: CandidateScore, budget: float) -> bool:
    """A pruned or distilled model is another function, not fp32 rounded: on a small split it can tie fp32 by
    trading errors and then lose several test rows (a distilled CNN that answered all 60 validation images as
    fp32 did lost 3 of 80 test images). Classification: the 95% upper bound (Clopper-Pearson) of the share of
    rows it answers otherwise must be within the budget, which takes ~600 identical answers for 0.5 points
    and ~150 for 2. Regression: no loss at all on the validation rows."""
    if candidate.changed_rows is None or not candidate.rows:
        return candidate.metric >= fp32.metric
    from scipy.stats import beta

    changed, rows = candidate.changed_rows, candidate.rows
    upper = 1.0 if changed >= rows else float(beta.ppf(0.95, changed + 1, rows - changed))
    return upper <= budget


def select_serving_candidate(candidates: list[CandidateScore], config: CompressionConfig) -> tuple[CandidateScore, str]:
    """The best candidate on the objective within the budgets of fp32 (always first, always eligible)."""
    fp32 = candidates[0]
    floor = fp32.metric - config.accuracy_budget_points / 100.0
    ceiling = fp32.latency_ms_per_batch * config.max_latency_ratio
    eligible = [fp32] + [c for c in candidates[1:] if within_budgets(c, fp32, config)]
    if config.objective == "latency":
        chosen, best = min(eligible, key=lambda c: (c.latency_ms_batch1, c.size_bytes)), "fastest at batch 1"
    else:
        chosen, best = min(eligible, key=lambda c: (c.size_bytes, c.latency_ms_per_batch)), "smallest"
    reason = (
        f"chose {chosen.name}: {best} of {[c.name for c in eligible]} with validation metric >= {floor:.4f} "
        f"(fp32 {fp32.metric:.4f} minus {config.accuracy_budget_points} points) and latency <= {ceiling:.3f} ms "
        f"({config.max_latency_ratio}x fp32)"
    )
    others = [c.name for c in candidates if within_metric_and_latency(c, fp32, config) and c not in eligible]
    if others:
        reason += (
            f"; within those budgets but not served: {others} (another model than fp32, whose {fp32.rows or ''}"
            " validation rows do not show with 95% confidence that it answers as fp32 does within the budget)"
        )
    return chosen, reason


def candidate_files(
    fp32_path: Path, smaller: tuple[ExportedModel, ...], calibration: dict[str, np.ndarray], quantize: bool = True
) -> tuple[list[tuple[str, str, Path]], list[SkippedCandidate]]:
    """(name, source, file) of every candidate: each torch model's fp32 ONNX and, with `quantize`, its INT8 files.
    The trained model's keep their plain names (fp32, int8-static-qdq, ...); a smaller model's are prefixed."""
    files, skipped = [], []
    for source, path in [("fp32", fp32_path), *((m.name, m.onnx_path) for m in smaller)]:
        quantized, failed = quantize_candidates(path, calibration) if quantize else ({}, [])
        prefix = "" if source == "fp32" else f"{source}+"
        files.append((source, source, path))
        files += [(f"{prefix}{name}", source, file) for name, file in quantized.items()]
        skipped += [SkippedCandidate(f"{prefix}{s.name}", s.reason) for s in failed]
    return files, skipped


def score_fp32(fp32_path: Path, splits: DataSplits, config: CompressionConfig) -> CandidateScore:
    """The trained model's fp32 file on the validation rows: size, metric, latency at batch 1 and per batch."""
    feeds, targets = splits.feeds("validation"), splits.targets("validation")
    reference = class_answers(splits.spec, run_model(fp32_path, feeds))
    return score_candidate("fp32", fp32_path, splits.spec, feeds, targets, config.latency_batch_size, "fp32", reference)


@task(name="plan_compression", cache_policy=NO_CACHE)
def plan_compression(
    fp32_path: Path, splits: DataSplits, family: str, config: CompressionConfig, gate: GateConfig
) -> CompressionPlan:
    """The fp32 file measured against the goals, and which of pruning, distillation and INT8 run (tasks.onnx.goals).
    Not cached: the decision rests on a latency measured on this machine."""
    plan = decide_compression(score_fp32(fp32_path, splits, config), family, config, gate)
    for line in plan.lines(done=False):
        print(f"compression {line}")
    return plan


@task(
    name="compress_model",
    # The plan's measured latencies differ run to run; what it decides is in the other inputs (the config, the fp32
    # file, the smaller models made), so it is left out of the key.
    cache_key_fn=stage_cache_key(
        "compression",
        ignore=["plan"],
        files_of=lambda r: [*(c.path for c in r.candidates), *([r.plot] if r.plot else [])],
    ),
    persist_result=True,
)
def compress_model(
    fp32_path: Path,
    splits: DataSplits,
    config: CompressionConfig,
    smaller: tuple[ExportedModel, ...] = (),
    skipped: tuple[SkippedCandidate, ...] = (),
    teacher_checkpoint: Path | None = None,
    plan: CompressionPlan | None = None,
) -> CompressionResult:
    """INT8 files (static QDQ and dynamic) of the trained model and of each smaller one (pruned, distilled),
    every file scored on the validation rows, one chosen. `skipped`: smaller models that could not be made.
    `plan`: the fp32 file's score measured already, and whether INT8 runs (None: measured here, INT8 runs)."""
    calibration = splits.feeds("train", rows=config.calibration_rows)
    files, failed = candidate_files(fp32_path, smaller, calibration, quantize=plan is None or plan.runs("INT8"))
    feeds, targets = splits.feeds("validation"), splits.targets("validation")
    fp32 = plan.fp32 if plan is not None else score_fp32(fp32_path, splits, config)
    reference = class_answers(splits.spec, run_model(fp32_path, feeds)) if len(files) > 1 else None
    scores = [fp32] + [
        score_candidate(name, path, splits.spec, feeds, targets, config.latency_batch_size, source, reference, False)
        for name, source, path in files[1:]
    ]
    rounds = None
    if len(scores) > 1:
        sessions = [open_session(score.path, spinning=False) for score in scores]
        scores, rounds = timed_together(scores, sessions, feeds, config.latency_batch_size)
    chosen, reason = select_serving_candidate(scores, config)
    metric_name = MAIN_METRIC[splits.spec.task].removeprefix("test_")
    result = CompressionResult(
        tuple(scores),
        chosen,
        reason,
        metric_name,
        (*skipped, *failed),
        batch_size=config.latency_batch_size,
        smaller=smaller,
        teacher_checkpoint=teacher_checkpoint,
        plan=plan,
        latency_rounds=rounds,
    )
    return replace(result, plot=plot_candidates(result, fp32_path.parent / "compression_candidates.png"))


def pareto_front(candidates: tuple[CandidateScore, ...]) -> list[CandidateScore]:
    """The candidates no other beats on both batch-1 latency and validation metric, fastest first."""
    front, best = [], float("-inf")
    for c in sorted(candidates, key=lambda c: (c.latency_ms_batch1, -c.metric)):
        if c.metric > best:
            front.append(c)
            best = c.metric
    return front


@one_plot_at_a_time
def plot_candidates(result: CompressionResult, path: Path) -> Path:
    """The candidates' validation metric against batch-1 latency, marker area by file size, one colour per
    torch model they came from, the Pareto front drawn and the chosen one ringed: where a smaller or faster
    file costs accuracy, and where it does not."""
    from tasks.model.evaluation import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    largest = max(c.size_bytes for c in result.candidates)
    sources = list(dict.fromkeys(c.source for c in result.candidates))
    colours = plt.get_cmap("tab10")
    for c in result.candidates:
        area = 40 + 900 * c.size_bytes / largest
        colour = colours(sources.index(c.source) % 10)
        label = f"{c.name} ({c.size_bytes / 1024:,.0f} KiB)"
        marker = "o" if c.name == c.source else "s"  # circles: fp32 files; squares: INT8
        ax.scatter(c.latency_ms_batch1, c.metric, s=area, alpha=0.6, color=colour, marker=marker, label=label)
        if c is result.chosen:
            ax.scatter(c.latency_ms_batch1, c.metric, s=area * 1.8, facecolors="none", edgecolors="black")
    front = pareto_front(result.candidates)
    ax.step(
        [c.latency_ms_batch1 for c in front], [c.metric for c in front], where="post", color="grey", lw=0.8, ls="--"
    )
    latencies = [c.latency_ms_batch1 for c in result.candidates if c.latency_ms_batch1 > 0]
    if latencies and max(latencies) > 8 * min(latencies):
        ax.set_xscale("log")
    ax.set(
        xlabel="latency of one request, batch 1 (ms)",
        ylabel=f"validation {result.metric_name}",
        title=f"Compression candidates and their Pareto front (served: {result.chosen.name})",
    )
    ax.legend(fontsize=7, loc="best", markerscale=0.35)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
