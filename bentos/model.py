"""The model a service answers with right now, swapped whole when the registry alias moves (bentos/follow.py).

Loading and verifying a version is tasks/onnx/verified.py's work, shared with batch scoring.
"""

import logging
import time

import numpy as np

from bentos.metrics import ServingMetrics
from tasks.core.contract import Batch
from tasks.onnx.verified import ModelRefused, ServedModel

logger = logging.getLogger("greenlight.serving")


class ModelSlot:
    """The model answering requests right now, with its contract, swapped whole: a request reads it once, so
    it is parsed and answered by one version from start to end, and requests already running finish on the
    version they started with."""

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
            if old.contract.spec != model.contract.spec:
                logger.info("the request contract changed with the spec of version %s: GET / shows it", model.version)

    def refuse(self, version: str, refused: ModelRefused) -> None:
        """Log and count a refused model; keep serving the current one if there is one."""
        self.metrics.refused(version, refused.reason)
        if self.current is None:
            self.problem = str(refused)
            logger.error("not serving: %s", refused)
        else:
            logger.error("still serving version %s: %s", self.current.version, refused)

    def timed_predict(self, model: ServedModel, batch: Batch) -> np.ndarray:
        started = time.perf_counter()
        outputs = model.predict(batch)
        self.metrics.answered(model.version, batch.size, time.perf_counter() - started)
        return outputs
