"""The model a service answers with right now, swapped whole when the registry alias moves (bentos/follow.py).

Loading and verifying a version is tasks/onnx/verified.py's work, shared with batch scoring.
"""

import gc
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


def settle_garbage_collector() -> None:
    """Keep Python's full collections from stalling requests for 100-370 ms several times a minute.

    Measured with a gc.callbacks probe under benchmarks/serving.py: BentoML, pydantic and MLflow leave
    ~300k long-lived objects, and every full collection walked them all; that was the p99 of 100-300 ms
    at 8 connections. Startup's objects are frozen out of collection, and the oldest generation is
    collected rarely: request garbage dies in the young generations.
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)
