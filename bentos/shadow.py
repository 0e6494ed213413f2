"""Shadow scoring: a candidate version answers the live requests production answered, off the request path, and
its answers and latency are written beside production's for the gate (tasks/monitoring/shadow_evidence.py).

`greenlight shadow VERSION` points the registry alias `shadow` at a candidate. Where capture is configured
(GREENLIGHT_CAPTURE_DIR) both services follow that alias besides `production`: a daemon thread looks at it every
GREENLIGHT_ALIAS_POLL_S, loads the candidate verified (bentos/follow.py fetch_verified), and drops it when the alias
goes. After production answered a request, the request path costs a dict lookup (no candidate: nothing more), a coin
flip (GREENLIGHT_SHADOW_RATE, default 1.0) and an append to a bounded queue. Every 0.2 s the same thread scores the
waiting requests with the candidate, times it, and appends rows to
<capture root>/<model>/shadow/<candidate version>/<start>-<pid>-<n>.parquet, rotated as capture's files are:
request_id, row, time, production_version, production_prediction, candidate_prediction, agree, production_ms,
candidate_ms. Nothing here fails or slows a request: a full queue, a candidate that cannot load or score, a failed
write drop samples and count them (greenlight_shadow_samples_total{outcome=...} in /metrics), logged once.
"""

import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bentos.capture import FLUSH_EVERY_S, Capture, CaptureSettings
from tasks.core.contract import Batch, softmax
from tasks.core.keys import SettingsRejected
from tasks.core.spec import DatasetSpec
from tasks.onnx.verified import ModelRefused, ServedModel

logger = logging.getLogger("greenlight.serving")

# Requests waiting for the candidate. A candidate slower than production falls behind under load: past this many
# waiting requests new ones are dropped (counted), never queued without bound.
MAX_PENDING = 5_000
# Regression answers agree within 5 % of the production answer's scale: |candidate - production| <= 0.05 x the larger
# of |production| and the mean |production| of the requests scored together (so an answer near zero, in a target
# whose values are in the hundreds, is not judged by a bar of almost nothing). Two trainings of one model on the
# same data differ by ~1 %; a candidate that answers differently differs by far more.
REGRESSION_TOLERANCE = 0.05
OUTCOMES = ("written", "queue_full", "load_error", "score_error", "write_error")


@dataclass(frozen=True)
class ShadowSample:
    """One request production answered, as the candidate needs it: the feeds it was answered from, and how."""

    model: str
    version: str  # the candidate's: the folder its rows go to
    request_id: str
    time: float
    production: ServedModel
    feeds: dict[str, np.ndarray]
    outputs: np.ndarray
    production_ms: float


@dataclass(frozen=True)
class Scored:
    """A sample with the candidate's outputs and time."""

    sample: ShadowSample
    outputs: np.ndarray
    candidate_ms: float


def shadow_rate(env: Mapping[str, str]) -> float:
    """GREENLIGHT_SHADOW_RATE: the share of production's requests the candidate also answers (default 1.0)."""
    raw = env.get("GREENLIGHT_SHADOW_RATE") or "1"
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise SettingsRejected(f"GREENLIGHT_SHADOW_RATE must be a number from 0 to 1, got {raw!r}")
    return rate


def request_differences(production: DatasetSpec, candidate: DatasetSpec) -> list[str]:
    """Why a request production answers would not be the same request to the candidate: its model inputs (ONNX
    inputs, their columns, each feature's type) or its answer's form (task, labels); [] when they are the same."""
    found = []
    if production.onnx_inputs() != candidate.onnx_inputs():
        found.append(f"model inputs {production.onnx_inputs()} vs {candidate.onnx_inputs()}")
    types = [{f.name: f.type for f in spec.model_features} for spec in (production, candidate)]
    if types[0] != types[1] and not found:
        changed = sorted(name for name in types[0] if types[0].get(name) != types[1].get(name))
        found.append(f"feature types of {', '.join(changed)}")
    if (production.task, production.label_texts()) != (candidate.task, candidate.label_texts()):
        found.append(
            f"answers {production.task} {production.label_texts()} vs {candidate.task} {candidate.label_texts()}"
        )
    return found


@dataclass
class Shadow(Capture):
    """The candidates being shadowed (model name -> loaded version), the queue on the request path and the thread
    that keeps the candidates on the `shadow` alias, scores and writes. The file handling is capture's."""

    settings: CaptureSettings = CaptureSettings()
    rate: float = 1.0
    poll: Callable[[], None] | None = None  # a look at the registry (Candidates.poll), every poll_s in the thread
    poll_s: float = 5.0
    candidates: dict[str, ServedModel] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # model -> the candidate version that cannot be used
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    compared: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (model, production, candidate) -> why
    failed_candidate: tuple[str, str] | None = None  # the last candidate whose failure was logged

    def offer(self, production: ServedModel, request_id: str, feeds: dict[str, np.ndarray], outputs, seconds) -> None:
        """Queue an answered request for the model's candidate, if it has one; never raises, never blocks."""
        candidate = self.candidates.get(production.name)
        if candidate is None:
            if production.name in self.broken:
                self.count("load_error", 1)
            return
        if candidate.version == production.version or (self.rate < 1.0 and self.chance() >= self.rate):
            return
        if len(self.pending) >= MAX_PENDING:
            self.count("queue_full", 1)
            return
        sample = ShadowSample(
            production.name, candidate.version, request_id, time.time(), production, feeds, outputs, seconds * 1000
        )
        self.pending.append(sample)

    def use(self, name: str, candidate: ServedModel | None) -> None:
        """Shadow this candidate for the model from now on (None: stop shadowing it)."""
        if candidate is None:
            self.candidates.pop(name, None)
        else:
            self.candidates[name] = candidate
        self.broken.pop(name, None)

    def run(self) -> None:
        polled = time.monotonic()
        while not self.stopped.wait(FLUSH_EVERY_S):
            if self.poll is not None and time.monotonic() - polled >= self.poll_s:
                self.poll()  # never raises (Candidates.poll)
                polled = time.monotonic()
            self.flush()

    def start(self) -> None:
        """The first look at the registry now, so a candidate shadows from the first requests; then the thread."""
        if self.poll is not None:
            self.poll()
        super().start()

    what = "shadow"
    counter_help = (
        "Requests for a shadowed candidate: written, or dropped (queue_full, load_error, score_error, write_error)"
    )

    def grouped(self, taken: list) -> dict[tuple[str, str], list]:
        """The waiting requests scored by each model's candidate, by candidate version (what cannot be, counted)."""
        scored = [found for sample in taken if (found := self.score(sample)) is not None]
        groups: dict[tuple[str, str], list] = {}
        for item in scored:
            groups.setdefault((item.sample.model, item.sample.version), []).append(item)
        return groups

    def folder_of(self, key: tuple[str, str]) -> str:
        return self.store.shadow_folder(*key)

    def table_of(self, items: list) -> Any:
        return shadow_table(items)

    def score(self, sample: ShadowSample) -> Scored | None:
        """The candidate's answer to the feeds production answered, timed; None (counted) when it cannot answer."""
        candidate = self.candidates.get(sample.model)
        if candidate is None or candidate.version != sample.version:
            return None  # the alias moved since the request: the sample belongs to no candidate now
        differences = self.differences(sample.production, candidate)
        if differences:
            return self.cannot_score(sample, f"its request contract differs from production's: {differences}")
        started = time.perf_counter()
        try:
            outputs = candidate.predict(Batch(sample.feeds, len(sample.outputs)))
        except Exception as error:  # onnxruntime raises its own types for feeds the graph refuses
            return self.cannot_score(sample, " ".join(str(error).split())[:300])
        return Scored(sample, outputs, (time.perf_counter() - started) * 1000)

    def differences(self, production: ServedModel, candidate: ServedModel) -> str:
        """request_differences of the pair, looked at once per pair of versions."""
        key = (production.name, production.version, candidate.version)
        if key not in self.compared:
            self.compared[key] = "; ".join(request_differences(production.contract.spec, candidate.contract.spec))
        return self.compared[key]

    def cannot_score(self, sample: ShadowSample, why: str) -> None:
        """Count the dropped sample; log the first of a candidate's failures (one line, not one per request)."""
        self.count("score_error", 1)
        if self.failed_candidate != (sample.model, sample.version):
            logger.error("shadow: %s version %s cannot answer: %s", sample.model, sample.version, why)
            self.failed_candidate = (sample.model, sample.version)
        return None


def predictions(outputs: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Label texts (classification: the most probable label) or the predicted numbers."""
    if spec.task == "regression":
        return outputs.reshape(-1).astype(np.float64)
    labels = np.array(spec.label_texts(), dtype=object)
    return labels[softmax(outputs.astype(np.float64)).argmax(axis=1)]


def agreement(production: np.ndarray, candidate: np.ndarray, task: str) -> np.ndarray:
    """Per row: the same label; regression: within REGRESSION_TOLERANCE of the production answer's scale."""
    if task != "regression":
        return production == candidate
    scale = np.maximum(np.abs(production), np.abs(production).mean() if len(production) else 0.0)
    return np.abs(candidate - production) <= REGRESSION_TOLERANCE * scale


def shadow_table(group: list[Scored]) -> Any:
    """One row per record of each request: who and when, both answers, whether they agree, both times."""
    import pyarrow as pa

    spec = group[0].sample.production.contract.spec
    rows = np.array([len(s.sample.outputs) for s in group])
    produced = predictions(np.concatenate([s.sample.outputs for s in group]), spec)
    candidate = predictions(np.concatenate([s.outputs for s in group]), spec)
    answer = pa.float64() if spec.task == "regression" else pa.string()
    columns = {
        "request_id": pa.array(np.repeat([s.sample.request_id for s in group], rows), pa.string()),
        "row": pa.array(np.concatenate([np.arange(count, dtype=np.int32) for count in rows])),
        "time": pa.array(np.repeat([int(s.sample.time * 1000) for s in group], rows), pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")
        ),
        "production_version": pa.array(np.repeat([s.sample.production.version for s in group], rows), pa.string()),
        "production_prediction": pa.array(produced, answer),
        "candidate_prediction": pa.array(candidate, answer),
        "agree": pa.array(agreement(produced, candidate, spec.task), pa.bool_()),
        "production_ms": pa.array(np.repeat([s.sample.production_ms for s in group], rows), pa.float64()),
        "candidate_ms": pa.array(np.repeat([s.candidate_ms for s in group], rows), pa.float64()),
    }
    return pa.table(columns)


class Candidates:
    """Keeps a Shadow's candidates on the versions the registry's `shadow` alias points to (one model's, or every
    model's for the many-model service); a registry or a candidate that cannot be read is logged once."""

    def __init__(self, shadow: Shadow, tracking_uri: str, verify_key: Any, threads: int, only: str | None) -> None:
        self.shadow = shadow
        self.tracking_uri = tracking_uri
        self.verify_key = verify_key
        self.threads = threads
        self.only = only
        self.refused: set[tuple[str, str]] = set()  # (model, version) not to try again until the alias moves
        self.registry_down = False
        self.downloads = tempfile.TemporaryDirectory(prefix="greenlight-shadow-")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    def poll(self) -> None:
        """One look at the alias: load what it points to now, stop shadowing what it left; never raises."""
        try:
            listing = self.listing()
        except Exception as error:  # MlflowException, or the database / HTTP error beneath it
            if not self.registry_down:
                logger.warning("shadow: cannot read the %s alias (%s); will retry", "shadow", str(error)[:300])
            self.registry_down = True
            return
        self.registry_down = False
        for name in [name for name in self.shadow.candidates if name not in listing]:
            logger.info("stopped shadowing %s version %s", name, self.shadow.candidates[name].version)
            self.shadow.use(name, None)
        for name in [name for name, version in self.shadow.broken.items() if listing.get(name) != version]:
            self.shadow.broken.pop(name)
        for name, version in listing.items():
            current = self.shadow.candidates.get(name)
            if (current is None or current.version != version) and (name, version) not in self.refused:
                self.load(name, version)

    def listing(self) -> dict[str, str]:
        from tasks.registry.client import SHADOW_ALIAS, versions_with_alias

        found = versions_with_alias(self.tracking_uri, SHADOW_ALIAS)
        return found if self.only is None else {k: v for k, v in found.items() if k == self.only}

    def load(self, name: str, version: str) -> None:
        """Fetch and verify the candidate; one that cannot be used is logged once and its requests counted."""
        from bentos.follow import fetch_verified
        from tasks.registry.client import get_version

        try:
            target = get_version(self.tracking_uri, name, version)
            directory = Path(self.downloads.name) / f"{name}-v{version}"
            candidate = fetch_verified(target, directory, self.verify_key, self.threads)
        except ModelRefused as refused:  # its checksum, signature or warm-up failed: not again until the alias moves
            self.refused.add((name, version))
            self.refuse(name, version, str(refused))
            return
        except Exception as error:  # a failed download, an unreachable registry: tried again at the next poll
            if self.shadow.broken.get(name) != version:
                self.refuse(name, version, f"cannot fetch it ({' '.join(str(error).split())[:300]}); will retry")
            return
        self.shadow.use(name, candidate)
        logger.info("shadowing %s version %s beside production (scores under %s)", name, version, self.where(name))

    def refuse(self, name: str, version: str, why: str) -> None:
        self.shadow.use(name, None)
        self.shadow.broken[name] = version
        logger.error("shadow: not scoring %s version %s: %s; production keeps answering", name, version, why)

    def where(self, name: str) -> str:
        return f"{self.shadow.settings.folder}/{name}/shadow"


def start_shadow(settings: Any, only: str | None) -> Shadow:
    """The shadow of a service (ServingSettings): following the `shadow` alias where capture has a folder and the
    registry is known, else a Shadow with no candidates, whose offer() returns at once."""
    shadow = Shadow(settings.capture, rate=settings.shadow_rate, poll_s=settings.poll_s)
    if settings.capture.folder is None or not settings.tracking_uri or settings.shadow_rate <= 0:
        return shadow
    candidates = Candidates(shadow, settings.tracking_uri, settings.verify_key, settings.ort_threads, only)
    shadow.poll = candidates.poll
    shadow.start()
    return shadow
