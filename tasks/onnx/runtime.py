"""ONNX Runtime, torch-free: sessions, logits, parity figures and candidate scoring (bentos import it)."""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tasks.core.schema import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME


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


def open_session(model: Path | bytes, threads: int = 2) -> ort.InferenceSession:
    """A CPU session from a file or from bytes already read (and checksummed) by the caller.

    Two intra-op threads by default because these machines have two cores; the service passes its own
    count (one per worker). One inter-op thread: the graphs here are chains, not parallel branches.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


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
