"""All onnxruntime work of the endpoint: load a model only if its bytes are the registered ones, warm it up,
answer rows with it, and swap it whole for another.

The checksum is the `onnx_sha256` tag that registration records on every version (sha256 of the .onnx
bytes); bentos.build copies it into the BentoML model's labels. The session is built from the very
bytes that were hashed, so a file replaced between the check and the load cannot slip through.
"""

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from bentos.metrics import ServingMetrics
from tasks.core.errors import GreenlightError
from tasks.onnx.runtime import open_session
from tasks.core.schema import LABELS, N_CLASSES, N_FEATURES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, PIXEL_MAX

logger = logging.getLogger("greenlight.serving")

# One row and a typical batch: the first run of each shape allocates onnxruntime's buffers.
WARM_UP_BATCHES = (1, 64)
# Output index -> label, for numpy's fancy indexing.
LABEL_OF_INDEX = np.asarray(LABELS)


class ModelRefused(GreenlightError):
    """A model that must not serve; reason is a metric label (checksum_mismatch, checksum_missing, load_error)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ServedModel:
    """One registered model version, loaded, verified and warmed up."""

    name: str
    version: str
    sha256: str
    session: object  # onnxruntime.InferenceSession, from tasks.onnx.runtime.open_session

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and softmax probabilities (float64) for float32 rows of 64 raw pixel values."""
        (logits,) = self.session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: pixels})
        probabilities = softmax(logits.astype(np.float64))
        return LABEL_OF_INDEX[probabilities.argmax(axis=1)], probabilities


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting the row max keeps exp() from overflowing."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def onnx_file(mlflow_model_dir: Path) -> Path:
    """The .onnx file that MLflow's onnx flavor recorded in the MLmodel file."""
    mlmodel = yaml.safe_load((mlflow_model_dir / "MLmodel").read_text())
    return mlflow_model_dir / mlmodel["flavors"]["onnx"]["data"]


def load_verified(path: Path, expected_sha256: str | None, name: str, version: str, threads: int) -> ServedModel:
    """Load `path` only if its sha256 is the registered one, then prove it answers; else ModelRefused."""
    where = f"{name} version {version} ({path})"
    if not expected_sha256:
        raise ModelRefused(
            f"{where} has no recorded onnx_sha256: register it through the pipeline and rebuild the bento",
            "checksum_missing",
        )
    content = path.read_bytes()
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected_sha256:
        raise ModelRefused(
            f"{where} fails its checksum: sha256 {actual[:12]}... but {expected_sha256[:12]}... was registered; "
            "the file changed after registration, refusing to serve it",
            "checksum_mismatch",
        )
    try:
        model = ServedModel(name, version, actual, open_session(content, threads))
        warm_up(model)
    except Exception as error:  # onnxruntime raises its own types (Fail, InvalidGraph, ...) for a bad graph
        raise ModelRefused(f"{where} cannot answer: {' '.join(str(error).split())[:300]}", "load_error") from error
    return model


def warm_up(model: ServedModel) -> None:
    """Answer each warm-up batch once and check the shape and values of the answer."""
    for rows in WARM_UP_BATCHES:
        labels, probabilities = model.predict(np.full((rows, N_FEATURES), PIXEL_MAX / 2, np.float32))
        if probabilities.shape != (rows, N_CLASSES) or not np.isfinite(probabilities).all():
            raise ValueError(f"warm-up on {rows} rows gave probabilities of shape {probabilities.shape}")


class ModelSlot:
    """The model answering requests right now, swapped whole: a request reads it once, so it is answered
    by one model from start to end, and requests already running finish on the model they started with."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics
        self.current: ServedModel | None = None
        self.problem = "the model is still loading"

    def serve(self, model: ServedModel) -> None:
        old = self.current
        self.current = model
        self.metrics.served(old.version if old else None, model.version)
        if old is None:
            logger.info("serving %s version %s (sha256 %s...)", model.name, model.version, model.sha256[:12])
        else:
            logger.info("switched %s from version %s to %s", model.name, old.version, model.version)

    def refuse(self, version: str, refused: ModelRefused) -> None:
        """Log and count a refused model; keep serving the current one if there is one."""
        self.metrics.refused(version, refused.reason)
        if self.current is None:
            self.problem = str(refused)
            logger.error("not serving: %s", refused)
        else:
            logger.error("still serving version %s: %s", self.current.version, refused)

    def timed_predict(self, model: ServedModel, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        started = time.perf_counter()
        answer = model.predict(pixels)
        self.metrics.answered(model.version, len(pixels), time.perf_counter() - started)
        return answer
