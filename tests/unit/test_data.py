"""load_dataset and split_dataset on tiny files made in each test."""

import os

import numpy as np
import pandas as pd
import pytest

from tasks.config import SplitConfig
from tasks.data import load_dataset, split_dataset
from tasks.errors import DataRejected
from tasks.schema import FEATURE_COLUMNS, TARGET_COLUMN


def tiny_frame(rows_per_class: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), rows_per_class)
    frame = pd.DataFrame(rng.integers(0, 17, size=(len(labels), 64)), columns=list(FEATURE_COLUMNS))
    frame[TARGET_COLUMN] = labels
    return frame


def test_reads_csv_and_parquet_with_the_same_fingerprint_for_the_same_bytes(tmp_path):
    frame = tiny_frame()
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    from_csv = load_dataset.fn(str(tmp_path / "a.csv"), tmp_path)
    from_parquet = load_dataset.fn(str(tmp_path / "a.parquet"), tmp_path)
    pd.testing.assert_frame_equal(from_csv.frame, from_parquet.frame, check_dtype=False)
    assert from_csv.sha256 == load_dataset.fn(str(tmp_path / "a.csv"), tmp_path).sha256
    assert from_csv.sha256 != from_parquet.sha256


def test_default_is_bundled_digits_materialised_as_parquet(tmp_path):
    loaded = load_dataset.fn(None, tmp_path / "datasets")
    assert loaded.rows == 1797
    assert loaded.source.endswith("digits.parquet")
    assert list(loaded.frame.columns) == [*FEATURE_COLUMNS, TARGET_COLUMN]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "missing.csv", "does not exist"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "data.txt").write_text("x") and d / "data.txt", "unsupported extension"),
        (lambda d: (d / "empty.csv").write_bytes(b"") or d / "empty.csv", "empty (0 bytes)"),
        (lambda d: (d / "head.csv").write_text(",".join(FEATURE_COLUMNS) + ",target\n") and d / "head.csv", "no rows"),
        (lambda d: (d / "bad.parquet").write_bytes(b"PAR1 not really") and d / "bad.parquet", "could not be read"),
    ],
    ids=["missing", "directory", "extension", "empty", "header-only", "corrupt-parquet"],
)
def test_unreadable_inputs_are_rejected_with_the_path_in_the_message(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(DataRejected) as rejected:
        load_dataset.fn(str(path), tmp_path)
    assert expected in str(rejected.value)
    assert str(path) in str(rejected.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file_is_rejected(tmp_path):
    path = tmp_path / "locked.csv"
    tiny_frame().to_csv(path, index=False)
    path.chmod(0)
    with pytest.raises(DataRejected, match="not readable"):
        load_dataset.fn(str(path), tmp_path)


def test_truncated_parquet_is_rejected(tmp_path):
    path = tmp_path / "cut.parquet"
    tiny_frame().to_parquet(path, index=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataRejected, match="could not be read as Parquet"):
        load_dataset.fn(str(path), tmp_path)


def test_split_is_stratified_seeded_and_disjoint():
    frame = tiny_frame(rows_per_class=20)
    config = SplitConfig(validation_fraction=0.2, test_fraction=0.2, seed=7)
    first, second = split_dataset.fn(frame, config), split_dataset.fn(frame, config)
    assert first.sizes() == {"train": 120, "validation": 40, "test": 40}
    assert np.array_equal(first.x_test, second.x_test)
    assert np.bincount(first.y_test).tolist() == [4] * 10
    assert first.x_train.dtype == np.float32 and first.y_train.dtype == np.int64


def test_split_refuses_classes_too_small_to_stratify():
    frame = tiny_frame()
    frame.loc[frame[TARGET_COLUMN] == 3, TARGET_COLUMN] = 4
    frame.loc[0, TARGET_COLUMN] = 3
    with pytest.raises(DataRejected, match=r"labels \[3\] have fewer than 5 rows"):
        split_dataset.fn(frame, SplitConfig())
