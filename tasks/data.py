"""Data stage: read the input file (or the bundled digits), fingerprint it, split it."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import train_test_split

from tasks.config import SplitConfig
from tasks.errors import DataRejected
from tasks.schema import FEATURE_COLUMNS, TARGET_COLUMN

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")
PARQUET_MAGIC = b"PAR1"


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
        partial = path.with_suffix(".parquet.partial")
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


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, turning parser errors into a DataRejected naming the file."""
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        kind = "CSV" if path.suffix.lower() == ".csv" else "Parquet (corrupt or truncated?)"
        raise DataRejected(f"data file {path} could not be read as {kind}: {error}") from error


@task(name="load_dataset", cache_policy=NO_CACHE)
def load_dataset(data_path: str | None, default_dir: Path) -> LoadedDataset:
    """Read the user's file, or the bundled digits materialised as Parquet, and fingerprint it."""
    path = Path(data_path).expanduser() if data_path else materialise_default_dataset(default_dir)
    check_readable_file(path)
    frame = read_frame(path)
    if frame.empty:
        raise DataRejected(f"data file {path} has a header but no rows")
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
