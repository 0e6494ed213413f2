"""All ONNX and ONNX Runtime work: export, parity with PyTorch, INT8 quantization, scoring."""

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from tasks.schema import N_FEATURES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME

# torch.onnx.export keeps exporter state in module globals: two flows exporting at once in one
# process (threads of a worker, concurrent test runs) fail with "GLOBALS.in_onnx_export must be False".
_EXPORT_LOCK = threading.Lock()
# Opset 17 is read by every ONNX Runtime release of the last three years and has all ops the CNN needs.
OPSET = 17


@dataclass(frozen=True)
class ParityReport:
    """How closely an ONNX model's logits follow PyTorch's on the same rows."""

    rows: int
    max_abs_logit_diff: float
    argmax_agreement: float


@dataclass(frozen=True)
class CandidateScore:
    """One model file as it would be served: size, accuracy and latency on the test rows."""

    name: str
    path: Path
    size_bytes: int
    accuracy: float
    latency_ms_per_batch: float


def export_onnx(model: torch.nn.Module, path: Path) -> Path:
    """Export to a single .onnx file (weights inline) with a dynamic batch axis."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, N_FEATURES, dtype=torch.float32)
    # The TorchScript exporter: the dynamo one needs onnxscript and gains nothing for a static CNN.
    with _EXPORT_LOCK:
        torch.onnx.export(
            model.to("cpu").eval(),
            (example,),
            str(path),
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(path), full_check=True)
    return path


def open_session(path: Path) -> ort.InferenceSession:
    """A CPU session; two intra-op threads because these machines have two cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Logits of an ONNX model for rows of pixels (float32, shape [n, 64])."""
    session = open_session(path)
    return session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: pixels.astype(np.float32)})[0]


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> ParityReport:
    """Max absolute logit difference and argmax agreement of two logit matrices."""
    return ParityReport(
        rows=len(reference),
        max_abs_logit_diff=float(np.max(np.abs(reference - candidate))),
        argmax_agreement=float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1))),
    )


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


def score_candidate(name: str, path: Path, pixels: np.ndarray, labels: np.ndarray, batch_size: int) -> CandidateScore:
    """Accuracy on the test rows and median latency of one batch, as the service would run it."""
    session = open_session(path)
    logits = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: pixels})[0]
    batch = np.ascontiguousarray(pixels[:batch_size])
    timings = []
    for _ in range(50):
        started = time.perf_counter()
        session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: batch})
        timings.append(time.perf_counter() - started)
    return CandidateScore(
        name=name,
        path=path,
        size_bytes=path.stat().st_size,
        accuracy=float(np.mean(logits.argmax(axis=1) == labels)),
        latency_ms_per_batch=float(np.median(timings) * 1000.0),
    )
