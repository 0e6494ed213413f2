"""Batch scoring: a CSV or Parquet file answered by a registered version, with the service's own ONNX file, checks
and request contract, in bounded chunks. Rows the contract refuses go to a rejects file with its reason; the run is
recorded in MLflow. `greenlight predict` (deployments/scoring.py) and the batch_scoring flow call the same three
tasks below. The manual: docs/batch-scoring.md.
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
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from tqdm.auto import tqdm

from tasks.core.contract import MAX_ROWS, Batch, Contract, Refusal, softmax
from tasks.core.errors import DataRejected, GreenlightError
from tasks.core.keys import load_verify_key
from tasks.core.locations import resolve_locations
from tasks.core.records import Record, RunLinks
from tasks.core.spec import FeatureSpec
from tasks.data.files import check_readable_file, is_csv, read_header
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

SCORING_EXPERIMENT = "batch-scoring"
REJECTS_SUFFIX = ".rejected.parquet"
OUTPUT_SUFFIXES = (".csv", ".parquet")
# Rows read, checked and answered at a time: ONNX Runtime's per-call cost spread thin, and a peak of ~0.4 GB for a
# table of a dozen columns (benchmarks/batch_scoring.py); memory grows with it, speed hardly does.
DEFAULT_CHUNK_ROWS = 50_000
# A CSV is read in blocks of this many bytes (pyarrow's streaming reader), then cut into chunks of chunk_rows.
CSV_BLOCK_BYTES = 8 << 20
# A rejects file up to this size is attached to the MLflow run; a larger one is named by a tag (its path).
MAX_ATTACHED_REJECTS_BYTES = 10 << 20
# Records path: a slice with this many refused records is checked record by record from then on. Each refusal costs
# a pass over the rest of the slice, which pays while bad rows are few, and not when they are many.
MAX_REFUSED_PASSES = 8
# A CSV cell read as the JSON value a client would send, by the MLflow column type of its feature (signature_type).
NUMBER_TYPES = {"double": pa.float64(), "long": pa.int64()}
TRUE_TEXTS, FALSE_TEXTS = ("true",), ("false",)  # pandas reads True/TRUE/true (and False/...) as booleans


class ScoringRefused(GreenlightError):
    """The model or the file cannot be scored at all; nothing was written."""


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


# --- reading: the file's rows as request records ---


@dataclass(frozen=True)
class ScoringInput:
    """The columns read from a file: the model's that it holds, then the ones kept beside the answers."""

    path: Path
    columns: list[str]
    kinds: dict[str, str]  # column -> the MLflow type its text is read as (signature_type), model columns only
    absent: tuple[str, ...]  # nullable model columns the file lacks
    rows: int | None  # known for Parquet, from its footer


def open_input(path: Path, contract: Contract, keep: list[str]) -> ScoringInput:
    """Check the file by its header: every required column of the contract and every kept column must be there."""
    features = contract.spec.model_features
    required = [c for f in features if not f.nullable for c in f.source_columns]
    try:
        check_readable_file(path)
        names = read_header(path, required)
    except DataRejected as error:
        raise ScoringRefused(str(error)) from error
    if unknown := [c for c in keep if c not in names]:
        raise ScoringRefused(f"--keep {', '.join(unknown)}: not a column of {path} (its columns: {', '.join(names)})")
    kinds = {c: f.signature_type() for f in features for c in f.source_columns if c in names}
    absent = tuple(c for f in features for c in f.source_columns if c not in names)
    columns = [*kinds, *(c for c in keep if c not in kinds)]
    rows = None if is_csv(path) else pq.ParquetFile(path).metadata.num_rows
    return ScoringInput(path, columns, kinds, absent, rows)


def read_chunks(source: ScoringInput, chunk_rows: int) -> Iterator[pa.Table]:
    """The file's rows in tables of at most chunk_rows, only the columns read; a CSV's cells stay text."""
    if is_csv(source.path):
        batches = pacsv.open_csv(
            source.path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            # Text, whatever the first block looks like: a later "n/a" in a number column is a rejected row, not
            # a reader that stops half-way; pyarrow's null spellings are pandas' (NA, N/A, null, nan, ...).
            convert_options=pacsv.ConvertOptions(
                include_columns=source.columns,
                column_types=dict.fromkeys(source.columns, pa.string()),
                strings_can_be_null=True,
            ),
        )
    else:
        batches = pq.ParquetFile(source.path).iter_batches(batch_size=chunk_rows, columns=source.columns)
    for batch in batches:
        for start in range(0, batch.num_rows, chunk_rows):
            yield pa.Table.from_batches([batch.slice(start, chunk_rows)])


def request_values(column: pa.ChunkedArray, kind: str) -> list[Any]:
    """A column's cells as a client sends them in JSON: null for missing (NaN too, as pandas reads it), text read
    as its feature's type (a number column's "3.5" is 3.5; what does not read stays text, for the contract to refuse
    in its own words)."""
    if pa.types.is_floating(column.type):
        return pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column).to_pylist()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column.to_pylist()
    if kind in NUMBER_TYPES:
        for number_type in (NUMBER_TYPES[kind], pa.float64()):
            try:
                return request_values(pc.cast(column, number_type), kind)
            except pa.ArrowInvalid:
                continue
        return [number_from_text(text) for text in column.to_pylist()]
    if kind == "boolean":
        return [boolean_from_text(text) for text in column.to_pylist()]
    return column.to_pylist()


def number_from_text(text: str | None) -> Any:
    """A cell that reads as a number, as that number (an int if whole); anything else unchanged."""
    if text is None:
        return None
    for read in (int, float):
        try:
            number = read(text)
        except ValueError:
            continue
        return None if number != number else number  # "nan" is missing, as in pandas
    return text


def boolean_from_text(text: str | None) -> Any:
    lowered = None if text is None else text.strip().lower()
    return True if lowered in TRUE_TEXTS else False if lowered in FALSE_TEXTS else text


def request_columns(table: pa.Table, source: ScoringInput, contract: Contract) -> dict[str, list[Any]]:
    """The chunk's model columns, each value as its type's client sends it (None: missing)."""
    values = {}
    for column, kind in source.kinds.items():
        feature = contract.feature_of(column)
        cells = request_values(table.column(column), kind)
        # Numbers and categories are sent as they are (FeatureSpec.client_value); skipping the call saves ~0.3 us
        # a value. A date or an image path becomes its ISO text or its base64 bytes.
        sends_as_is = type(feature).client_value is FeatureSpec.client_value
        values[column] = cells if sends_as_is else [None if v is None else feature.client_value(v) for v in cells]
    return values


def records_of(table: pa.Table, source: ScoringInput, contract: Contract) -> list[dict[str, Any]]:
    """The chunk's rows as request records of the model's columns."""
    values = request_columns(table, source, contract)
    return [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]


# --- checking: the service's contract, a chunk at a time ---


@dataclass(frozen=True)
class CheckedChunk:
    """A chunk's rows split by the contract: feeds for the accepted ones, (position, refusal) for the others."""

    accepted: list[int]  # positions in the chunk
    batch: Batch | None  # None when no row was accepted
    refused: list[tuple[int, Refusal]]


def check_records(contract: Contract, records: list[dict[str, Any]], first_row: int) -> CheckedChunk:
    """Validate with the contract's request model, MAX_ROWS records at a time (its cap on one request)."""
    accepted, refused = [], []
    for start in range(0, len(records), MAX_ROWS):
        found, failed = check_slice(contract, records[start : start + MAX_ROWS], start, first_row)
        accepted += found
        refused += failed
    accepted.sort(key=lambda part: part[0])
    positions = [i for start, batch in accepted for i in range(start, start + batch.size)]
    return CheckedChunk(positions, joined([batch for _, batch in accepted]), sorted(refused, key=lambda r: r[0]))


def check_slice(
    contract: Contract, records: list[dict[str, Any]], offset: int, first_row: int
) -> tuple[list[tuple[int, Batch]], list[tuple[int, Refusal]]]:
    """A refusal names the first bad record of a run of records (validation stops there, as for a request): it is
    set aside, and the records before and after it are validated again, so a few bad rows cost a few passes. Past
    MAX_REFUSED_PASSES refusals in one slice, the rest is checked record by record."""
    accepted, refused, pending = [], [], [(offset, records)]
    while pending:
        start, part = pending.pop()
        if not part:
            continue
        if len(part) > 1 and len(refused) >= MAX_REFUSED_PASSES:
            pending += [(start + i, [record]) for i, record in enumerate(part)]
            continue
        outcome = accepted_batch(contract, part)
        if isinstance(outcome, Batch):
            accepted.append((start, outcome))
            continue
        bad = 0 if len(part) == 1 else outcome.record
        if bad is None:  # a refusal of the whole request, not of a record: find the record one at a time
            pending += [(start + i, [record]) for i, record in enumerate(part)]
            continue
        refused.append((start + bad, at_row(outcome, first_row + start + bad)))
        pending += [(start, part[:bad]), (start + bad + 1, part[bad + 1 :])]
    return accepted, refused


def accepted_batch(contract: Contract, records: list[dict[str, Any]]) -> Batch | Refusal:
    """The records as feeds, through the same request model and refusals as a JSON body to /predict."""
    try:
        request = contract.request.model_validate({"records": records})
    except ValidationError as error:
        return contract.describe(error.errors(include_url=False)[0])
    return contract.from_records(request.records)


def at_row(refusal: Refusal, row: int) -> Refusal:
    """A refusal of a record ("record 3, field ...": its place in the request) numbered by the file's row instead."""
    message, place = refusal.message, f"record {refusal.record}"
    if refusal.record is not None and message.startswith(place):
        message = f"record {row}" + message.removeprefix(place)
    return Refusal(refusal.status, message, record=row, field=refusal.field, row=row)


def joined(batches: list[Batch]) -> Batch | None:
    if len(batches) <= 1:
        return batches[0] if batches else None
    feeds = {name: np.concatenate([b.feeds[name] for b in batches]) for name in batches[0].feeds}
    return Batch(feeds, sum(b.size for b in batches))


@dataclass(frozen=True)
class ColumnContract:
    """The contract's record fields as one validator per column, for a table whose inputs are built cell by cell
    (numbers, categories): the same types (feature.request_field, from which compile_contract builds its record
    model) checked a column at a time, ~10-20 ns a value where a record costs ~1 us a field, then fed with the
    contract's own cell functions. Texts, images and dates keep the record path (check_records)."""

    contract: Contract
    validators: dict[str, TypeAdapter]  # column -> validator of a list of its values, in the record's field order
    column_of: dict[str, str]  # record attribute -> column


def column_contract(contract: Contract) -> ColumnContract | None:
    """None when an input is built by its features' request feeds, which may refuse a value of their own."""
    if any(plan.cells is None for plan in contract.inputs.values()):
        return None
    fields = {c: f.request_field()[0] for f in contract.spec.model_features for c in f.source_columns}
    validators = {column: TypeAdapter(list[annotation]) for column, annotation in fields.items()}
    return ColumnContract(contract, validators, {a: c for c, a in contract.attributes.items()})


def check_columns(rules: ColumnContract, values: dict[str, list[Any]], rows: int, first_row: int) -> CheckedChunk:
    """Every column validated at once; a refused row gets the refusal its record would get as a request: its
    first bad field in field order, described by the contract. The other rows are fed as from_records feeds them."""
    problems, checked = {}, {}
    for column, validator in rules.validators.items():
        cells = values.get(column) or [None] * rows  # an absent nullable column: missing in every record
        try:
            checked[column] = validator.validate_python(cells)
        except ValidationError as error:
            for problem in error.errors(include_url=False):
                position, *inner = problem["loc"]
                problems.setdefault(position, {**problem, "loc": ("records", position, column, *inner)})
            checked[column] = None
    accepted = [i for i in range(rows) if i not in problems]
    for column, validator in rules.validators.items():
        if checked[column] is None:  # a column with a refused value: its accepted rows validated again, alone
            cells = values.get(column) or [None] * rows
            checked[column] = validator.validate_python([cells[i] for i in accepted])
        elif problems:
            checked[column] = [checked[column][i] for i in accepted]
    refused = [(i, at_row(rules.contract.describe(problem), first_row + i)) for i, problem in sorted(problems.items())]
    return CheckedChunk(accepted, column_feeds(rules, checked, len(accepted)), refused)


def column_feeds(rules: ColumnContract, checked: dict[str, list[Any]], rows: int) -> Batch | None:
    """The feeds from_records builds for the same records: each cell function over its column, side by side."""
    if rows == 0:
        return None
    feeds = {
        name: np.stack(
            [np.array([cell(v) for v in checked[rules.column_of[a]]], dtype=plan.dtype) for a, cell in plan.cells],
            axis=1,
        )
        for name, plan in rules.contract.inputs.items()
    }
    return Batch(feeds, rows)


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
