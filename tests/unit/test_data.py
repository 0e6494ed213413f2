"""load_dataset and split_dataset on tiny files made in each test: every bad file is refused with a message."""

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.config import SplitConfig
from tasks.core.errors import DataRejected
from tasks.core.schema import FEATURE_COLUMNS, TARGET_COLUMN
from tasks.data.files import SCHEMA_COLUMNS, load_dataset, read_data_file, split_dataset

HEADER = ",".join(SCHEMA_COLUMNS)


def tiny_frame(rows_per_class: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), rows_per_class)
    frame = pd.DataFrame(rng.integers(0, 17, size=(len(labels), 64)), columns=list(FEATURE_COLUMNS))
    frame[TARGET_COLUMN] = labels
    return frame


def rejected(path, tmp_path) -> str:
    """The DataRejected message load_dataset raises for this file; it must name the file."""
    with pytest.raises(DataRejected) as raised:
        load_dataset.fn(str(path), tmp_path)
    assert raised.value.exit_code == 2
    assert str(path) in str(raised.value)
    return str(raised.value)


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


def test_nonexistent_path(tmp_path):
    assert "does not exist" in rejected(tmp_path / "missing.csv", tmp_path)


def test_directory(tmp_path):
    assert "is a directory" in rejected(tmp_path, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.csv"
    tiny_frame().to_csv(path, index=False)
    path.chmod(0)
    assert "not readable (permission denied)" in rejected(path, tmp_path)


def test_file_that_refuses_to_open_despite_its_mode(tmp_path, monkeypatch):
    """What root meets on a root-squashed NFS share, or anyone behind an ACL: open() fails after os.access."""
    path = tmp_path / "acl.csv"
    tiny_frame().to_csv(path, index=False)
    real_open = Path.open

    def refuse(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    assert "could not be opened (Permission denied)" in rejected(path, tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    assert "empty (0 bytes)" in rejected(tmp_path / "empty.csv", tmp_path)


def test_header_only_csv(tmp_path):
    (tmp_path / "head.csv").write_text(HEADER + "\n")
    assert "has a header but no rows" in rejected(tmp_path / "head.csv", tmp_path)


def test_header_only_parquet(tmp_path):
    tiny_frame().head(0).to_parquet(tmp_path / "head.parquet", index=False)
    assert "has a header but no rows" in rejected(tmp_path / "head.parquet", tmp_path)


def test_unsupported_extension(tmp_path):
    (tmp_path / "data.xlsx").write_text("x")
    message = rejected(tmp_path / "data.xlsx", tmp_path)
    assert "unsupported extension '.xlsx'" in message and ".csv" in message


def test_corrupt_parquet(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really a parquet file PAR1")
    assert "corrupt Parquet file: its footer could not be read" in rejected(tmp_path / "bad.parquet", tmp_path)


def test_truncated_parquet(tmp_path):
    path = tmp_path / "cut.parquet"
    tiny_frame().to_parquet(path, index=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "truncated or corrupt Parquet file" in rejected(path, tmp_path)


def test_csv_renamed_to_parquet(tmp_path):
    tiny_frame().to_csv(tmp_path / "data.parquet", index=False)
    assert "is it CSV? then rename it to .csv" in rejected(tmp_path / "data.parquet", tmp_path)


def test_semicolon_delimited_csv_is_named_as_such(tmp_path):
    tiny_frame().to_csv(tmp_path / "excel.csv", index=False, sep=";")
    message = rejected(tmp_path / "excel.csv", tmp_path)
    assert "looks like ';'-delimited" in message
    assert "missing" not in message  # not "missing 65 columns"


def test_tab_delimited_csv_is_named_as_such(tmp_path):
    tiny_frame().to_csv(tmp_path / "tabs.csv", index=False, sep="\t")
    assert "looks like '\\t'-delimited" in rejected(tmp_path / "tabs.csv", tmp_path)


def test_missing_columns_are_named_before_any_row_is_read(tmp_path):
    tiny_frame().drop(columns=["pixel_3_4", "target"]).to_csv(tmp_path / "short.csv", index=False)
    message = rejected(tmp_path / "short.csv", tmp_path)
    assert "missing 'pixel_3_4', 'target'" in message and "no rows were read" in message


def test_unexpected_extra_column_is_named(tmp_path):
    frame = tiny_frame()
    frame["brightness"] = 1
    frame.to_parquet(tmp_path / "extra.parquet", index=False)
    assert "unexpected 'brightness'" in rejected(tmp_path / "extra.parquet", tmp_path)


def test_duplicated_column_name_is_named(tmp_path):
    (tmp_path / "dup.csv").write_text(HEADER + ",pixel_0_0\n" + ",".join(["1"] * 66) + "\n")
    assert "duplicated 'pixel_0_0'" in rejected(tmp_path / "dup.csv", tmp_path)


def test_lookalike_column_name_gets_a_hint(tmp_path):
    tiny_frame().rename(columns={"target": "Target"}).to_csv(tmp_path / "case.csv", index=False)
    assert "case- and space-sensitive: 'Target' for 'target'" in rejected(tmp_path / "case.csv", tmp_path)


def test_csv_without_a_header_line(tmp_path):
    tiny_frame().to_csv(tmp_path / "noheader.csv", index=False, header=False)
    assert "holds numbers" in rejected(tmp_path / "noheader.csv", tmp_path)


def test_byte_order_mark_in_the_header_is_accepted(tmp_path):
    path = tmp_path / "excel_utf8.csv"
    tiny_frame().to_csv(path, index=False, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    loaded = load_dataset.fn(str(path), tmp_path)
    assert list(loaded.frame.columns) == list(SCHEMA_COLUMNS)


def test_gzip_renamed_to_csv(tmp_path):
    path = tmp_path / "packed.csv"
    path.write_bytes(gzip.compress(tiny_frame().to_csv(index=False).encode()))
    assert "gzip-compressed" in rejected(path, tmp_path)


def test_parquet_renamed_to_csv(tmp_path):
    tiny_frame().to_parquet(tmp_path / "wrong.csv", index=False)
    assert "rename it to .parquet" in rejected(tmp_path / "wrong.csv", tmp_path)


def test_binary_file_named_csv(tmp_path):
    (tmp_path / "blob.csv").write_bytes(bytes(range(256)) * 4)
    assert "NUL bytes" in rejected(tmp_path / "blob.csv", tmp_path)


def test_non_utf8_header(tmp_path):
    (tmp_path / "latin1.csv").write_bytes(HEADER.replace("target", "zielgr\xf6\xdfe").encode("latin-1") + b"\n1\n")
    assert "not UTF-8 text" in rejected(tmp_path / "latin1.csv", tmp_path)


def test_ragged_csv_row_names_its_line(tmp_path):
    rows = [",".join(["1"] * 65)] * 3 + [",".join(["1"] * 67)]
    (tmp_path / "ragged.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    message = rejected(tmp_path / "ragged.csv", tmp_path)
    assert "could not be read as CSV" in message and "line 5" in message


def test_nested_parquet_column_is_named(tmp_path):
    table = pa.table({"pixels": pa.array([{"a": 1, "b": 2}]), "target": [1]})
    pq.write_table(table, tmp_path / "nested.parquet")
    assert "nested column(s) 'pixels' (struct<a: int64, b: int64>)" in rejected(tmp_path / "nested.parquet", tmp_path)


def test_timestamp_typed_parquet_pixel_column_is_named(tmp_path):
    frame = tiny_frame()
    frame["pixel_3_4"] = pd.Timestamp("2024-01-01")
    frame.to_parquet(tmp_path / "dates.parquet", index=False)
    assert "column 'pixel_3_4' is timestamp" in rejected(tmp_path / "dates.parquet", tmp_path)


def test_text_typed_parquet_pixel_column_is_read_for_validation_to_name_its_values(tmp_path):
    frame = tiny_frame()
    frame["pixel_3_4"] = frame["pixel_3_4"].astype(str)
    frame.to_parquet(tmp_path / "text.parquet", index=False)
    assert not pd.api.types.is_numeric_dtype(
        load_dataset.fn(str(tmp_path / "text.parquet"), tmp_path).frame["pixel_3_4"]
    )


def test_columns_are_matched_by_name_and_put_in_schema_order(tmp_path):
    frame = tiny_frame()
    frame[list(reversed(frame.columns))].to_csv(tmp_path / "reversed.csv", index=False)
    loaded = load_dataset.fn(str(tmp_path / "reversed.csv"), tmp_path)
    assert list(loaded.frame.columns) == list(SCHEMA_COLUMNS)
    pd.testing.assert_frame_equal(loaded.frame, frame)


def test_stored_parquet_index_is_neither_a_column_nor_the_row_numbers(tmp_path):
    frame = tiny_frame().set_index(pd.Index(np.arange(100) * 7, name="sample_id"))
    frame.to_parquet(tmp_path / "indexed.parquet")
    loaded = load_dataset.fn(str(tmp_path / "indexed.parquet"), tmp_path)
    assert list(loaded.frame.columns) == list(SCHEMA_COLUMNS)
    assert list(loaded.frame.index) == list(range(100))


def big_file_with_bad_header(path, rows: int = 100_000) -> None:
    """A header with one wrong name, then many rows: the rows must never be parsed."""
    header = HEADER.replace("pixel_3_4", "pixel_34")
    row = ",".join(["1"] * 65) + "\n"
    path.write_text(header + "\n" + row * rows)


@pytest.fixture
def full_readers_forbidden(monkeypatch):
    """Make every whole-file reader fail the test if called."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the whole file was read to judge its header")

    for module, name in ((pd, "read_csv"), (pd, "read_parquet"), (pq, "read_table"), (pq, "ParquetFile")):
        monkeypatch.setattr(module, name, forbidden)


def test_bad_csv_header_is_refused_without_reading_the_rows(tmp_path, full_readers_forbidden):
    path = tmp_path / "big.csv"
    big_file_with_bad_header(path)
    assert path.stat().st_size > 10_000_000
    message = rejected(path, tmp_path)
    assert "missing 'pixel_3_4'" in message and "unexpected 'pixel_34'" in message


def test_bad_parquet_schema_is_refused_from_the_footer_alone(tmp_path, full_readers_forbidden):
    path = tmp_path / "big.parquet"
    frame = pd.concat([tiny_frame()] * 100, ignore_index=True).rename(columns={"target": "label"})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    assert "missing 'target'" in rejected(path, tmp_path)


def test_read_data_file_without_a_schema_still_refuses_repeated_names(tmp_path):
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataRejected, match="duplicated 'a'"):
        read_data_file(tmp_path / "dup.csv", expected=None)


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
