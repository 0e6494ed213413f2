"""Data stage: read the input file (any table, or the bundled digits) and fingerprint it.

A file is judged before its rows are read: what it is (extension, magic bytes, encoding), then its
header (a CSV's first line, a Parquet file's footer schema). Only a file whose columns are right is
read whole, so a several-GB file with a wrong header is refused in milliseconds. With a spec, only the
columns it names are read; without one, any table with unique column names is.
"""

import codecs
import csv
import difflib
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.errors import DataRejected
from tasks.core.locations import check_readable_file
from tasks.core.spec import digits_frame
from tasks.data.image_folders import read_image_folder, resolve_image_paths

PARQUET_MAGIC = b"PAR1"
# A CSV header of a few hundred columns is a few KB; a first line longer than this is not a header.
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
# difflib's similarity for a near-miss name ('bill_lenght_mm' for 'bill_length_mm' scores ~0.93;
# unrelated short names such as 'sex' and 'year' score under 0.5).
NEAR_MISS_CUTOFF = 0.75


@dataclass(frozen=True)
class LoadedDataset:
    """The rows of one input file, with where they came from, their content fingerprint, and what was left out."""

    frame: pd.DataFrame
    source: str
    sha256: str
    note: str = ""  # e.g. columns in the file that the spec does not name, which were not read

    @property
    def rows(self) -> int:
        return len(self.frame)


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
        # utf-8-sig drops the byte-order mark Excel writes, which would otherwise glue itself to the first name.
        line = codecs.decode(first, "utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataRejected(
            f"data file {path} is not UTF-8 text (byte {first[error.start]:#04x} at offset {error.start} of the"
            " header); save it as UTF-8 CSV"
        ) from error
    if not line.strip():
        raise DataRejected(f"data file {path}: the first line is empty; it must be the header naming the columns")
    return next(csv.reader([line]))


def check_csv_layout(path: Path, names: list[str], expected: list[str] | None) -> None:
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
        wanted = f": {','.join(expected[:3])},..." if expected else ""
        raise DataRejected(
            f"data file {path}: the first line holds numbers ({', '.join(names[:3])}, ...), not column names;"
            f" add a header line naming each column{wanted}"
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


def parquet_columns(path: Path, schema: pa.Schema) -> list[str]:
    """Data column names of a Parquet schema (its stored pandas index left out); refuses nested columns.

    Any flat type pandas reads is accepted (numbers, text, booleans, dictionaries, nulls, dates): the spec
    and validation then say what each column may hold and name each bad value with its row.
    """
    index = {name for name in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(name, str)}
    fields = [field for field in schema if field.name not in index]
    nested = [f"'{f.name}' ({f.type})" for f in fields if pa.types.is_nested(f.type)]
    if nested:
        raise DataRejected(
            f"data file {path} has nested column(s) {', '.join(nested[:3])}; Greenlight reads one flat value per"
            " cell: flatten them into columns (pyarrow Table.flatten, pandas json_normalize)"
        )
    return [field.name for field in fields]


def check_unique_names(path: Path, found: list[str]) -> None:
    """A repeated name would be renamed silently ('a.1') by pandas, so it is refused by name."""
    repeated = sorted({name for name in found if found.count(name) > 1})
    if repeated:
        raise DataRejected(
            f"data file {path}: duplicated {quoted(repeated)} in the header; give each column a unique name."
            " No rows were read"
        )


def check_spec_columns(path: Path, found: list[str], wanted: list[str]) -> None:
    """Every column the spec names must be in the file; order is free because the reader selects by name."""
    missing = [name for name in wanted if name not in found]
    if not missing:
        return
    others = [name for name in found if name not in wanted]
    raise DataRejected(
        f"data file {path}: missing {quoted(missing)}, named by the spec{near_miss_hint(missing, others)}."
        f" Found {len(found)} columns ({quoted(found)}); no rows were read. Rename the columns, or fix the spec"
    )


def near_miss_hint(missing: list[str], others: list[str]) -> str:
    """' (names are case- and space-sensitive: 'Target' for 'target'?)' or ' (close: ...)' for likely typos."""
    lookalikes = [f"'{o}' for '{m}'" for m in missing for o in others if o.strip().lower() == m.strip().lower()]
    if lookalikes:
        return f" (names are case- and space-sensitive: {', '.join(lookalikes[:3])}?)"
    close = [
        f"'{match}' for '{m}'"
        for m in missing
        for match in difflib.get_close_matches(m, others, n=1, cutoff=NEAR_MISS_CUTOFF)
    ]
    return f" (a typo? {', '.join(close[:3])})" if close else ""


def quoted(names: list[str]) -> str:
    """Up to five quoted column names, then how many more."""
    shown = ", ".join(f"'{name}'" for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def read_header(path: Path, expected: list[str] | None) -> list[str]:
    """Judge the file by its header alone and return its column names (refusing it with DataRejected)."""
    try:
        names = csv_header(path) if is_csv(path) else parquet_columns(path, parquet_schema(path))
    except OSError as error:  # os.access said yes, but ACLs, root-squashed NFS or a vanished file say no
        raise DataRejected(f"data file {path} could not be opened ({error.strerror or error}); check it") from error
    if is_csv(path):
        check_csv_layout(path, names, expected)
    check_unique_names(path, names)
    if expected is not None:
        check_spec_columns(path, names, expected)
    return names


def read_rows(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read every row of the columns named, in that order, turning parser errors into DataRejected."""
    try:
        if is_csv(path):
            # low_memory=False: one dtype per column, not one per internal chunk. Every column is parsed (no
            # usecols) because pandas then stops checking field counts, and a ragged row would pass silently.
            frame = pd.read_csv(path, encoding="utf-8-sig", low_memory=False)[columns]
        else:
            frame = pd.read_parquet(path, columns=columns)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError, pa.ArrowException) as error:
        kind = "CSV" if is_csv(path) else "Parquet (corrupt or truncated?)"
        raise DataRejected(f"data file {path} could not be read as {kind}: {error}") from error
    # Row numbers in every message are positions in the file, whatever index a Parquet writer stored.
    return frame.reset_index(drop=True)


def read_data_file(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Check, then read, a CSV or Parquet file: the columns named (others are skipped), or all of them."""
    check_readable_file(path)
    names = read_header(path, columns)
    frame = read_rows(path, list(columns or names))
    if frame.empty:
        raise DataRejected(f"data file {path} has a header but no rows")
    return frame


def unread_note(path: Path, columns: list[str] | None) -> str:
    """Name the file's columns that the spec does not, so a reviewer sees what the run left out."""
    if columns is None:
        return ""
    found = csv_header(path) if is_csv(path) else parquet_columns(path, parquet_schema(path))
    extra = [name for name in found if name not in columns]
    if not extra:
        return ""
    return f"{len(extra)} column(s) of the file are not in the spec and were not read: {quoted(extra)}"


@task(name="load_dataset", cache_policy=NO_CACHE)
def load_dataset(data_path: str | None, default_dir: Path, columns: list[str] | None = None) -> LoadedDataset:
    """Read the user's file, or the bundled digits materialised as Parquet, and fingerprint it.

    Args:
        columns: the spec's columns (DatasetSpec.file_columns): a file lacking one is refused by name before
            any row is read, and only these are read. None reads every column (for inferring a spec).
    """
    path = Path(data_path).expanduser() if data_path else materialise_default_dataset(default_dir)
    if path.is_dir():  # one subfolder per class of images (tasks.data.image_folders)
        check_readable_file(path)
        frame, sha256, note = read_image_folder(path)
        if columns is not None:
            check_spec_columns(path, list(frame.columns), columns)
        return LoadedDataset(frame=frame, source=str(path.resolve()), sha256=sha256, note=note)
    frame = resolve_image_paths(read_data_file(path, columns), path)
    return LoadedDataset(
        frame=frame, source=str(path.resolve()), sha256=file_sha256(path), note=unread_note(path, columns)
    )
