"""load_dataset on tiny files made in each test: every bad file is refused with a message, any table is read."""

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.errors import DataRejected
from tasks.core.spec import DIGITS_COLUMNS, digits_spec
from tasks.data.files import load_dataset, read_data_file

SPEC_COLUMNS = digits_spec().dataset.file_columns  # 64 pixels, then 'target'
HEADER = ",".join(SPEC_COLUMNS)


def tiny_frame(rows_per_class: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), rows_per_class)
    frame = pd.DataFrame(rng.integers(0, 17, size=(len(labels), 64)), columns=DIGITS_COLUMNS)
    frame["target"] = labels
    return frame


def load(path, tmp_path, columns: list[str] | None = SPEC_COLUMNS):
    """load_dataset as a run with the digits spec calls it (columns=None: as inference reads a table)."""
    return load_dataset.fn(str(path), tmp_path, columns)


def rejected(path, tmp_path, columns: list[str] | None = SPEC_COLUMNS) -> str:
    """The DataRejected message load_dataset raises for this file; it must name the file."""
    with pytest.raises(DataRejected) as raised:
        load(path, tmp_path, columns)
    assert raised.value.exit_code == 2
    assert str(path) in str(raised.value)
    return str(raised.value)


def test_reads_csv_and_parquet_with_the_same_fingerprint_for_the_same_bytes(tmp_path):
    frame = tiny_frame()
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    from_csv = load(tmp_path / "a.csv", tmp_path)
    from_parquet = load(tmp_path / "a.parquet", tmp_path)
    pd.testing.assert_frame_equal(from_csv.frame, from_parquet.frame, check_dtype=False)
    assert from_csv.sha256 == load(tmp_path / "a.csv", tmp_path).sha256
    assert from_csv.sha256 != from_parquet.sha256


def test_default_is_bundled_digits_materialised_as_parquet(tmp_path):
    loaded = load_dataset.fn(None, tmp_path / "datasets", SPEC_COLUMNS)
    assert loaded.rows == 1797
    assert loaded.source.endswith("digits.parquet")
    assert list(loaded.frame.columns) == SPEC_COLUMNS and loaded.note == ""


def test_nonexistent_path(tmp_path):
    assert "does not exist" in rejected(tmp_path / "missing.csv", tmp_path)


def test_a_folder_without_class_subfolders_of_images_says_what_an_image_dataset_looks_like(tmp_path):
    tiny_frame().to_csv(tmp_path / "table.csv", index=False)
    message = rejected(tmp_path, tmp_path)
    assert "no class subfolder with .png/.jpg/.jpeg images" in message
    assert f"for a table pass the file itself: {tmp_path / 'table.csv'}" in message


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


def test_columns_the_spec_does_not_name_are_left_unread_and_noted(tmp_path):
    frame = tiny_frame()
    frame["brightness"] = 1
    frame.to_parquet(tmp_path / "extra.parquet", index=False)
    loaded = load(tmp_path / "extra.parquet", tmp_path)

    assert list(loaded.frame.columns) == SPEC_COLUMNS
    assert loaded.note == "1 column(s) of the file are not in the spec and were not read: 'brightness'"


def test_a_near_miss_name_is_suggested(tmp_path):
    tiny_frame().rename(columns={"pixel_3_4": "pixle_3_4"}).to_csv(tmp_path / "typo.csv", index=False)
    message = rejected(tmp_path / "typo.csv", tmp_path)
    assert "missing 'pixel_3_4', named by the spec (a typo? 'pixle_3_4' for 'pixel_3_4')" in message


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
    loaded = load(path, tmp_path)
    assert list(loaded.frame.columns) == SPEC_COLUMNS


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


def test_any_flat_parquet_type_is_read_for_the_spec_and_validation_to_judge(tmp_path):
    table = pa.table(
        {
            "text": ["a", None, "c"],
            "flag": [True, False, None],
            "count": pa.array([1, 2, 3], pa.int16()),
            "amount": [0.5, None, 2.0],
            "city": pa.array(["Oslo", "Rome", "Oslo"]).dictionary_encode(),
            "nothing": pa.nulls(3),
            "when": pa.array([0, 1, 2], pa.timestamp("s")),
        }
    )
    pq.write_table(table, tmp_path / "mixed.parquet")
    loaded = load(tmp_path / "mixed.parquet", tmp_path, columns=None)

    assert list(loaded.frame.columns) == table.column_names
    assert loaded.frame["city"].tolist() == ["Oslo", "Rome", "Oslo"] and loaded.frame["nothing"].isna().all()


def test_text_typed_parquet_pixel_column_is_read_for_validation_to_name_its_values(tmp_path):
    frame = tiny_frame()
    frame["pixel_3_4"] = frame["pixel_3_4"].astype(str)
    frame.to_parquet(tmp_path / "text.parquet", index=False)
    assert not pd.api.types.is_numeric_dtype(load(tmp_path / "text.parquet", tmp_path).frame["pixel_3_4"])


def test_columns_are_matched_by_name_and_put_in_schema_order(tmp_path):
    frame = tiny_frame()
    frame[list(reversed(frame.columns))].to_csv(tmp_path / "reversed.csv", index=False)
    loaded = load(tmp_path / "reversed.csv", tmp_path)
    assert list(loaded.frame.columns) == SPEC_COLUMNS
    pd.testing.assert_frame_equal(loaded.frame, frame)


def test_stored_parquet_index_is_neither_a_column_nor_the_row_numbers(tmp_path):
    frame = tiny_frame().set_index(pd.Index(np.arange(100) * 7, name="sample_id"))
    frame.to_parquet(tmp_path / "indexed.parquet")
    loaded = load(tmp_path / "indexed.parquet", tmp_path)
    assert list(loaded.frame.columns) == SPEC_COLUMNS
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
    assert "missing 'pixel_3_4'" in message and "'pixel_34' for 'pixel_3_4'" in message


def test_bad_parquet_schema_is_refused_from_the_footer_alone(tmp_path, full_readers_forbidden):
    path = tmp_path / "big.parquet"
    frame = pd.concat([tiny_frame()] * 100, ignore_index=True).rename(columns={"target": "label"})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    assert "missing 'target'" in rejected(path, tmp_path)


def test_without_a_spec_any_table_with_unique_names_is_read_in_file_order(tmp_path):
    (tmp_path / "churn.csv").write_text("tenure,contract,churn\n3,Month-to-month,yes\n40,Two year,no\n")
    loaded = load(tmp_path / "churn.csv", tmp_path, columns=None)

    assert list(loaded.frame.columns) == ["tenure", "contract", "churn"] and loaded.rows == 2
    assert loaded.frame["contract"].tolist() == ["Month-to-month", "Two year"]


def test_without_a_spec_repeated_names_are_still_refused(tmp_path):
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataRejected, match="duplicated 'a'"):
        read_data_file(tmp_path / "dup.csv", columns=None)


def test_without_a_spec_a_semicolon_file_is_still_named_as_such(tmp_path):
    (tmp_path / "excel.csv").write_text("a;b;c\n1;2;3\n")
    assert "looks like ';'-delimited" in rejected(tmp_path / "excel.csv", tmp_path, columns=None)
