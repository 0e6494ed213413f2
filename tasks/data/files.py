"""Data stage: read the input file (or the bundled digits), fingerprint it, split it.

A file is judged before its rows are read: what it is (extension, magic bytes, encoding), then its
header (a CSV's first line, a Parquet file's footer schema). Only a file whose columns are right is
read whole, so a several-GB file with a wrong header is refused in milliseconds.
"""

import codecs
import csv
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import train_test_split

from tasks.core.config import SplitConfig
from tasks.core.errors import DataRejected
from tasks.core.schema import FEATURE_COLUMNS, TARGET_COLUMN

SCHEMA_COLUMNS: tuple[str, ...] = (*FEATURE_COLUMNS, TARGET_COLUMN)
SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")
PARQUET_MAGIC = b"PAR1"
# A CSV header of 65 short names is ~700 bytes; a first line longer than this is not a header.
MAX_HEADER_BYTES = 1 << 20
# Delimiters people export by mistake (Excel in many locales writes ';').
OTHER_DELIMITERS = (";", "\t", "|")
# Leading bytes of formats that arrive renamed to .csv, and what to do about each.
NOT_CSV_SIGNATURES = {
    b"\x1f\x8b": "is gzip-compressed; decompress it first (gunzip)",
    b"PK\x03\x04": "is a ZIP archive (an Excel .xlsx?); export the sheet as CSV",
    PARQUET_MAGIC: "is a Parquet file; rename it to .parquet",
    b"\xff\xfe": "is UTF-16 text; save it as UTF-8 CSV",
    b"\xfe\xff": "is UTF-16 text; save it as UTF-8 CSV",
}


@dataclass(frozen=True)
class LoadedDataset:
    """The rows of one input file, with where they came from and their content fingerprint."""

    frame: pd.DataFrame
    source: str
    sha256: str

    @property
    def rows(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class DataSplits:
    """Stratified train / validation / test arrays: float32 pixels and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


def digits_frame() -> pd.DataFrame:
    """scikit-learn's bundled digits in the Greenlight schema (no download: it ships with sklearn)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    frame = pd.DataFrame(bunch.data.astype("int64"), columns=list(FEATURE_COLUMNS))
    frame[TARGET_COLUMN] = bunch.target.astype("int64")
    return frame


def materialise_default_dataset(directory: Path) -> Path:
    """Write the bundled digits as Parquet once, so the default run reads a file like any other."""
    path = directory / "digits.parquet"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        # A unique partial name: concurrent first runs each write their own, and the rename is atomic.
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        digits_frame().to_parquet(partial, index=False)
        partial.replace(path)
    return path


def file_sha256(path: Path) -> str:
    """Content fingerprint of the input file, streamed so large files are not held in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_readable_file(path: Path) -> None:
    """Reject, with a message saying what to do, anything that is not a readable, non-empty data file."""
    if not path.exists():
        raise DataRejected(f"data file {path} does not exist; pass --data with a CSV or Parquet file")
    if path.is_dir():
        raise DataRejected(f"data path {path} is a directory; pass the CSV or Parquet file inside it")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataRejected(
            f"data file {path} has unsupported extension '{path.suffix}'; use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not os.access(path, os.R_OK):
        raise DataRejected(f"data file {path} is not readable (permission denied); check its permissions")
    if path.stat().st_size == 0:
        raise DataRejected(f"data file {path} is empty (0 bytes)")


def is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def csv_header(path: Path) -> list[str]:
    """The column names on a CSV file's first line, read alone: never more than MAX_HEADER_BYTES."""
    with path.open("rb") as handle:
        first = handle.readline(MAX_HEADER_BYTES)
    for signature, problem in NOT_CSV_SIGNATURES.items():
        if first.startswith(signature):
            raise DataRejected(f"data file {path} is not CSV text: it {problem}")
    if b"\x00" in first:
        raise DataRejected(f"data file {path} is not CSV text: its first line holds NUL bytes (a binary file?)")
    if len(first) >= MAX_HEADER_BYTES and not first.endswith(b"\n"):
        raise DataRejected(f"data file {path}: the first line is over {MAX_HEADER_BYTES} bytes, not a CSV header")
    try:
        # utf-8-sig drops the byte-order mark Excel writes, which would otherwise glue itself to 'pixel_0_0'.
        line = codecs.decode(first, "utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataRejected(
            f"data file {path} is not UTF-8 text (byte {first[error.start]:#04x} at offset {error.start} of the"
            " header); save it as UTF-8 CSV"
        ) from error
    if not line.strip():
        raise DataRejected(
            f"data file {path}: the first line is empty; it must be the header ({SCHEMA_COLUMNS[0]},...)"
        )
    return next(csv.reader([line]))


def check_csv_layout(path: Path, names: list[str], expected: tuple[str, ...] | None) -> None:
    """Catch the wrong delimiter and a missing header by name, before the column comparison blurs them."""
    if len(names) == 1 and (expected is None or len(expected) > 1):
        counts = {delimiter: names[0].count(delimiter) for delimiter in OTHER_DELIMITERS}
        delimiter, count = max(counts.items(), key=lambda item: item[1])
        if count:
            shown = "\\t" if delimiter == "\t" else delimiter
            raise DataRejected(
                f"data file {path} looks like '{shown}'-delimited ({count} '{shown}' and no ',' in the header);"
                " Greenlight reads comma-separated CSV: re-export it with ',' as the delimiter"
            )
    if all(is_number(name) for name in names):
        raise DataRejected(
            f"data file {path}: the first line holds numbers ({', '.join(names[:3])}, ...), not column names;"
            f" add the header line {SCHEMA_COLUMNS[0]},{SCHEMA_COLUMNS[1]},...,{SCHEMA_COLUMNS[-1]}"
        )


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parquet_schema(path: Path) -> pa.Schema:
    """The schema from the Parquet footer, read without touching a single row."""
    with path.open("rb") as handle:
        head = handle.read(4)
        handle.seek(-min(4, path.stat().st_size), os.SEEK_END)
        tail = handle.read(4)
    if head != PARQUET_MAGIC:
        looks = " (it starts like text: is it CSV? then rename it to .csv)" if head.isascii() else ""
        raise DataRejected(f"data file {path} is not a Parquet file: it does not start with 'PAR1'{looks}")
    if tail != PARQUET_MAGIC:
        raise DataRejected(
            f"data file {path} is a truncated or corrupt Parquet file: it does not end with 'PAR1' (its footer is"
            " missing); copy or export it again"
        )
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataRejected(
            f"data file {path} is a corrupt Parquet file: its footer could not be read ({error})"
        ) from error


def parquet_columns(path: Path, schema: pa.Schema, expected: tuple[str, ...] | None) -> list[str]:
    """Data column names of a Parquet schema; refuses nested or non-numeric types in the expected columns."""
    index = {name for name in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(name, str)}
    fields = [field for field in schema if field.name not in index]
    nested = [f"'{f.name}' ({f.type})" for f in fields if pa.types.is_nested(f.type)]
    if nested:
        raise DataRejected(
            f"data file {path} has nested column(s) {', '.join(nested[:3])}; Greenlight needs one flat numeric column"
            " per pixel and one for 'target': flatten them (pyarrow Table.flatten, pandas json_normalize)"
        )
    wanted = set(expected or ())
    wrong = [f"'{f.name}' is {f.type}" for f in fields if f.name in wanted and not readable_type(f.type)]
    if wrong:
        raise DataRejected(
            f"data file {path}: column {'; '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''} in its Parquet"
            " schema; expected numbers (integers): write these columns as integers"
        )
    return [field.name for field in fields]


def readable_type(kind: pa.DataType) -> bool:
    """Numbers, text and all-null columns: validation then names each bad value and its row (text 'dark' included)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    checks = (pa.types.is_integer, pa.types.is_floating, pa.types.is_null, pa.types.is_string, pa.types.is_large_string)
    return any(check(kind) for check in checks)


def check_columns(path: Path, found: list[str], expected: tuple[str, ...]) -> None:
    """Same names as the schema, each once; order is free because the reader selects columns by name."""
    repeated = sorted({name for name in found if found.count(name) > 1})
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    if not (repeated or missing or extra):
        return
    problems = [
        f"{label} {quoted(names)}"
        for label, names in (("duplicated", repeated), ("missing", missing), ("unexpected", extra))
        if names
    ]
    lookalikes = [f"'{e}' for '{m}'" for e in extra for m in missing if e.strip().lower() == m.lower()]
    hint = f" (names are case- and space-sensitive: {', '.join(lookalikes[:3])}?)" if lookalikes else ""
    raise DataRejected(
        f"data file {path}: columns do not match the schema ({expected[0]} .. {expected[-1]}, {len(expected)}"
        f" columns, tasks/core/schema.py): {'; '.join(problems)}{hint}. Found {len(found)} columns; no rows were read"
    )


def quoted(names: list[str]) -> str:
    """Up to five quoted column names, then how many more."""
    shown = ", ".join(f"'{name}'" for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def read_header(path: Path, expected: tuple[str, ...] | None) -> list[str]:
    """Judge the file by its header alone and return its column names (refusing it with DataRejected)."""
    try:
        names = csv_header(path) if is_csv(path) else parquet_columns(path, parquet_schema(path), expected)
    except OSError as error:  # os.access said yes, but ACLs, root-squashed NFS or a vanished file say no
        raise DataRejected(f"data file {path} could not be opened ({error.strerror or error}); check it") from error
    if is_csv(path):
        check_csv_layout(path, names, expected)
    if expected is not None:
        check_columns(path, names, expected)
    elif len(set(names)) != len(names):
        check_columns(path, names, tuple(dict.fromkeys(names)))
    return names


def read_rows(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read every row of the columns named, in that order, turning parser errors into DataRejected."""
    try:
        if is_csv(path):
            # low_memory=False: one dtype per column, not one per internal chunk.
            frame = pd.read_csv(path, encoding="utf-8-sig", low_memory=False)[columns]
        else:
            frame = pd.read_parquet(path, columns=columns)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError, pa.ArrowException) as error:
        kind = "CSV" if is_csv(path) else "Parquet (corrupt or truncated?)"
        raise DataRejected(f"data file {path} could not be read as {kind}: {error}") from error
    # Row numbers in every message are positions in the file, whatever index a Parquet writer stored.
    return frame.reset_index(drop=True)


def read_data_file(path: Path, expected: tuple[str, ...] | None = SCHEMA_COLUMNS) -> pd.DataFrame:
    """Check, then read, a CSV or Parquet file; expected=None accepts any (unique) column names."""
    check_readable_file(path)
    names = read_header(path, expected)
    frame = read_rows(path, list(expected or names))
    if frame.empty:
        raise DataRejected(f"data file {path} has a header but no rows")
    return frame


@task(name="load_dataset", cache_policy=NO_CACHE)
def load_dataset(data_path: str | None, default_dir: Path) -> LoadedDataset:
    """Read the user's file, or the bundled digits materialised as Parquet, and fingerprint it."""
    path = Path(data_path).expanduser() if data_path else materialise_default_dataset(default_dir)
    frame = read_data_file(path)
    return LoadedDataset(frame=frame, source=str(path.resolve()), sha256=file_sha256(path))


@task(name="split_dataset", cache_policy=NO_CACHE)
def split_dataset(frame: pd.DataFrame, config: SplitConfig) -> DataSplits:
    """Stratified, seeded train / validation / test split of a frame that passed validation."""
    pixels = frame[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float32)
    labels = frame[TARGET_COLUMN].to_numpy(dtype=np.int64)
    counts = np.bincount(labels)
    rare = [int(label) for label in np.flatnonzero((counts > 0) & (counts < 5))]
    if rare:
        # Stratification needs each class in train, validation and test, plus room to learn it.
        raise DataRejected(f"labels {rare} have fewer than 5 rows each; a stratified split needs at least 5 per class")
    x_rest, x_test, y_rest, y_test = train_test_split(
        pixels, labels, test_size=config.test_fraction, stratify=labels, random_state=config.seed
    )
    # validation_fraction is of the whole dataset, so rescale it to the remainder.
    val_share = config.validation_fraction / (1.0 - config.test_fraction)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_share, stratify=y_rest, random_state=config.seed
    )
    return DataSplits(x_train, y_train, x_val, y_val, x_test, y_test)
