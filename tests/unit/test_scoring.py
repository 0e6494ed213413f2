"""Batch scoring's rows, without a store or a model file: a file's cells read as a client sends them, checked by the
service's own contract (bad rows named with the service's reasons, good rows fed exactly as /predict feeds them),
and answered with the service's numbers."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tasks.core.contract import Batch, compile_contract
from tasks.core.spec import DatasetSpec, FeatureSpec, TargetSpec
from tasks.release.scoring import answer_columns, rejects_path
from tasks.release.scoring_rows import (
    MAX_REFUSED_PASSES,
    ScoringInput,
    check_columns,
    check_records,
    column_contract,
    records_of,
    request_columns,
)


def penguins() -> DatasetSpec:
    """A category, a nullable number, a required number, a nullable category of integers, an id."""
    features = [
        FeatureSpec(name="island", type="categorical", values=["Biscoe", "Dream", "Torgersen"]),
        FeatureSpec(name="bill_length_mm", type="numeric", nullable=True, min=32.1, max=59.6),
        FeatureSpec(name="flipper_length_mm", type="numeric", min=172, max=231),
        FeatureSpec(name="year", type="categorical", nullable=True, values=[2007, 2008, 2009]),
        FeatureSpec(name="penguin_id", type="id"),
    ]
    target = TargetSpec(name="species", task="classification", labels=["Adelie", "Chinstrap", "Gentoo"])
    return DatasetSpec(name="penguins", target=target, features=features)


CONTRACT = compile_contract(penguins())
MODEL_COLUMNS = ["island", "bill_length_mm", "flipper_length_mm", "year"]


def source(table: pa.Table) -> ScoringInput:
    kinds = {c: CONTRACT.feature_of(c).signature_type() for c in MODEL_COLUMNS if c in table.column_names}
    return ScoringInput(path=None, columns=list(kinds), kinds=kinds, absent=(), rows=table.num_rows)


def csv_chunk() -> pa.Table:
    """Cells as a CSV reader gives them (text, null where empty), three of them bad."""
    return pa.table(
        {
            "island": ["Biscoe", "Dream", None, "Anvers", "Torgersen", "Biscoe"],
            "bill_length_mm": ["39.1", None, "40.2", "41", "n/a?", "38"],
            "flipper_length_mm": ["181", "190", "200", "195", "200", None],
            "year": ["2007", None, "2009", "2010", "2008", "2008"],
        },
        schema=pa.schema([(c, pa.string()) for c in MODEL_COLUMNS]),
    )


def test_text_cells_are_read_as_the_feature_sends_them():
    records = records_of(csv_chunk(), source(csv_chunk()), CONTRACT)
    assert records[0] == {"island": "Biscoe", "bill_length_mm": 39.1, "flipper_length_mm": 181, "year": 2007}
    assert records[1]["bill_length_mm"] is None and records[1]["year"] is None
    assert records[4]["bill_length_mm"] == "n/a?"  # left as written, for the contract to refuse in its words


def test_nan_in_a_number_column_is_missing_as_pandas_reads_it():
    table = pa.table({"island": ["Dream"], "bill_length_mm": [float("nan")], "flipper_length_mm": [190.0]})
    (record,) = records_of(table, source(table), CONTRACT)
    assert record == {"island": "Dream", "bill_length_mm": None, "flipper_length_mm": 190.0}


def test_bad_rows_get_the_services_reasons_and_good_rows_its_feeds():
    records = records_of(csv_chunk(), source(csv_chunk()), CONTRACT)
    checked = check_records(CONTRACT, records, first_row=100)
    reasons = {position: refusal for position, refusal in checked.refused}
    assert sorted(reasons) == [2, 4, 5]  # a missing category, a word for a number, a missing required number
    assert reasons[2].row == 102 and reasons[2].field == "island"
    assert (
        reasons[2].message
        == "record 102, field 'island': null is not allowed: the model was trained without missing values here"
    )
    assert reasons[4].message.startswith("record 104, field 'bill_length_mm': \"n/a?\" is not a number")
    assert "null is not allowed" in reasons[5].message and reasons[5].field == "flipper_length_mm"
    assert checked.accepted == [0, 1, 3]  # an unseen island and year are answered, as the service answers them
    good = [records[i] for i in checked.accepted]
    parsed = CONTRACT.parse(json.dumps({"records": good}).encode())
    assert isinstance(parsed, Batch) and checked.batch.size == 3
    for name, array in parsed.feeds.items():
        assert checked.batch.feeds[name].dtype == array.dtype
        assert np.array_equal(checked.batch.feeds[name], array, equal_nan=array.dtype != object)


def test_the_reason_is_what_the_service_answers_for_the_same_record():
    record = {"island": "Dream", "bill_length_mm": float("inf"), "flipper_length_mm": 190.0}
    ((_, refusal),) = check_records(CONTRACT, [record], first_row=0).refused
    answered = CONTRACT.parse(json.dumps({"records": [record]}).encode())  # json writes Infinity, as clients do
    assert refusal.message == answered.message
    columns = {column: [value] for column, value in record.items()}
    ((_, by_column),) = check_columns(column_contract(CONTRACT), columns, rows=1, first_row=0).refused
    assert by_column.message == answered.message


def test_many_bad_rows_in_one_slice_are_each_named():
    good = {"island": "Dream", "bill_length_mm": 40.0, "flipper_length_mm": 190.0}
    records = [dict(good, flipper_length_mm=None) if i % 3 == 0 else good for i in range(3 * MAX_REFUSED_PASSES + 5)]
    checked = check_records(CONTRACT, records, first_row=0)
    assert [position for position, _ in checked.refused] == list(range(0, len(records), 3))
    assert checked.accepted == [i for i in range(len(records)) if i % 3] and checked.batch.size == len(checked.accepted)


def test_answers_are_the_services_numbers():
    outputs = np.random.default_rng(0).normal(0, 3, (5, 3)).astype(np.float32)
    columns = answer_columns(CONTRACT, outputs)
    answer = json.loads(CONTRACT.answer(outputs, "penguins", "1"))
    assert columns["prediction"].to_pylist() == answer["predictions"]
    for label in CONTRACT.label_texts:
        expected = [row[label] for row in answer["probabilities"]]
        assert columns[f"probability_{label}"].tolist() == pytest.approx(expected, rel=1e-12)


def test_rejects_sit_beside_the_answers_as_parquet():
    assert rejects_path(Path("out/scores.csv")) == Path("out/scores.csv.rejected.parquet")
    assert rejects_path(Path("scores.parquet")).name == "scores.parquet.rejected.parquet"


def test_a_table_checked_by_column_gets_the_same_reasons_and_feeds_as_by_record():
    """The column path (a table of numbers and categories) against the record path, on the same bad and good rows."""
    table = pa.concat_tables([csv_chunk()] * 3)
    rules = column_contract(CONTRACT)
    by_column = check_columns(rules, request_columns(table, source(table), CONTRACT), table.num_rows, first_row=7)
    by_record = check_records(CONTRACT, records_of(table, source(table), CONTRACT), first_row=7)
    assert by_column.accepted == by_record.accepted and len(by_column.refused) == 9
    assert [(i, r.message, r.field, r.row) for i, r in by_column.refused] == [
        (i, r.message, r.field, r.row) for i, r in by_record.refused
    ]
    for name, array in by_record.batch.feeds.items():
        assert by_column.batch.feeds[name].dtype == array.dtype
        assert np.array_equal(by_column.batch.feeds[name], array, equal_nan=array.dtype != object)


def test_an_absent_nullable_column_is_missing_in_every_row():
    table = csv_chunk().drop_columns(["bill_length_mm"]).slice(0, 2)
    checked = check_columns(column_contract(CONTRACT), request_columns(table, source(table), CONTRACT), 2, 0)
    expected = CONTRACT.parse(json.dumps({"records": records_of(table, source(table), CONTRACT)}).encode())
    assert checked.accepted == [0, 1] and np.isnan(checked.batch.feeds["numeric"][:, 0]).all()
    assert np.array_equal(checked.batch.feeds["numeric"], expected.feeds["numeric"], equal_nan=True)
