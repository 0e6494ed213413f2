"""Compression stage: INT8 candidates from ONNX Runtime, and the choice of what to serve."""

from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import CompressionConfig
from tasks.data import DataSplits
from tasks.onnx_model import (
    CandidateScore,
    prepare_for_quantization,
    quantize_int8_dynamic,
    quantize_int8_static,
    score_candidate,
)


@dataclass(frozen=True)
class CompressionResult:
    """Every candidate measured on the test rows, and the one chosen for serving."""

    candidates: tuple[CandidateScore, ...]
    chosen: CandidateScore
    reason: str

    def table_markdown(self) -> str:
        rows = [
            f"| {c.name}{' (chosen)' if c is self.chosen else ''} | {c.size_bytes / 1024:.1f} | "
            f"{c.accuracy:.4f} | {c.latency_ms_per_batch:.3f} |"
            for c in self.candidates
        ]
        header = "| candidate | size (KiB) | test accuracy | latency per batch (ms) |\n|---|---|---|---|"
        return "\n".join([header, *rows, "", self.reason])


def select_serving_candidate(candidates: list[CandidateScore], config: CompressionConfig) -> tuple[CandidateScore, str]:
    """The smallest candidate within the accuracy and latency budgets of fp32 (always first, always eligible)."""
    fp32 = candidates[0]
    floor = fp32.accuracy - config.accuracy_budget_points / 100.0
    ceiling = fp32.latency_ms_per_batch * config.max_latency_ratio
    eligible = [fp32] + [c for c in candidates[1:] if c.accuracy >= floor and c.latency_ms_per_batch <= ceiling]
    chosen = min(eligible, key=lambda c: (c.size_bytes, c.latency_ms_per_batch))
    reason = (
        f"chose {chosen.name}: smallest of {[c.name for c in eligible]} with test accuracy >= {floor:.4f} "
        f"(fp32 {fp32.accuracy:.4f} minus {config.accuracy_budget_points} points) and latency <= {ceiling:.3f} ms "
        f"({config.max_latency_ratio}x fp32)"
    )
    return chosen, reason


@task(name="compress_model", cache_policy=NO_CACHE)
def compress_model(fp32_path: Path, splits: DataSplits, config: CompressionConfig) -> CompressionResult:
    """Quantize the fp32 ONNX model to INT8 (static QDQ and dynamic), score all, choose one."""
    out_dir = fp32_path.parent
    calibration = splits.x_train[: config.calibration_rows]
    prepared = prepare_for_quantization(fp32_path)
    paths = {
        "fp32": fp32_path,
        "int8-static-qdq": quantize_int8_static(prepared, calibration, out_dir),
        "int8-dynamic": quantize_int8_dynamic(prepared, out_dir),
    }
    prepared.unlink()
    scores = [
        score_candidate(name, path, splits.x_test, splits.y_test, config.latency_batch_size)
        for name, path in paths.items()
    ]
    chosen, reason = select_serving_candidate(scores, config)
    return CompressionResult(candidates=tuple(scores), chosen=chosen, reason=reason)
