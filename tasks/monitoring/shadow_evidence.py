"""Shadow evidence: how a candidate answered the live requests production answered (bentos/shadow.py wrote them
under <capture root>/<model>/shadow/<version>/), in the figures `greenlight show` prints and the gate judges
(tasks/release/gate.py shadow_checks): requests, agreement with production, both latencies, the period covered.
"""

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from tasks.core.capture_store import CaptureStore

LATENCY_QUANTILES = (50, 95, 99)


@dataclass(frozen=True)
class Latency:
    """Per-request milliseconds: p50, p95, p99."""

    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, milliseconds: np.ndarray) -> "Latency":
        return cls(*(float(value) for value in np.percentile(milliseconds, LATENCY_QUANTILES)))

    def text(self) -> str:
        return f"p50 {self.p50:.3g} ms, p95 {self.p95:.3g} ms, p99 {self.p99:.3g} ms"


@dataclass(frozen=True)
class ShadowEvidence:
    """A shadowed candidate's figures on the requests captured so far; requests == 0: none captured."""

    model: str
    version: str
    where: str  # the folder the rows were read from
    requests: int
    rows: int
    agreement: float | None  # share of rows answered as production did; None without rows
    candidate_ms: Latency | None
    production_ms: Latency | None
    first: datetime | None
    last: datetime | None
    production_versions: tuple[str, ...]
    unfinished: int = 0  # files a running service is still writing: their rows show once they rotate
    unreadable: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The evidence as `greenlight show` prints it."""
        waiting = f"; {self.unfinished} file(s) still being written" if self.unfinished else ""
        if self.requests == 0:
            return [f"none captured under {self.where}{waiting}"]
        versions = ", ".join(f"v{version}" for version in self.production_versions)
        lines = [
            f"{self.requests} shadowed requests ({self.rows} rows) beside production {versions}{waiting}",
            f"agreement  {self.agreement:.2%} of rows answered as production did",
            f"latency    candidate {self.candidate_ms.text()}",
            f"           production {self.production_ms.text()}",
            f"period     {self.first:%Y-%m-%d %H:%M:%S} to {self.last:%Y-%m-%d %H:%M:%S} UTC",
            f"from       {self.where}",
        ]
        return lines + [f"unreadable {problem}" for problem in self.unreadable]


def shadow_evidence(store: CaptureStore, model: str, version: str, beside: str | None = None) -> ShadowEvidence:
    """Read every finished shadow file of the candidate and sum it up (latency per request, agreement per row).

    beside: count only the requests answered by this production version (what the gate compares the candidate with:
    agreement with a production version since replaced says nothing about the one it would replace)."""
    folder = store.shadow_folder(model, version)
    captured = store.read(folder)
    where = f"{store.location.rstrip('/')}/{model}/shadow/{version}"
    if beside is not None:
        where += f" beside production v{beside}"
    empty = ShadowEvidence(model, version, where, 0, 0, None, None, None, None, None, (), captured.unfinished)
    if captured.table is None or captured.rows == 0:
        return empty
    frame = captured.table.to_pandas()
    if beside is not None:
        frame = frame[frame["production_version"] == str(beside)]
        if frame.empty:
            return empty
    # One latency per request: every row of a request carries the same two times.
    requests = frame.drop_duplicates("request_id")
    return ShadowEvidence(
        model=model,
        version=version,
        where=where,
        requests=len(requests),
        rows=len(frame),
        agreement=float(frame["agree"].mean()),
        candidate_ms=Latency.of(requests["candidate_ms"].to_numpy()),
        production_ms=Latency.of(requests["production_ms"].to_numpy()),
        first=frame["time"].min().to_pydatetime(),
        last=frame["time"].max().to_pydatetime(),
        production_versions=tuple(sorted(frame["production_version"].unique(), key=int)),
        unfinished=captured.unfinished,
        unreadable=captured.unreadable,
    )
