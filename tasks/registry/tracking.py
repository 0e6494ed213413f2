"""The run context: one pipeline run's MLflow run, working folder, records and failure marking.

`with tracking_run(config) as run:` opens it; stages report their results with `run.report(value)` (any value
with a `record()` method, tasks/core/records.py); leaving the block by an exception, Ctrl-C included, marks the
run FAILED and a version it registered `gate_verdict: error`. This stage imports no other stage.
"""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_image_artifact, create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.core.config import RunConfig
from tasks.core.errors import TRANSIENT_RETRIES, transient_only
from tasks.core.keys import key_id, load_signing_key, sign, signed_payload
from tasks.core.locations import Locations, resolve_locations
from tasks.core.processes import current_owner
from tasks.core.records import SPEC_ARTIFACT, ChildRecord, ProductionFile, Record, Recorded, RegistrationRequest
from tasks.core.timing import start_clock
from tasks.registry.client import (
    DATA_SUMMARY_TAG,
    ModelVersionRef,
    RegistryError,
    TrackingRun,
    download_data_summary,
    find_version,
    finish_tracking_run,
    log_data_summary,
    log_files,
    log_metric_series,
    log_params,
    log_texts,
    register_onnx_model,
    run_artifact_image_url,
    run_artifact_link,
    set_run_tags,
    start_nested_run,
    start_tracking_run,
    tag_model_version,
    versions_of_run,
)
from tasks.registry.recovery import OWNER_TAG, recover_abandoned

TRACKED = {"cache_policy": NO_CACHE, "retry_condition_fn": transient_only, **TRANSIENT_RETRIES}


@dataclass(frozen=True)
class RunContext:
    """What a stage needs of the run it belongs to: folders to write in, a place to report, the registry."""

    tracking: TrackingRun
    work_dir: Path  # this run's own folder under the data home's runs/
    locations: Locations
    experiment_name: str

    @property
    def tracking_uri(self) -> str:
        return self.tracking.tracking_uri

    def folder(self, name: str) -> Path:
        """A folder of this run's working files (created), e.g. run.folder("validation")."""
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def link(self, artifact_path: str) -> str:
        """Where a person opens one of the run's artifacts (the MLflow UI on a server, else the file's URI)."""
        return run_artifact_link(self.tracking, artifact_path)

    def report(self, result: Recorded) -> None:
        """Put what the result says of itself (its record()) on the MLflow run and in the Prefect UI."""
        kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(result).__name__).lower()
        log_record(run=self.tracking, record=result.record(self), kind=kind)

    def report_child(self, child: ChildRecord) -> str:
        """A nested run under this one (a sweep's trial); returns its run id."""
        return log_child_run(run=self.tracking, child=child)

    def register(self, request: RegistrationRequest) -> ModelVersionRef:
        return register_model(run=self.tracking, request=request)

    def production_data_summary(self, model_name: str) -> ProductionFile:
        return fetch_production_data_summary(self.tracking_uri, model_name, self.folder("reference"))

    def recover_abandoned(self, model_name: str) -> int:
        return recover_abandoned_runs(self.tracking_uri, self.experiment_name, model_name)


@contextmanager
def tracking_run(config: RunConfig) -> Iterator[RunContext]:
    """Open the run (its folder, its MLflow run, the stage clock); close it FINISHED, or FAILED with the error on
    the run and on any version it registered, whatever ended it (a Ctrl-C or SIGTERM too)."""
    start_clock()
    locations = resolve_locations()
    work_dir = prepare_workspace(runs_dir=locations.runs_dir)
    run = RunContext(open_tracking_run(locations.tracking_uri, config), work_dir, locations, config.experiment_name)
    try:
        yield run
    except BaseException as error:  # nothing may be left looking unfinished
        mark_run_failed(run=run.tracking, error=str(error) or type(error).__name__)
        raise
    finish_tracking_run(run.tracking, succeeded=True)


@task(name="prepare_workspace", cache_policy=NO_CACHE)
def prepare_workspace(runs_dir: Path) -> Path:
    """runs_dir/<UTC time>-<flow run id prefix>, created empty: runs never overwrite each other's files."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = runs_dir / f"{stamp}-{str(flow_run.get_id() or 'local')[:8]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def flatten(prefix: str, value: object) -> dict[str, str]:
    """Nested config as dotted MLflow params: training.learning_rate=0.002."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flatten(f"{prefix}{key}.", sub).items()}
    return {prefix.rstrip("."): str(value)}


@task(name="open_tracking_run", **TRACKED)
def open_tracking_run(tracking_uri: str, config: RunConfig) -> TrackingRun:
    """Create this pipeline run's MLflow run, tagged with the Prefect flow run it belongs to."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tags = {
        "prefect_flow_run_id": str(flow_run.get_id() or "none"),
        "pipeline": "training_pipeline",
        OWNER_TAG: current_owner(),  # a later run tells from it whether this one died (recovery.py)
    }
    return start_tracking_run(
        tracking_uri, config.experiment_name, f"train-{stamp}", flatten("", config.model_dump()), tags
    )


@task(name="log_record", task_run_name="log_{kind}", **TRACKED)
def log_record(run: TrackingRun, record: Record, kind: str) -> None:
    """One stage's record: each kind of entry in as few calls as MLflow allows, then the Prefect artifacts."""
    if record.params:
        log_params(run, dict(record.params))
    if points := [*record.series, *((name, value, 0) for name, value in record.metrics.items())]:
        log_metric_series(run, points)
    set_run_tags(run, dict(record.tags))
    for folder, paths in record.files.items():
        log_files(run, list(paths), folder)
    log_texts(run, dict(record.texts))
    for link in record.links:
        url = run_artifact_link(run, link.artifact_path)
        create_link_artifact(key=link.key, link=url, link_text=link.text, description=link.description)
    for image in record.images:
        if (url := run_artifact_image_url(run, image.artifact_path)) is not None:  # a server: the UI shows it
            create_image_artifact(image_url=url, key=image.key, description=image.description)
    for note in record.notes:
        create_markdown_artifact(key=note.key, markdown=note.markdown, description=note.description)


@task(name="log_child_run", **TRACKED)
def log_child_run(run: TrackingRun, child: ChildRecord) -> str:
    """A nested run with its params, tags, metrics and series, ended as it ended; returns its run id."""
    record = child.record
    nested = start_nested_run(run, child.name, dict(record.params), dict(record.tags), int(child.started * 1000))
    log_metric_series(nested, [*record.series, *((name, value, 0) for name, value in record.metrics.items())])
    finish_tracking_run(nested, succeeded=child.succeeded, end_ms=int(child.finished * 1000))
    return nested.run_id


@task(name="fetch_production_data_summary", cache_policy=NO_CACHE)
def fetch_production_data_summary(tracking_uri: str, model_name: str, dst_dir: Path) -> ProductionFile:
    """The data summary stored with the production version (None: no production, or registered without one)."""
    production = find_version(tracking_uri, model_name)
    if production is None:
        return ProductionFile(model_name, None, None)
    try:
        return ProductionFile(model_name, production.version, download_data_summary(production, dst_dir))
    except (RegistryError, OSError) as error:
        return ProductionFile(model_name, production.version, None, str(error))


@task(name="recover_abandoned_runs", cache_policy=NO_CACHE)
def recover_abandoned_runs(tracking_uri: str, experiment_name: str, model_name: str) -> int:
    """Mark what earlier runs that died left behind (versions, MLflow runs, Prefect flow runs); returns how many."""
    recovered = recover_abandoned(tracking_uri, experiment_name, model_name)
    for line in recovered.lines:
        print(line)
    return len(recovered.lines)


@task(name="register_model", **TRACKED)
def register_model(run: TrackingRun, request: RegistrationRequest) -> ModelVersionRef:
    """Register the file, with its spec, as a new version of the request's model, signed when a key is set."""
    tags = {**request.tags, "spec": f"runs:/{run.run_id}/{SPEC_ARTIFACT}", OWNER_TAG: current_owner()}
    if request.data_summary is not None:
        tags[DATA_SUMMARY_TAG] = log_data_summary(run, request.data_summary)
    signing_key = load_signing_key(os.environ)  # read before registering: a bad key file registers nothing
    version = register_onnx_model(run, request.onnx_path, request.model_name, request.spec, tags, request.description)
    if signing_key is None:
        return tag_model_version(version, {"signature": "none"})
    spec = request.spec.model_dump(mode="json")
    payload = signed_payload(tags["onnx_sha256"], spec, request.model_name, version.version)
    signed = {"signature": sign(signing_key, payload), "signature_key_id": key_id(signing_key.public_key())}
    return tag_model_version(version, signed)


@task(name="tag_version", **TRACKED)
def tag_version(version: ModelVersionRef, tags: dict[str, str]) -> ModelVersionRef:
    return tag_model_version(version, tags)


@task(name="mark_run_failed", **TRACKED)
def mark_run_failed(run: TrackingRun, error: str) -> None:
    """The run FAILED with its error; a version it registered and the gate has not judged says so too, so nobody
    mistakes it for a candidate."""
    for version in versions_of_run(run):
        if version.tags.get("gate_verdict") == "pending":
            tag_model_version(version, {"gate_verdict": "error", "gate_reason": error[:4000]})
    set_run_tags(run, {"error": error[:4000]})
    finish_tracking_run(run, succeeded=False)
