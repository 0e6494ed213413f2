"""Greenlight's Prometheus metrics and the GET /metrics that serves them (bentos/endpoint.py).

BentoML's own request metrics are off (their middleware cost ~60 us a request); POST /predict is counted and timed
here instead, for a few microseconds. The metrics and their labels: docs/serving.md.
"""

import os
from typing import Any

# Fine buckets below 10 ms: a batch-1 CNN or table network takes ~0.05-0.1 ms, a batch of 4096 rows tens of ms.
INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


# Request latency: the endpoint answers in ~0.3 ms when idle; queueing at 8-32 connections reaches milliseconds.
REQUEST_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0)


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
        self.requests = Counter(
            "greenlight_requests", "POST /predict answers, by HTTP status", ["model_name", "status"], registry=None
        )
        self.requests_by_status: dict[int, Any] = {}
        self.request_seconds = Histogram(
            "greenlight_request_seconds",
            "POST /predict from reading the request to sending the answer",
            ["model_name"],
            buckets=REQUEST_BUCKETS,
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

    def requested(self, status: int, seconds: float) -> None:
        """One POST /predict answered (a refusal too) with this status, after this long."""
        if status not in self.requests_by_status:
            self.requests_by_status[status] = self.requests.labels(self.model_name, str(status))
        self.requests_by_status[status].inc()
        self.request_seconds.observe(seconds)


def exposition() -> bytes:
    """Every worker's metrics in Prometheus text format: the multiprocess files BentoML's workers write to
    (`bentoml serve` sets PROMETHEUS_MULTIPROC_DIR), else this process's registry (a service made in a test)."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(SortedHistograms(registry))


class SortedHistograms:
    """A registry view whose histograms list _bucket samples before _count and _sum, as the exposition format
    expects: the multiprocess collector accumulates them in the other order (BentoML sorts them the same way)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Any:
        for metric in self.registry.collect():
            if metric.type == "histogram":
                metric.samples.sort(key=lambda sample: not sample.name.endswith("_bucket"))
            yield metric
