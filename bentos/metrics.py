"""Greenlight's own Prometheus metrics, served by BentoML's /metrics next to its request metrics.

BentoML already counts requests and times them per endpoint and status code
(bentoml_service_request_total, bentoml_service_request_duration_seconds); these add what it cannot know:

greenlight_model_info{model_name,model_version}                 1 while a worker serves that version, else 0
greenlight_model_switches_total{model_name}                     the served model changed (promotion, rollback)
greenlight_model_load_failures_total{model_name,model_version,reason}
                                                                 a model refused: checksum_mismatch,
                                                                 checksum_missing, spec_missing,
                                                                 spec_invalid, load_error
greenlight_registry_poll_errors_total{model_name}               the registry could not be read while following
greenlight_predicted_rows_total{model_name,model_version}       rows answered, per version
greenlight_inference_seconds{model_name}                        onnxruntime time per request (histogram)
"""

from typing import Any

# Fine buckets below 10 ms: a batch-1 CNN or table network takes ~0.05-0.1 ms, a batch of 4096 rows tens of ms.
INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServingMetrics:
    """The metrics of one worker; BentoML's multiprocess collector adds up all workers in /metrics."""

    def __init__(self, model_name: str) -> None:
        # Imported here, not at module top: prometheus_client picks single- or multi-process mode when
        # first imported, and only the worker, not an importer of this module, has PROMETHEUS_MULTIPROC_DIR.
        from prometheus_client import Counter, Gauge, Histogram

        self.model_name = model_name
        # registry=None: in multiprocess mode the values live in files that /metrics reads, and a second
        # service instance in one process (tests) must not trip the default registry's duplicate check.
        self.info = Gauge(
            "greenlight_model_info",
            "1 while this model version answers requests",
            ["model_name", "model_version"],
            registry=None,
            multiprocess_mode="livemax",
        )
        self.switches = Counter("greenlight_model_switches", "Served model changes", ["model_name"], registry=None)
        self.load_failures = Counter(
            "greenlight_model_load_failures",
            "Models refused at load (checksum or onnxruntime); the previous model keeps serving",
            ["model_name", "model_version", "reason"],
            registry=None,
        )
        self.poll_errors = Counter(
            "greenlight_registry_poll_errors", "Failed looks at the followed alias", ["model_name"], registry=None
        )
        self.rows = Counter(
            "greenlight_predicted_rows", "Rows answered", ["model_name", "model_version"], registry=None
        )
        self.rows_by_version: dict[str, Any] = {}
        self.inference = Histogram(
            "greenlight_inference_seconds",
            "onnxruntime time per request",
            ["model_name"],
            buckets=INFERENCE_BUCKETS,
            registry=None,
        ).labels(model_name=model_name)

    def served(self, old_version: str | None, new_version: str) -> None:
        if old_version is not None:
            self.info.labels(self.model_name, old_version).set(0)
            self.switches.labels(self.model_name).inc()
        self.info.labels(self.model_name, new_version).set(1)

    def refused(self, version: str, reason: str) -> None:
        self.load_failures.labels(self.model_name, version, reason).inc()

    def poll_failed(self) -> None:
        self.poll_errors.labels(self.model_name).inc()

    def answered(self, version: str, rows: int, seconds: float) -> None:
        # The child is looked up per version once: labels() per request costs as much as the inc itself.
        if version not in self.rows_by_version:
            self.rows_by_version[version] = self.rows.labels(self.model_name, version)
        self.rows_by_version[version].inc(rows)
        self.inference.observe(seconds)
