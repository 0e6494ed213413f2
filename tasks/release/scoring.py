"""Batch scoring: a CSV or Parquet file answered by a registered version, with the service's own ONNX file, checks
and request contract, in bounded chunks. Rows the contract refuses go to a rejects file with its reason; the run is
recorded in MLflow. `greenlight predict` (deployments/scoring.py) and the batch_scoring flow call the same three
tasks below; reading and checking the rows is tasks/release/scoring_rows.py. The manual: docs/batch-scoring.md.
"""

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from tasks.core.contract import Contract, softmax
from tasks.core.keys import load_verify_key
from tasks.core.locations import resolve_locations
from tasks.core.records import Record, RunLinks
from tasks.data.files import is_csv
from tasks.onnx.verified import Provenance, ServedModel, load_verified
from tasks.registry.client import (
    ModelVersionRef,
    RegistryError,
    download_version_onnx,
    find_version,
    finish_tracking_run,
    get_version,
    list_versions,
    registered_model_names,
    start_tracking_run,
)
from tasks.registry.tracking import log_record
from tasks.release.scoring_rows import (
    ScoringInput,
    ScoringRefused,
    check_columns,
    check_records,
    column_contract,
    open_input,
    read_chunks,
    records_of,
    request_columns,
)

SCORING_EXPERIMENT = "batch-scoring"
REJECTS_SUFFIX = ".rejected.parquet"
OUTPUT_SUFFIXES = (".csv", ".parquet")
# Rows read, checked and answered at a time: ONNX Runtime's per-call cost spread thin, and a peak of ~0.4 GB for a
# table of a dozen columns (benchmarks/batch_scoring.py); memory grows with it, speed hardly does.
DEFAULT_CHUNK_ROWS = 50_000
# A rejects file up to this size is attached to the MLflow run; a larger one is named by a tag (its path).
MAX_ATTACHED_REJECTS_BYTES = 10 << 20


class ScoringConfig(BaseModel):
    """What to score with which version, and where the answers go: the batch_scoring flow's parameter (the Prefect
    UI renders it as a form) and what `greenlight predict` builds from its flags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(min_length=1, description="registered model name")
    version: str | None = Field(None, description="registered version number; empty: the production version")
    data_path: str = Field(min_length=1, description="the CSV or Parquet file to score")
    out_path: str = Field(
        min_length=1,
        description=f"answers file, .csv or .parquet; refused rows go to <out_path>{REJECTS_SUFFIX}",
    )
    keep_columns: list[str] = Field(
        default_factory=list, description="columns of the file copied beside the answers (an id, a key)"
    )
    chunk_rows: int = Field(DEFAULT_CHUNK_ROWS, ge=1, description="rows read, checked and answered at a time")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime threads; empty: every core this process has")

    @field_validator("out_path")
    @classmethod
    def _a_table_format(cls, value: str) -> str:
        if Path(value).suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(f"{value}: name a .csv or .parquet file (its extension picks the format)")
        return value


@dataclass(frozen=True)
class ScoringResult:
    """What a scoring run did: which version answered which file, how many rows, how fast, and where it wrote."""

    model_name: str
    version: str
    data_path: str
    out_path: str
    rejects_path: str
    rows_scored: int
    rows_rejected: int
    seconds: float
    absent_columns: tuple[str, ...] = ()  # nullable columns not in the file: every row answered as missing there

    @property
    def rows_per_s(self) -> float:
        return (self.rows_scored + self.rows_rejected) / max(self.seconds, 1e-9)

    def line(self) -> str:
        return f"scored {self.rows_scored:,} rows, rejected {self.rows_rejected:,} (see {self.rejects_path})"

    def record(self, links: RunLinks | None = None) -> Record:
        """Params, counts and timing for the run; the rejects file attached when small, else its path as a tag."""
        rejects = Path(self.rejects_path)
        attach = self.rows_rejected and rejects.stat().st_size <= MAX_ATTACHED_REJECTS_BYTES
        return Record(
            params={
                "model_name": self.model_name,
                "model_version": self.version,
                "data_path": self.data_path,
                "out_path": self.out_path,
            },
            metrics={
                "rows_scored": self.rows_scored,
                "rows_rejected": self.rows_rejected,
                "seconds": self.seconds,
                "rows_per_s": self.rows_per_s,
            },
            tags={"model_uri": f"models:/{self.model_name}/{self.version}", "rejects_path": self.rejects_path},
            files={"rejects": (rejects,)} if attach else {},
        )


def rejects_path(out: Path) -> Path:
    """scores.parquet -> scores.parquet.rejected.parquet: beside the answers, always Parquet (typed values)."""
    return out.with_name(out.name + REJECTS_SUFFIX)


# --- the version ---


def resolve_version(tracking_uri: str, model_name: str, version: str | None) -> ModelVersionRef:
    """The version asked for, else the production one; a ScoringRefused says which models or versions exist."""
    if version is None:
        found = find_version(tracking_uri, model_name)
        if found is not None:
            return found
    versions = [ref.version for ref in list_versions(tracking_uri, model_name, limit=20)]
    if not versions:
        names = registered_model_names(tracking_uri)
        known = f"registered: {', '.join(names[:12])}" if names else "no model is registered yet"
        raise ScoringRefused(f"no registered model '{model_name}' in {tracking_uri} ({known})")
    if version is None:
        raise ScoringRefused(
            f"no production version of '{model_name}' yet in {tracking_uri}: name one with --version"
            f" (versions: {', '.join(versions)}), or promote one"
        )
    try:
        return get_version(tracking_uri, model_name, version)
    except RegistryError as error:
        listed = ", ".join(versions)
        raise ScoringRefused(
            f"'{model_name}' has no version {version} in {tracking_uri} (versions: {listed})"
        ) from error


def load_version(ref: ModelVersionRef, threads: int) -> ServedModel:
    """The version's ONNX file loaded exactly as the service loads it: checksum (and signature, where
    GREENLIGHT_VERIFY_KEY_FILE is set) checked, spec read, contract compiled, warmed up; else ModelRefused."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a second's download, not a bar
    provenance = Provenance(ref.tags.get("onnx_sha256"), ref.tags.get("signature"), load_verify_key(os.environ))
    with tempfile.TemporaryDirectory(prefix="greenlight-scoring-") as directory:
        model_dir = download_version_onnx(ref, Path(directory)).parent
        return load_verified(model_dir, provenance, ref.name, ref.version, threads)


def machine_threads() -> int:
    """Every core this process may run on: batch work has the machine, not one worker's share of it."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@task(name="load_scoring_model", cache_policy=NO_CACHE)
def load_scoring_model(config: ScoringConfig) -> ServedModel:
    """The version to score with (config.version, else production), loaded and verified like the service's."""
    ref = resolve_version(resolve_locations().tracking_uri, config.model_name, config.version)
    return load_version(ref, config.threads or machine_threads())


# --- answering and writing ---


def answer_columns(contract: Contract, outputs: np.ndarray) -> dict[str, Any]:
    """The service's answer as columns, by Contract.answer's arithmetic (its softmax in float64, the first most
    likely label): prediction, and probability_<label> per label for a classifier. Not through its JSON: rendering
    and reading back the answers cost ~3 us a row, more than checking the row."""
    if contract.spec.task == "regression":
        return {"prediction": outputs.reshape(-1).astype(np.float64)}
    probabilities = softmax(outputs.astype(np.float64))
    columns = {"prediction": pa.array(contract.spec.target.labels).take(probabilities.argmax(axis=1))}
    return columns | {f"probability_{label}": probabilities[:, i] for i, label in enumerate(contract.label_texts)}


class StagedTable:
    """A CSV or Parquet file written a chunk at a time under a hidden name beside its target, renamed into place
    only by commit(): a failed run leaves nothing a user could mistake for a finished file."""

    def __init__(self, target: Path, schema: pa.Schema) -> None:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        os.close(handle)
        self.target, self.staged, self.schema = target, Path(name), schema
        csv = target.suffix.lower() == ".csv"
        self.writer = pacsv.CSVWriter(self.staged, schema) if csv else pq.ParquetWriter(self.staged, schema)

    def write(self, columns: dict[str, Any]) -> None:
        self.writer.write_table(pa.Table.from_pydict(columns, schema=self.schema))

    def commit(self) -> None:
        self.writer.close()
        self.staged.chmod(0o644)  # mkstemp's 0600 would hide the answers from the rest of a team
        self.staged.replace(self.target)

    def discard(self) -> None:
        self.writer.close()
        self.staged.unlink(missing_ok=True)


@dataclass(frozen=True)
class ScoringFiles:
    """The answers and the rejects, staged until the whole file is scored."""

    answers: StagedTable
    rejects: StagedTable

    def discard(self) -> None:
        self.answers.discard()
        self.rejects.discard()


@contextmanager
def staged_files(model: ServedModel, source: ScoringInput, out: Path, keep: list[str]) -> Iterator[ScoringFiles]:
    """Both files staged beside out; whatever stops the block (a bad block of the file, Ctrl-C) removes them."""
    read = read_schema(source)
    kept = pa.schema([read.field(c) for c in keep])
    files = ScoringFiles(
        StagedTable(out, answer_schema(model, kept)), StagedTable(rejects_path(out), rejects_schema(read))
    )
    try:
        yield files
    except BaseException:
        files.discard()
        raise


def read_schema(source: ScoringInput) -> pa.Schema:
    """The columns read, as the reader gives them: text for a CSV, the stored types for Parquet."""
    if is_csv(source.path):
        return pa.schema([pa.field(c, pa.string()) for c in source.columns])
    stored = pq.ParquetFile(source.path).schema_arrow
    return pa.schema([stored.field(c) for c in source.columns])


def answer_schema(model: ServedModel, kept: pa.Schema) -> pa.Schema:
    """row, prediction (the labels' own type, or a number), a probability per label, then the kept columns."""
    spec = model.contract.spec
    prediction = pa.array(spec.target.labels).type if spec.task == "classification" else pa.float64()
    probabilities = [pa.field(f"probability_{label}", pa.float64()) for label in model.contract.label_texts]
    return pa.schema([pa.field("row", pa.int64()), pa.field("prediction", prediction), *probabilities, *kept])


def rejects_schema(read: pa.Schema) -> pa.Schema:
    """row, the field the refusal names, the reason, then the row's values as read from the file."""
    named = [pa.field("row", pa.int64()), pa.field("field", pa.string()), pa.field("reason", pa.string())]
    return pa.schema([*named, *read])


@dataclass(frozen=True)
class Counts:
    """Rows answered and refused so far, and the first refusal's reason (for a file with no usable row)."""

    scored: int = 0
    rejected: int = 0
    first_reason: str = ""

    @property
    def rows(self) -> int:
        return self.scored + self.rejected

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(
            self.scored + other.scored, self.rejected + other.rejected, self.first_reason or other.first_reason
        )


def score_chunk(
    model: ServedModel, table: pa.Table, source: ScoringInput, first_row: int, files: ScoringFiles
) -> Counts:
    """Check one chunk with the contract, answer its accepted rows, write both kinds of row."""
    rules = column_contract(model.contract)
    if rules is None:
        checked = check_records(model.contract, records_of(table, source, model.contract), first_row)
    else:
        checked = check_columns(rules, request_columns(table, source, model.contract), table.num_rows, first_row)
    if checked.batch is not None:
        taken = table.take(pa.array(checked.accepted, pa.int64()))
        answers = answer_columns(model.contract, model.predict(checked.batch))
        kept = {c: taken.column(c) for c in files.answers.schema.names if c in table.column_names}
        files.answers.write({"row": [first_row + i for i in checked.accepted], **answers, **kept})
    if checked.refused:
        taken = table.take(pa.array([i for i, _ in checked.refused], pa.int64()))
        refusals = [r for _, r in checked.refused]
        named = {"row": [r.row for r in refusals], "field": [r.field for r in refusals]}
        values = {c: taken.column(c) for c in taken.column_names}
        files.rejects.write({**named, "reason": [r.message for r in refusals], **values})
    return Counts(len(checked.accepted), len(checked.refused), checked.refused[0][1].message if checked.refused else "")


def score_rows(model: ServedModel, source: ScoringInput, config: ScoringConfig, progress: bool) -> Counts:
    """Every chunk through score_chunk; the files are committed only once the last chunk is written."""
    out = Path(config.out_path).expanduser()
    bar = tqdm(
        total=source.rows, unit="rows", unit_scale=True, desc=f"scoring {source.path.name}", disable=not progress
    )
    with bar, staged_files(model, source, out, config.keep_columns) as files:
        total = Counts()
        try:
            for table in read_chunks(source, config.chunk_rows):
                total = total + score_chunk(model, table, source, total.rows, files)
                bar.update(table.num_rows)
        except pa.ArrowException as error:  # a ragged line, bad UTF-8, a corrupt Parquet page
            raise ScoringRefused(
                f"data file {source.path} could not be read: {error} (after {total.rows:,} rows); nothing was written"
            ) from error
        if total.rows == 0:
            raise ScoringRefused(f"data file {source.path} has a header but no rows; nothing was written")
        files.rejects.commit()
        if total.scored == 0:
            files.answers.discard()
            raise ScoringRefused(
                f"none of the {total.rows:,} rows of {source.path} could be scored; each one's reason is in"
                f" {files.rejects.target} (the first: {total.first_reason})"
            )
        files.answers.commit()
    return total


def check_output(out: Path, data: Path) -> None:
    """Refuse an --out that cannot be written as asked, before anything is read."""
    if not out.parent.is_dir():
        raise ScoringRefused(f"--out {out}: its folder {out.parent} does not exist; create it first")
    if out.resolve() == data.resolve():
        raise ScoringRefused(f"--out {out} is the data file itself: write the answers to another file")


@task(name="score_file", cache_policy=NO_CACHE)
def score_file(model: ServedModel, config: ScoringConfig, progress: bool = False) -> ScoringResult:
    """Answer every row of config.data_path that the model's contract accepts; the others go to the rejects file."""
    data, out = Path(config.data_path).expanduser(), Path(config.out_path).expanduser()
    check_output(out, data)
    source = open_input(data, model.contract, config.keep_columns)
    started = time.perf_counter()
    counts = score_rows(model, source, config, progress)
    return ScoringResult(
        model_name=model.name,
        version=model.version,
        data_path=str(data),
        out_path=str(out),
        rejects_path=str(rejects_path(out)),
        rows_scored=counts.scored,
        rows_rejected=counts.rejected,
        seconds=time.perf_counter() - started,
        absent_columns=source.absent,
    )


# --- the record ---


@task(name="record_scoring", cache_policy=NO_CACHE)
def record_scoring(result: ScoringResult) -> str:
    """An MLflow run in the batch-scoring experiment: the version, the files, the counts and the timing; its id."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tags = {"pipeline": "batch_scoring", "prefect_flow_run_id": str(flow_run.get_id() or "none")}
    run = start_tracking_run(resolve_locations().tracking_uri, SCORING_EXPERIMENT, f"score-{stamp}", {}, tags)
    log_record.fn(run=run, record=result.record(), kind="scoring_result")
    finish_tracking_run(run, succeeded=True)
    return run.run_id
