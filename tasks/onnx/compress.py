"""Compression stage: INT8 candidates from ONNX Runtime, and the choice of what to serve.

Every candidate (fp32 included) is scored on the validation rows with the task's main metric (accuracy or
R^2), its file size and its median latency per batch; the smallest one within the metric and latency budgets
of fp32 is served. The test rows stay untouched for the gate. A quantizer that fails on a graph (string
LabelEncoders, an op it does not know) leaves its candidate skipped with the reason, never the run failed.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from prefect import task

from tasks.core.cache import stage_cache_key
from tasks.core.config import CompressionConfig
from tasks.core.spec import TEXT_INPUT, DatasetSpec
from tasks.data.split import DataSplits
from tasks.model.metrics import MAIN_METRIC, score_outputs
from tasks.onnx.runtime import CandidateScore, batch_of, graph_feeds, median_latency_ms, open_session, run_model

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
class SkippedCandidate:
    """A candidate that could not be produced, and why (the quantizer's own message)."""

    name: str
    reason: str


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

    def table_markdown(self) -> str:
        rows = [
            f"| {c.name}{' (chosen)' if c is self.chosen else ''} | {c.size_bytes / 1024:.1f} | "
            f"{c.metric:.4f} | {c.latency_ms_batch1:.3f} | {c.latency_ms_per_batch:.3f} |"
            for c in self.candidates
        ]
        rows += [f"| {s.name} (skipped) | | | | {s.reason} |" for s in self.skipped]
        header = (
            f"| candidate | size (KiB) | validation {self.metric_name} | latency batch 1 (ms) |"
            f" latency batch {self.batch_size} (ms) |\n|---|---|---|---|---|"
        )
        return "\n".join([header, *rows, "", self.reason])


def prepare_for_quantization(fp32_path: Path) -> Path:
    """Shape inference and graph optimisation that ONNX Runtime's quantizers expect first."""
    prepared = fp32_path.with_name("model.prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    return prepared


def quantize_int8_static(prepared: Path, calibration: dict[str, np.ndarray], out_dir: Path) -> Path:
    """Static INT8 QDQ quantization, activations calibrated on training rows."""
    path = out_dir / "model.int8-static.onnx"
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
    path = out_dir / "model.int8-dynamic.onnx"
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
    name: str, path: Path, spec: DatasetSpec, feeds: dict[str, np.ndarray], targets: np.ndarray, batch_size: int
) -> CandidateScore:
    """The main metric on the given rows and the median latency of one batch, as the service would run it."""
    session = open_session(path)
    metrics = score_outputs(spec, run_model(session, feeds), targets)
    return CandidateScore(
        name=name,
        path=path,
        size_bytes=path.stat().st_size,
        metric=metrics.value(MAIN_METRIC[spec.task]),
        latency_ms_per_batch=median_latency_ms(session, batch_of(feeds, batch_size)),
        latency_ms_batch1=median_latency_ms(session, batch_of(feeds, 1)),
    )


def select_serving_candidate(candidates: list[CandidateScore], config: CompressionConfig) -> tuple[CandidateScore, str]:
    """The smallest candidate within the metric and latency budgets of fp32 (always first, always eligible)."""
    fp32 = candidates[0]
    floor = fp32.metric - config.accuracy_budget_points / 100.0
    ceiling = fp32.latency_ms_per_batch * config.max_latency_ratio
    eligible = [fp32] + [c for c in candidates[1:] if c.metric >= floor and c.latency_ms_per_batch <= ceiling]
    if config.objective == "latency":
        chosen, best = min(eligible, key=lambda c: (c.latency_ms_batch1, c.size_bytes)), "fastest at batch 1"
    else:
        chosen, best = min(eligible, key=lambda c: (c.size_bytes, c.latency_ms_per_batch)), "smallest"
    reason = (
        f"chose {chosen.name}: {best} of {[c.name for c in eligible]} with validation metric >= {floor:.4f} "
        f"(fp32 {fp32.metric:.4f} minus {config.accuracy_budget_points} points) and latency <= {ceiling:.3f} ms "
        f"({config.max_latency_ratio}x fp32)"
    )
    return chosen, reason


@task(
    name="compress_model",
    cache_key_fn=stage_cache_key(
        "compression", ignore=[], files_of=lambda r: [*(c.path for c in r.candidates), *([r.plot] if r.plot else [])]
    ),
    persist_result=True,
)
def compress_model(fp32_path: Path, splits: DataSplits, config: CompressionConfig) -> CompressionResult:
    """Quantize the fp32 ONNX model to INT8 (static QDQ and dynamic), score all on validation, choose one."""
    calibration = splits.feeds("train", rows=config.calibration_rows)
    paths, skipped = quantize_candidates(fp32_path, calibration)
    feeds, targets = splits.feeds("validation"), splits.targets("validation")
    scores = [
        score_candidate(name, path, splits.spec, feeds, targets, config.latency_batch_size)
        for name, path in {"fp32": fp32_path, **paths}.items()
    ]
    chosen, reason = select_serving_candidate(scores, config)
    metric_name = MAIN_METRIC[splits.spec.task].removeprefix("test_")
    result = CompressionResult(
        tuple(scores), chosen, reason, metric_name, tuple(skipped), batch_size=config.latency_batch_size
    )
    return replace(result, plot=plot_candidates(result, fp32_path.parent / "compression_candidates.png"))


def plot_candidates(result: CompressionResult, path: Path) -> Path:
    """The candidates' validation metric against batch-1 latency, marker area by file size, the chosen one
    ringed: where a smaller or faster file costs accuracy, and where it does not."""
    from tasks.model.evaluation import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    largest = max(c.size_bytes for c in result.candidates)
    for c in result.candidates:
        area = 60 + 900 * c.size_bytes / largest
        ax.scatter(c.latency_ms_batch1, c.metric, s=area, alpha=0.6, label=f"{c.name} ({c.size_bytes / 1024:,.0f} KiB)")
        if c is result.chosen:
            ax.scatter(c.latency_ms_batch1, c.metric, s=area * 1.6, facecolors="none", edgecolors="black")
    ax.set(
        xlabel="latency of one request, batch 1 (ms)",
        ylabel=f"validation {result.metric_name}",
        title=f"Compression candidates (served: {result.chosen.name})",
    )
    ax.legend(fontsize=8, loc="best", markerscale=0.35)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
