"""What a stage's result puts on the run's record (MLflow run, Prefect artifacts), as plain values.

A stage's result type says what of it is worth keeping through a `record()` method returning a `Record`; the
run context (tasks/registry/tracking.py) logs any such value. So a new figure on the run is a line in that
method, and the registry stage never imports the stage that produced it.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tasks.core.spec import Spec

SPEC_ARTIFACT = "spec/spec.yaml"  # on the run; each version's `spec` tag points at it
LINEAGE_TAG_PREFIX = "lineage."  # a version's tags saying where it came from (tasks/model/lineage.py)


@dataclass(frozen=True)
class Note:
    """A Markdown artifact in the Prefect UI (its key is stable across runs, so the UI shows its history)."""

    key: str
    markdown: str
    description: str


@dataclass(frozen=True)
class Link:
    """A link artifact in the Prefect UI to a file the record logs (artifact_path, as on the MLflow run)."""

    key: str
    artifact_path: str
    text: str
    description: str


@dataclass(frozen=True)
class Record:
    """Metrics, params, tags, files (artifact folder -> files or folders), per-step series, texts written as
    artifacts (artifact file -> content), Prefect notes, links and images (artifact paths of logged images)."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    series: tuple[tuple[str, float, int], ...] = ()
    texts: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[Note, ...] = ()
    links: tuple[Link, ...] = ()
    images: tuple[Link, ...] = ()


class RunLinks(Protocol):
    """Where a person opens an artifact of the run: what a record's Markdown links to."""

    def link(self, artifact_path: str) -> str: ...


class Recorded(Protocol):
    """A stage's result that knows what of it belongs on the run's record."""

    def record(self, links: RunLinks) -> Record: ...


@dataclass(frozen=True)
class ChildRecord:
    """A nested run under the pipeline's run (a sweep's trial): its name, record, and when and how it ended."""

    name: str
    record: Record
    started: float  # seconds since the epoch
    finished: float
    succeeded: bool


@dataclass(frozen=True)
class RegistrationRequest:
    """A model file to register as a new version, with what the registry keeps beside it: the spec the service
    reads back, tags, a description, and the data summary later runs measure drift against (tasks.data.drift)."""

    model_name: str
    onnx_path: Path
    spec: Spec
    tags: Mapping[str, str]
    description: str
    data_summary: Path | None = None


@dataclass(frozen=True)
class ProductionFile:
    """A file stored with the production version, fetched for this run: its path, or why there is none."""

    model_name: str
    version: str | None  # None: no production version yet
    path: Path | None
    error: str | None = None  # the registry or the file system refused (the run goes on without it)
