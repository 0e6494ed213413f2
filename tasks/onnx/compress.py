"""Compression stage: INT8 candidates from ONNX Runtime, and the choice of what to serve."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import CompressionConfig
from tasks.core.schema import ONNX_INPUT_NAME
from tasks.data.files import DataSplits
from tasks.onnx.runtime import CandidateScore, score_candidate


class _RowsReader(CalibrationDataReader):
    """Feeds calibration rows to the static quantizer in small batches."""

    def __init__(self, pixels: np.ndarray, batch_size: int = 64) -> None:
        self._batches = iter([pixels[i : i + batch_size] for i in range(0, len(pixels), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {ONNX_INPUT_NAME: batch.astype(np.float32)}


def prepare_for_quantization(fp32_path: Path) -> Path:
    """Shape inference and graph optimisation that ONNX Runtime's quantizers expect first."""
    prepared = fp32_path.with_name("model.prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    return prepared


def quantize_int8_static(prepared: Path, calibration: np.ndarray, out_dir: Path) -> Path:
    """Static INT8 QDQ quantization, activations calibrated on training rows."""
    path = out_dir / "model.int8-static.onnx"
    quantize_static(
        str(prepared),
        str(path),
        _RowsReader(calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    return path


def quantize_int8_dynamic(prepared: Path, out_dir: Path) -> Path:
    """Dynamic INT8 quantization: weights stored as int8, activations quantized at run time."""
    path = out_dir / "model.int8-dynamic.onnx"
    quantize_dynamic(str(prepared), str(path), weight_type=QuantType.QInt8)
    return path


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
