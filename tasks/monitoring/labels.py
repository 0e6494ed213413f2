"""Late labels: the true answers for captured requests, as a person sends them (`greenlight feedback --data`).

A labels file is checked whole before anything of it is kept (missing columns, empty ids, labels the model never
knew, non-numbers for regression); a good one is appended under the capture root (<model>/labels/, the layout in
tasks/core/capture_store.py) with the time it arrived, so labels sent over a week add up: every feedback run
reads all of them back, the latest label for a record winning (tasks/monitoring/live_metrics.py).
"""

import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from tasks.core.capture_store import CaptureStore
from tasks.core.errors import GreenlightError
from tasks.core.features.contract import value_text

ID_COLUMN = "request_id"
ROW_COLUMN = "row"
LABEL_COLUMN = "label"  # the label's column when it is not named as the spec's target
# A refusal lists this many examples: enough to see the pattern, short enough to read.
SHOWN = 5


class LabelsRejected(GreenlightError):
    """A labels file that cannot be used as it is; nothing of it was kept."""


@dataclass(frozen=True)
class LabelTarget:
    """What a label must be: the target's name, the task, and (classification) every label text the model knows."""

    name: str
    task: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelFile:
    """A checked labels file: one row per record (request_id, row, label, line), duplicates resolved."""

    path: str
    frame: pd.DataFrame
    has_rows: bool  # the file named each record's row; without it a label is for the request's only record
    duplicates: int  # rows for a record given again later in the file: the last one was kept

    def line(self) -> str:
        again = f" ({self.duplicates:,} given again: the last one kept)" if self.duplicates else ""
        return f"{len(self.frame):,} labels read from {self.path}{again}"


def require_file(path: Path) -> Path:
    """The labels file, refused at once when it is not there (before the registry and the capture are read)."""
    if not path.is_file():
        raise LabelsRejected(f"{path}: no such file (give a CSV or Parquet file of request_id and label)")
    return path


def read_table(path: Path) -> tuple[pd.DataFrame, bool]:
    """The file as text cells (CSV) or typed cells (Parquet); whether it is a CSV (its places are lines)."""
    require_file(path)
    csv = path.suffix.lower() != ".parquet"
    try:
        if csv:  # every cell as written: '007' stays an id, a label '1.0' is checked as the user wrote it
            return pd.read_csv(path, dtype=str, keep_default_na=False), True
        return pd.read_parquet(path), False
    except (OSError, ValueError) as error:
        raise LabelsRejected(f"{path}: cannot be read as {'CSV' if csv else 'Parquet'}: {error}") from error


def places(frame: pd.DataFrame, mask: pd.Series, csv: bool) -> str:
    """'line 4, line 9 (and 12 more)' for a CSV (the header is line 1), 'row 2, row 7' for Parquet (from 0)."""
    found = [int(i) for i in frame.index[mask.to_numpy()]]
    named = ", ".join(f"line {i + 2}" if csv else f"row {i}" for i in found[:SHOWN])
    return named + (f" (and {len(found) - SHOWN:,} more)" if len(found) > SHOWN else "")


def label_column(frame: pd.DataFrame, path: Path, target: LabelTarget) -> str:
    """The target's own name, else 'label'; a refusal when neither, or both, are there."""
    named = [name for name in dict.fromkeys((target.name, LABEL_COLUMN)) if name in frame.columns]
    columns = ", ".join(map(str, frame.columns)) or "none"
    if not named:
        raise LabelsRejected(
            f"{path}: no label column: name it '{target.name}' (the target) or '{LABEL_COLUMN}' (columns: {columns})"
        )
    if len(named) > 1:
        raise LabelsRejected(f"{path}: both '{target.name}' and '{LABEL_COLUMN}' are there: keep the true labels' one")
    return named[0]


def checked_ids(frame: pd.DataFrame, path: Path, csv: bool) -> pd.Series:
    if ID_COLUMN not in frame.columns:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise LabelsRejected(
            f"{path}: no column '{ID_COLUMN}' (the X-Request-Id header each answer carried; columns: {columns})"
        )
    ids = frame[ID_COLUMN].map(value_text)
    if (empty := ids.eq("")).any():
        raise LabelsRejected(f"{path}, column '{ID_COLUMN}': empty request id at {places(frame, empty, csv)}")
    return ids


def checked_rows(frame: pd.DataFrame, path: Path, csv: bool) -> pd.Series:
    """Each record's index within its request (0 when the file has no row column)."""
    if ROW_COLUMN not in frame.columns:
        return pd.Series(0, index=frame.index, dtype="int64")
    rows = pd.to_numeric(frame[ROW_COLUMN], errors="coerce")
    bad = rows.isna() | (rows < 0) | (rows % 1 != 0)
    if bad.any():
        raise LabelsRejected(
            f"{path}, column '{ROW_COLUMN}': not a record index (0, 1, 2, ... within the request)"
            f" at {places(frame, bad, csv)}"
        )
    return rows.astype("int64")


def checked_labels(frame: pd.DataFrame, column: str, path: Path, csv: bool, target: LabelTarget) -> pd.Series:
    """Label texts the model knows (classification), or finite numbers (regression)."""
    if target.task == "regression":
        numbers = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        bad = ~numbers.map(math.isfinite)
        if bad.any():
            shown = ", ".join(repr(frame[column][i]) for i in frame.index[bad.to_numpy()][:SHOWN])
            raise LabelsRejected(
                f"{path}, column '{column}': not a number at {places(frame, bad, csv)} ({shown});"
                f" '{target.name}' is a regression target"
            )
        return numbers
    texts = frame[column].map(value_text)
    unknown = ~texts.isin(target.labels)
    if unknown.any():
        shown = ", ".join(repr(texts[i]) for i in frame.index[unknown.to_numpy()][:SHOWN])
        raise LabelsRejected(
            f"{path}, column '{column}': {int(unknown.sum()):,} label(s) the model never knew at"
            f" {places(frame, unknown, csv)} ({shown}); known labels: {', '.join(target.labels)}"
        )
    return texts


def read_labels(path: Path, target: LabelTarget) -> LabelFile:
    """Read and check a labels file whole; a LabelsRejected names the file, the column and the lines."""
    frame, csv = read_table(path)
    frame = frame.reset_index(drop=True)
    if frame.empty:
        raise LabelsRejected(f"{path}: no labels in it (a header of request_id and a label column, then a row each)")
    column = label_column(frame, path, target)
    checked = pd.DataFrame(
        {
            ID_COLUMN: checked_ids(frame, path, csv),
            ROW_COLUMN: checked_rows(frame, path, csv),
            LABEL_COLUMN: checked_labels(frame, column, path, csv, target),
        }
    )
    kept = checked.drop_duplicates([ID_COLUMN, ROW_COLUMN], keep="last")
    return LabelFile(str(path), kept.reset_index(drop=True), ROW_COLUMN in frame.columns, len(checked) - len(kept))


def store_labels(store: CaptureStore, model: str, labels: LabelFile, received: datetime) -> str:
    """Append the labels under <capture root>/<model>/labels/ with the time they arrived; the file's path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = labels.frame.assign(received=pd.Timestamp(received).tz_convert("UTC"), source=Path(labels.path).name)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(1, ROW_COLUMN, table[ROW_COLUMN].cast(pa.int32()))  # as the capture files write it
    # Milliseconds, as capture times are: the microseconds of an arrival say nothing.
    table = table.set_column(3, "received", table["received"].cast(pa.timestamp("ms", tz="UTC"), safe=False))
    folder = store.labels_folder(model)
    store.make_folder(folder)
    path = f"{folder}/{received:%Y%m%dT%H%M%S}-{os.getpid()}-{os.urandom(3).hex()}.parquet"
    with store.open_output(path) as stream:  # on an object store the object appears whole when closed
        pq.write_table(table, stream)
    return path


@dataclass(frozen=True)
class StoredLabels:
    """Every label fed back for a model, the latest per record; how many files they came from."""

    frame: pd.DataFrame  # request_id, row, label, received
    files: int
    unreadable: tuple[str, ...]


def stored_labels(store: CaptureStore, model: str) -> StoredLabels:
    """All labels kept for the model; for a record labelled more than once, the one received last."""
    read = store.read(store.labels_folder(model), columns=[ID_COLUMN, ROW_COLUMN, LABEL_COLUMN, "received"])
    if read.table is None:
        empty = pd.DataFrame({ID_COLUMN: [], ROW_COLUMN: [], LABEL_COLUMN: [], "received": []})
        return StoredLabels(empty, 0, read.unreadable)
    frame = read.table.to_pandas().sort_values("received", kind="stable")
    latest = frame.drop_duplicates([ID_COLUMN, ROW_COLUMN], keep="last").reset_index(drop=True)
    return StoredLabels(latest, read.files, read.unreadable)
