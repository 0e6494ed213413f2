"""Batch scoring's rows: a CSV or Parquet file streamed in chunks as the records a client would send, and each
chunk checked with the service's request contract (a table a column at a time, texts, images and dates as
records), refused rows kept with the contract's reason. tasks/release/scoring.py answers and writes them.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import TypeAdapter, ValidationError

from tasks.core.contract import MAX_ROWS, Batch, Contract, Refusal
from tasks.core.errors import DataRejected, GreenlightError
from tasks.core.spec import FeatureSpec
from tasks.data.files import check_readable_file, is_csv, read_header

# A CSV is read in blocks of this many bytes (pyarrow's streaming reader), then cut into chunks of chunk_rows.
CSV_BLOCK_BYTES = 8 << 20
# Records path: a slice with this many refused records is checked record by record from then on. Each refusal costs
# a pass over the rest of the slice, which pays while bad rows are few, and not when they are many.
MAX_REFUSED_PASSES = 8
# A CSV cell read as the JSON value a client would send, by the MLflow column type of its feature (signature_type).
NUMBER_TYPES = {"double": pa.float64(), "long": pa.int64()}
TRUE_TEXTS, FALSE_TEXTS = ("true",), ("false",)  # pandas reads True/TRUE/true (and False/...) as booleans


class ScoringRefused(GreenlightError):
    """The model or the file cannot be scored at all; nothing was written."""


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
