"""All MLflow access: the tracking run, the registered versions, their tags and the production alias."""

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from urllib.parse import urlencode, urlparse

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from tasks.core.locations import code_version, sqlite_database
from tasks.core.policy import POLICY_HISTORY_PREFIX, ApprovalPolicy, policy_from_tags
from tasks.core.spec import SPEC_METADATA_KEY, FeatureSpec, Spec

PRODUCTION_ALIAS = "production"
# What callers outside this module catch when the registry refuses a request.
RegistryError = MlflowException
# MLflow caps one log_batch call at 1000 metrics; a batch per call is the whole point (~50 ms per HTTP call).
MAX_METRICS_PER_BATCH = 1000


@dataclass(frozen=True)
class TrackingRun:
    """One MLflow run, named by its store and id; all logging goes through an explicit client."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered model version, and what its tags say."""

    tracking_uri: str
    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)


def _error_code(error: MlflowException) -> int:
    return ErrorCode.Value(error.error_code) if isinstance(error.error_code, str) else error.error_code


def default_artifact_location(tracking_uri: str) -> str | None:
    """For a local SQLite store, keep artifacts beside the database instead of in the current directory."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite" or not parsed.path:
        return None  # a tracking server decides where its artifacts go
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return (database.parent / "mlartifacts").resolve().as_uri()


def get_or_create_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The experiment's id, creating it (with a sensible artifact location) on first use."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    try:
        return client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri))
    except MlflowException as error:  # another run created it between our look-up and create
        if _error_code(error) != RESOURCE_ALREADY_EXISTS:
            raise
        return client.get_experiment_by_name(name).experiment_id


def start_tracking_run(
    tracking_uri: str, experiment_name: str, run_name: str, params: dict[str, str], tags: dict[str, str]
) -> TrackingRun:
    """Create the pipeline's MLflow run and log its parameters in one batch."""
    create_local_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment_name, tracking_uri)
    run = client.create_run(experiment_id, run_name=run_name, tags={"git_commit": code_version()[0], **tags})
    tracking = TrackingRun(tracking_uri, experiment_id, run.info.run_id)
    log_params(tracking, params)
    return tracking


def start_nested_run(
    parent: TrackingRun, run_name: str, params: dict[str, str], tags: dict[str, str], start_ms: int
) -> TrackingRun:
    """A run under the parent (MLflow's UI lists it beneath it; search it by tags.mlflow.parentRunId)."""
    run = parent.client().create_run(
        parent.experiment_id, start_time=start_ms, run_name=run_name, tags={MLFLOW_PARENT_RUN_ID: parent.run_id, **tags}
    )
    nested = TrackingRun(parent.tracking_uri, parent.experiment_id, run.info.run_id)
    log_params(nested, params)
    return nested


def log_params(run: TrackingRun, params: dict[str, str]) -> None:
    """Log parameters in one batch (a value is cut at MLflow's 6,000 characters)."""
    run.client().log_batch(run.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()], synchronous=True)


def log_metrics(run: TrackingRun, metrics: dict[str, float], step: int = 0) -> None:
    """Log many metrics in as few HTTP calls as MLflow allows."""
    log_metric_series(run, [(name, value, step) for name, value in metrics.items()])


def log_metric_series(run: TrackingRun, points: list[tuple[str, float, int]], model_id: str | None = None) -> None:
    """Log (name, value, step) points, e.g. per-epoch curves, in batches, stamped now (with model_id: on that
    logged model too)."""
    timestamp = int(np.datetime64("now", "ms").astype(np.int64))
    log_metric_points(run, [(name, value, timestamp, step) for name, value, step in points], model_id)


def log_metric_points(run: TrackingRun, points: list[tuple[str, float, int, int]], model_id: str | None = None) -> None:
    """Log (name, value, timestamp ms, step) points in batches; with model_id on that logged model too (MLflow 3: its
    page in the UI lists them, e.g. a version's live accuracy per day)."""
    metrics = [Metric(name, float(value), stamp, step, model_id=model_id) for name, value, stamp, step in points]
    client = run.client()
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run.run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH], synchronous=True)


def log_files(run: TrackingRun, paths: list[Path], artifact_path: str) -> None:
    """Attach files or whole directories to the run under artifact_path."""
    client = run.client()
    for path in paths:
        if path.is_dir():
            client.log_artifacts(run.run_id, str(path), f"{artifact_path}/{path.name}")
        else:
            client.log_artifact(run.run_id, str(path), artifact_path)


def log_texts(run: TrackingRun, texts: dict[str, str]) -> None:
    """Write each text as the run's artifact file of that path (spec/spec.yaml), no local copy needed."""
    client = run.client()
    for artifact_file, text in texts.items():
        client.log_text(run.run_id, text, artifact_file)


def versions_of_run(run: TrackingRun) -> list[ModelVersionRef]:
    """The versions registered from this run (normally one)."""
    found = run.client().search_model_versions(f"run_id = '{run.run_id}'")
    return [ModelVersionRef(run.tracking_uri, v.name, str(v.version), v.run_id, dict(v.tags)) for v in found]


def set_run_tags(run: TrackingRun, tags: dict[str, str]) -> None:
    client = run.client()
    for key, value in tags.items():
        client.set_tag(run.run_id, key, str(value))


def finish_tracking_run(run: TrackingRun, succeeded: bool, end_ms: int | None = None) -> None:
    """Mark the run FINISHED or FAILED so the UI does not show it as running forever (end_ms: when it ended,
    if not now)."""
    status = RunStatus.to_string(RunStatus.FINISHED if succeeded else RunStatus.FAILED)
    run.client().set_terminated(run.run_id, status=status, end_time=end_ms)


def end_abandoned_run(tracking_uri: str, run_id: str, reason: str) -> None:
    """A run whose process died: KILLED, with why, so it stops reading RUNNING (or FINISHED) forever."""
    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_tag(run_id, "error", reason[:4000])
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))


def running_runs(tracking_uri: str, experiment_name: str) -> list[tuple[str, dict[str, str]]]:
    """(run id, tags) of the experiment's runs that read RUNNING; empty when the experiment does not exist."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    found = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'", max_results=200)
    return [(run.info.run_id, dict(run.data.tags)) for run in found]


def versions_with_verdict(tracking_uri: str, model_name: str, verdict: str) -> list[ModelVersionRef]:
    """A model's versions whose gate_verdict tag reads `verdict` (e.g. the ones still 'pending')."""
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.search_model_versions(f"name = '{model_name}' and tags.gate_verdict = '{verdict}'")
    return [ModelVersionRef(tracking_uri, model_name, str(v.version), v.run_id, dict(v.tags)) for v in found]


def run_status(tracking_uri: str, run_id: str) -> str:
    return MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.status


def column_type(feature: FeatureSpec) -> str:
    """MLflow's column type for a feature's raw values (its type says): what a client sends, not what the graph
    computes."""
    return feature.signature_type()


def spec_signature(spec: Spec):
    """A column signature naming every input column with its type (optional where the spec allows missing),
    and the answer: the predicted label (in the labels' own type) or the predicted number."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    dataset = spec.dataset
    inputs = [
        ColSpec(column_type(f), column, required=not f.nullable)
        for f in dataset.features
        for column in f.source_columns
    ]
    if dataset.task == "regression":
        output = ColSpec("double", "prediction")
    else:
        labels = FeatureSpec(name=dataset.target.name, type="categorical", values=dataset.target.labels)
        output = ColSpec(column_type(labels), "prediction")
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([output]))


def ensure_registered_model(client: MlflowClient, name: str, spec: Spec) -> None:
    dataset = spec.dataset
    what = f"{dataset.task} of '{dataset.target.name}' from {len(dataset.model_features)} feature(s) of {dataset.name}"
    try:
        client.create_registered_model(name, description=f"Greenlight {what} (ONNX, {spec.model.family}).")
    except MlflowException as error:
        if _error_code(error) != RESOURCE_ALREADY_EXISTS:
            raise


FLUENT_LOCK = threading.RLock()


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at uri, then put back both its setting and MLFLOW_TRACKING_URI.

    mlflow.set_tracking_uri also rewrites os.environ, which every child process (the bento build,
    the serving check) would inherit: a leak from one run's store into the next command's.
    """
    # MLflow's own context manager puts back the setting as it was, "not set" included. Setting back the URI that
    # get_tracking_uri() read (from the variable) would pin it: a later test or command with another
    # MLFLOW_TRACKING_URI would still read this store through the fluent API.
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    # One block at a time: MLflow's setting is one global, so two threads' blocks interleaving (Prefect tasks, a
    # service's poll) would put back each other's URI, and the last one out would pin a store for good.
    with FLUENT_LOCK:
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        try:
            with _use_tracking_uri(uri):
                yield
        finally:
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env


def register_onnx_model(
    run: TrackingRun, onnx_path: Path, model_name: str, spec: Spec, tags: dict[str, str], description: str
) -> ModelVersionRef:
    """Log the ONNX file as the run's model (column signature, the spec as metadata) and register a new version."""
    import mlflow
    import onnx

    # The registry resolves the logged model's source through the fluent URI too: both inside.
    with fluent_tracking_uri(run.tracking_uri):
        with mlflow.start_run(run_id=run.run_id):
            info = mlflow.onnx.log_model(
                onnx.load(str(onnx_path)),
                name="model",
                signature=spec_signature(spec),
                metadata={SPEC_METADATA_KEY: spec.model_dump(mode="json")},
                pip_requirements=[f"onnx=={package_version('onnx')}", f"onnxruntime=={package_version('onnxruntime')}"],
                save_as_external_data=False,
                # MLflow's default lists CUDA first and warns on every CPU load; the service picks its own.
                onnx_execution_providers=["CPUExecutionProvider"],
            )
        client = run.client()
        # Leaving start_run's block ended the pipeline's run as FINISHED: it is not finished until the gate.
        client.update_run(run.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        ensure_registered_model(client, model_name, spec)
        created = client.create_model_version(
            model_name,
            source=info.model_uri,
            run_id=run.run_id,
            tags=tags,
            description=description,
            model_id=info.model_id,
        )
    return ModelVersionRef(run.tracking_uri, model_name, str(created.version), run.run_id, dict(tags))


def read_version_spec(ref: ModelVersionRef) -> Spec | None:
    """The spec a version was registered with (None for versions registered before specs existed)."""
    import mlflow.models

    with fluent_tracking_uri(ref.tracking_uri):
        metadata = mlflow.models.get_model_info(ref.uri).metadata or {}
    raw = metadata.get(SPEC_METADATA_KEY)
    return None if raw is None else Spec.model_validate(raw)


def tag_model_version(ref: ModelVersionRef, tags: dict[str, str], description: str | None = None) -> ModelVersionRef:
    """Set tags (and optionally the description) on a version; returns the ref with merged tags."""
    client = ref.client()
    for key, value in tags.items():
        client.set_model_version_tag(ref.name, ref.version, key, str(value))
    if description is not None:
        client.update_model_version(ref.name, ref.version, description=description)
    return ModelVersionRef(ref.tracking_uri, ref.name, ref.version, ref.run_id, {**ref.tags, **tags})


def find_version(tracking_uri: str, model_name: str, alias: str = PRODUCTION_ALIAS) -> ModelVersionRef | None:
    """The version an alias points to, or None when the model or the alias does not exist yet."""
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        # The aliases map, not get_model_version_by_alias: stores disagree on the error for a missing alias.
        aliases = client.get_registered_model(model_name).aliases
    except MlflowException as error:
        if _error_code(error) != RESOURCE_DOES_NOT_EXIST:
            raise
        return None
    if alias not in aliases:
        return None
    return get_version(tracking_uri, model_name, str(aliases[alias]))


def versions_with_alias(tracking_uri: str, alias: str = PRODUCTION_ALIAS) -> dict[str, str]:
    """Registered model name -> the version an alias points to, for every model that has the alias."""
    client = MlflowClient(tracking_uri=tracking_uri)
    found, token = {}, None
    while True:
        page = client.search_registered_models(max_results=200, page_token=token)
        found |= {model.name: str(model.aliases[alias]) for model in page if alias in (model.aliases or {})}
        token = page.token
        if not token:
            return found


@dataclass(frozen=True)
class VersionRecord:
    """One version as `greenlight show` prints it: its tags, gate report, run and aliases."""

    ref: ModelVersionRef
    description: str
    created_ms: int
    aliases: tuple[str, ...]
    run_status: str


def describe_version(tracking_uri: str, model_name: str, version: str) -> VersionRecord:
    """A version's full record; a GreenlightError names what is missing."""
    from tasks.core.errors import GreenlightError

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        found = client.get_model_version(model_name, version)
    except MlflowException as error:
        raise GreenlightError(f"'{model_name}' has no version {version} in {tracking_uri}") from error
    run_status = "no run"
    if found.run_id:
        try:
            run_status = client.get_run(found.run_id).info.status
        except MlflowException:
            run_status = "run deleted"
    ref = ModelVersionRef(tracking_uri, model_name, str(found.version), found.run_id, dict(found.tags))
    aliases = tuple(found.aliases or ())
    return VersionRecord(ref, found.description or "", int(found.creation_timestamp or 0), aliases, run_status)


def get_version(tracking_uri: str, model_name: str, version: str) -> ModelVersionRef:
    found = MlflowClient(tracking_uri=tracking_uri).get_model_version(model_name, version)
    return ModelVersionRef(tracking_uri, model_name, str(found.version), found.run_id, dict(found.tags))


def list_versions(tracking_uri: str, model_name: str, limit: int = 10) -> list[ModelVersionRef]:
    """The newest versions of a model, newest first."""
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.search_model_versions(f"name = '{model_name}'", max_results=200)
    newest = sorted(found, key=lambda v: int(v.version), reverse=True)[:limit]
    return [ModelVersionRef(tracking_uri, model_name, str(v.version), v.run_id, dict(v.tags)) for v in newest]


def download_version_onnx(ref: ModelVersionRef, dst_dir: Path) -> Path:
    """Fetch a version's ONNX file from the registry into dst_dir."""
    import mlflow.artifacts

    dst_dir.mkdir(parents=True, exist_ok=True)
    # models:/ URIs resolve through the fluent registry URI, whatever tracking_uri says.
    with fluent_tracking_uri(ref.tracking_uri):
        local = mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(dst_dir))
    files = sorted(Path(local).rglob("*.onnx"))
    if not files:
        raise FileNotFoundError(
            f"{ref.uri} holds no .onnx file (found: {sorted(p.name for p in Path(local).iterdir())})"
        )
    return files[0]


def move_production_alias(ref: ModelVersionRef) -> None:
    """Point the `production` alias at this version: the promotion itself."""
    ref.client().set_registered_model_alias(ref.name, PRODUCTION_ALIAS, ref.version)


HISTORY_TAG_PREFIX = "production_history."


def record_alias_move(tracking_uri: str, model_name: str, move: dict[str, str]) -> None:
    """Append one move of `production` to the registered model's tags: the history lives in the registry."""
    # A nanosecond key sorts in time order and never collides, even between processes.
    key = f"{HISTORY_TAG_PREFIX}{time.time_ns():020d}"
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_tag(model_name, key, json.dumps(move))


def alias_history(tracking_uri: str, model_name: str) -> list[dict[str, str]]:
    """Every recorded move of `production`, oldest first; empty when the model does not exist."""
    try:
        tags = MlflowClient(tracking_uri=tracking_uri).get_registered_model(model_name).tags
    except MlflowException as error:
        if _error_code(error) != RESOURCE_DOES_NOT_EXIST:
            raise
        return []
    return [json.loads(tags[key]) for key in sorted(k for k in tags if k.startswith(HISTORY_TAG_PREFIX))]


# The data a version was trained on, summarised (tasks.data.drift): logged on its run, named by a tag on the version.
DATA_SUMMARY_TAG = "data_summary"
DATA_SUMMARY_DIR = "reference"


def log_data_summary(run: TrackingRun, path: Path) -> str:
    """Attach a data summary JSON to the run; returns its artifact path, for the version's tag."""
    run.client().log_artifact(run.run_id, str(path), DATA_SUMMARY_DIR)
    return f"{DATA_SUMMARY_DIR}/{path.name}"


def download_data_summary(ref: ModelVersionRef, dst_dir: Path) -> Path | None:
    """The data summary stored with a version, fetched into dst_dir; None for a version registered without one."""
    artifact = ref.tags.get(DATA_SUMMARY_TAG)
    if not artifact or ref.run_id is None:
        return None
    dst_dir.mkdir(parents=True, exist_ok=True)
    return Path(ref.client().download_artifacts(ref.run_id, artifact, str(dst_dir)))


def run_artifact_link(run: TrackingRun, artifact_path: str) -> str:
    """Where a person opens a run's artifact: its MLflow UI page on a tracking server, else the file's URI."""
    if urlparse(run.tracking_uri).scheme in ("http", "https"):
        base = run.tracking_uri.rstrip("/")
        return f"{base}/#/experiments/{run.experiment_id}/runs/{run.run_id}/artifacts/{artifact_path}"
    return f"{run.client().get_run(run.run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"


def run_artifact_image_url(run: TrackingRun, artifact_path: str) -> str | None:
    """A URL a browser loads the artifact's own bytes from (the tracking server's get-artifact route), for the
    Prefect UI to show an image; None for a local store, whose files a web page cannot read."""
    if urlparse(run.tracking_uri).scheme not in ("http", "https"):
        return None
    query = urlencode({"path": artifact_path, "run_uuid": run.run_id})
    return f"{run.tracking_uri.rstrip('/')}/get-artifact?{query}"


# Where a local SQLite store keeps absolute artifact locations (MLflow 3.17's schema).
ARTIFACT_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)


def relocate_sqlite_store(tracking_uri: str, old_root: Path, new_root: Path) -> int:
    """Point a local store's artifact locations from old_root to new_root (a moved or restored data folder), in
    one transaction; returns how many locations changed. The artifacts themselves must already be in new_root."""
    import sqlite3

    database = sqlite_database(tracking_uri)
    old, new = old_root.as_uri(), new_root.as_uri()
    changed = 0
    with sqlite3.connect(database) as db:  # commits on success, rolls back on any error
        for table, column in ARTIFACT_LOCATION_COLUMNS:
            query = f"update {table} set {column} = ? || substr({column}, ?) where {column} = ? or {column} like ?"
            changed += db.execute(query, (new, len(old) + 1, old, f"{old}/%")).rowcount
    return changed


def registered_model_names(tracking_uri: str, limit: int = 100) -> list[str]:
    """The registry's model names, sorted (at most limit): what a mistyped --model-name is told exists."""
    found = MlflowClient(tracking_uri=tracking_uri).search_registered_models(max_results=limit)
    return sorted(model.name for model in found)


# Shadow (issue 24, item 4): the `shadow` alias names the candidate running services also score on live requests,
# off the request path, beside production (bentos/shadow.py follows it; `greenlight shadow` moves it).
SHADOW_ALIAS = "shadow"


def set_shadow_alias(ref: ModelVersionRef) -> None:
    """Point the `shadow` alias at this version: services score it beside production from their next poll."""
    ref.client().set_registered_model_alias(ref.name, SHADOW_ALIAS, ref.version)


def remove_shadow_alias(tracking_uri: str, model_name: str, only: str | None = None) -> str | None:
    """Remove the `shadow` alias (only when it points to version `only`, where given); the version it pointed to,
    or None when there was nothing to remove."""
    current = find_version(tracking_uri, model_name, SHADOW_ALIAS)
    if current is None or (only is not None and current.version != only):
        return None
    MlflowClient(tracking_uri=tracking_uri).delete_registered_model_alias(model_name, SHADOW_ALIAS)
    return current.version


# --- Monitoring (issue 24, the monitor: greenlight monitor / model_monitoring): a live drift check recorded as a run
# of the "monitoring" experiment, with its figures on the version's logged model and its verdict on the version.


def version_model_id(ref: ModelVersionRef) -> str | None:
    """The logged model a version was registered from (MLflow 3), or None for one registered from a run's files."""
    found = ref.client().get_model_version(ref.name, ref.version)
    # A SQL registry store keeps no model_id of its own (MLflow 3.17): the id is its source, models:/<model id>.
    logged = (found.source or "").removeprefix("models:/")
    return found.model_id or (logged if logged.startswith("m-") and "/" not in logged else None)


def version_run_params(ref: ModelVersionRef) -> dict[str, str]:
    """The parameters of the run that registered a version (the run configuration, flattened); {} without a run."""
    if ref.run_id is None:
        return {}
    try:
        return dict(ref.client().get_run(ref.run_id).data.params)
    except MlflowException as error:
        if _error_code(error) != RESOURCE_DOES_NOT_EXIST:
            raise
        return {}


# --- Store creation (issue 26, item 7): MLflow's SQLAlchemy stores create the tables and run every migration when
# they find an empty database, with no lock, so two first runs at once on a fresh local store left one failing on
# "table _alembic_tmp_experiments already exists" (or an out-of-date schema). One process creates it at a time.


def create_local_store(tracking_uri: str) -> None:
    """Open a local sqlite:/// store under an exclusive lock on `.<database>.lock` beside it, so that only one
    process at a time creates its tables; the others wait (seconds) and then find a complete store. Any other
    store (a tracking server, a database server) is created by its server, and nothing is done here."""
    import fcntl

    database = sqlite_database(tracking_uri)
    if database is None:
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f".{database.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, and by the kernel if this process dies
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)  # the tracking store: tables and migrations
        client.search_registered_models(max_results=1)  # the registry's store, on the same database


# --- Exports that verify (issue 26, items 8 and 9): where a version's files are, named when an export refuses them.


def version_artifact_uri(ref: ModelVersionRef) -> str:
    """Where the registry keeps a version's files: the artifact store URI a download of it reads (a runs:/ source
    resolved to its run's artifact store, the folder a person can look in)."""
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    uri = ref.client().get_model_version_download_uri(ref.name, ref.version)
    if not RunsArtifactRepository.is_runs_uri(uri):
        return uri
    return RunsArtifactRepository.get_underlying_uri(uri, tracking_uri=ref.tracking_uri)


# --- Approval policy (issue 26, item 3): the registered model's ApprovalPolicy as its tags (policy.<field>), each
# change appended as policy_history.<ns>; `greenlight policy` is the only writer, every gate reads it under the lock.


def read_approval_policy(tracking_uri: str, model_name: str) -> ApprovalPolicy:
    """The model's approval policy; the default (no approval) when the model or its policy does not exist yet."""
    try:
        tags = MlflowClient(tracking_uri=tracking_uri).get_registered_model(model_name).tags
    except MlflowException as error:
        if _error_code(error) != RESOURCE_DOES_NOT_EXIST:
            raise
        tags = {}
    return policy_from_tags(tags or {})


def write_approval_policy(tracking_uri: str, model_name: str, policy: ApprovalPolicy) -> None:
    """Store the policy on the registered model (created when a policy comes before its first run) and append the
    change to its policy history."""
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.create_registered_model(model_name, description="Greenlight model (its policy set before any run).")
    except MlflowException as error:
        if _error_code(error) != RESOURCE_ALREADY_EXISTS:
            raise
    for key, value in policy.tags().items():
        client.set_registered_model_tag(model_name, key, value)
    client.set_registered_model_tag(model_name, f"{POLICY_HISTORY_PREFIX}{time.time_ns():020d}", policy.history_entry())
