"""The /predict contract compiled from a spec, without a server: what a client sends, what it is refused for,
what it gets back. Real tables: palmerpenguins (string categories, NaNs), wine (all numeric), diabetes
(regression), breast_cancer (binary); their specs are written here as a reviewer would commit them."""

import json

import numpy as np
import palmerpenguins
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from bentos.documentation import field_docs, openapi_document
from tasks.core.contract import MAX_ROWS, Batch, Contract, Refusal, compile_contract
from tasks.core.spec import DatasetSpec, FeatureSpec, TargetSpec, digits_spec, value_text
from tasks.onnx.verified import check_feeds


def penguins() -> DatasetSpec:
    frame = palmerpenguins.load_penguins()
    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    features = [
        FeatureSpec(name=name, type="numeric", nullable=True, min=frame[name].min(), max=frame[name].max())
        for name in numbers
    ]
    features += [
        FeatureSpec(name="island", type="categorical", values=sorted(frame["island"].unique())),
        FeatureSpec(name="sex", type="categorical", nullable=True, values=sorted(frame["sex"].dropna().unique())),
        FeatureSpec(name="year", type="categorical", values=sorted(int(y) for y in frame["year"].unique())),
    ]
    labels = sorted(frame["species"].unique())
    return DatasetSpec(
        name="penguins", target=TargetSpec(name="species", task="classification", labels=labels), features=features
    )


def numeric_table(data: object, name: str, target: TargetSpec) -> DatasetSpec:
    frame = data.frame.drop(columns=["target"])
    features = [FeatureSpec(name=c, type="numeric", min=frame[c].min(), max=frame[c].max()) for c in frame.columns]
    return DatasetSpec(name=name, target=target, features=features)


def wine() -> DatasetSpec:
    return numeric_table(
        load_wine(as_frame=True), "wine", TargetSpec(name="target", task="classification", labels=[0, 1, 2])
    )


def diabetes() -> DatasetSpec:
    return numeric_table(load_diabetes(as_frame=True), "diabetes", TargetSpec(name="target", task="regression"))


def penguin_records(rows: slice) -> list[dict]:
    """Rows of the real table as a client sends them: NaN as null, the target and nothing else dropped."""
    frame = palmerpenguins.load_penguins().drop(columns=["species"]).iloc[rows].astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def parse(contract: Contract, body: object) -> Batch | Refusal:
    return contract.parse(json.dumps(body).encode())


def refusal(contract: Contract, body: object) -> str:
    outcome = parse(contract, body)
    assert isinstance(outcome, Refusal), outcome
    assert outcome.status == 422
    return outcome.message


def test_real_penguin_rows_with_nans_become_the_graphs_feeds() -> None:
    contract = compile_contract(penguins())
    records = penguin_records(slice(0, 5))  # row 3 is all NaN but island and year
    batch = parse(contract, {"records": records})
    assert isinstance(batch, Batch), batch
    assert batch.size == 5
    assert batch.feeds["numeric"].dtype == np.float32 and batch.feeds["numeric"].shape == (5, 4)
    assert np.isnan(batch.feeds["numeric"][3]).all()
    assert batch.feeds["categorical"].tolist()[0] == ["Torgersen", "male", "2007"]
    assert batch.feeds["categorical"].tolist()[3] == ["Torgersen", "", "2007"]  # null sex: "" = missing


def test_a_category_in_any_of_its_spellings_is_one_vocabulary_key() -> None:
    contract = compile_contract(penguins())
    record = penguin_records(slice(0, 1))[0]
    codes = [
        parse(contract, {"records": [{**record, "year": y}]}).feeds["categorical"][0, 2] for y in (2007, 2007.0, "2007")
    ]
    assert codes == ["2007"] * 3
    assert parse(contract, {"records": [{**record, "island": "Atlantis"}]}).feeds["categorical"][0, 0] == "Atlantis"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bill_length_mm": "long"}, "record 1, field 'bill_length_mm': \"long\" is not a number"),
        ({"bill_length_mm": True}, "record 1, field 'bill_length_mm': true is not a number"),
        ({"body_mass_g": [3750]}, "record 1, field 'body_mass_g': a list of 1 items is not a number"),
        ({"island": None}, "record 1, field 'island': null is not allowed"),
        ({"island": ["Dream"]}, "record 1, field 'island': a list of 1 items is not a category"),
        ({"flipper": 3}, "record 1: unknown field 'flipper'; the fields are bill_length_mm, bill_depth_mm"),
    ],
)
def test_a_wrong_value_is_refused_naming_record_field_and_value(change: dict, message: str) -> None:
    contract = compile_contract(penguins())
    first, second = penguin_records(slice(0, 2))
    assert message in refusal(contract, {"records": [first, {**second, **change}]})


def test_a_required_field_missing_and_a_record_not_an_object_are_refused() -> None:
    contract = compile_contract(penguins())
    (record,) = penguin_records(slice(0, 1))
    without_island = {k: v for k, v in record.items() if k != "island"}
    assert "record 0: field 'island' is missing" in refusal(contract, {"records": [without_island]})
    assert 'record 1 must be an object {"field": value, ...}, got "Adelie"' in refusal(
        contract, {"records": [record, "Adelie"]}
    )
    assert "'rows' is only for models whose inputs are all numbers" in refusal(contract, {"rows": [[1.0]]})
    assert parse(contract, {"records": [record] * (MAX_ROWS + 1)}).status == 413


def test_an_all_numeric_table_takes_rows_in_column_order_or_records() -> None:
    spec = wine()
    contract = compile_contract(spec)
    data = load_wine().data[:3]
    by_rows = parse(contract, {"rows": data.tolist()})
    by_records = parse(
        contract, {"records": [dict(zip(spec.input_columns, row, strict=True)) for row in data.tolist()]}
    )
    np.testing.assert_array_equal(by_rows.feeds["numeric"], by_records.feeds["numeric"])
    np.testing.assert_allclose(by_rows.feeds["numeric"], data, rtol=1e-6)
    assert "row 0 has 12 values; every row needs exactly 13" in refusal(contract, {"rows": [data[0, :12].tolist()]})
    assert 'send either "records" or "rows"' in refusal(
        contract, {"rows": data.tolist(), "records": contract.example_body()["records"]}
    )


def test_rows_may_hold_null_only_where_the_spec_allows_it() -> None:
    target = TargetSpec(name="y", task="regression")
    spec = DatasetSpec(
        target=target,
        features=[FeatureSpec(name="a", type="numeric"), FeatureSpec(name="b", type="numeric", nullable=True)],
    )
    contract = compile_contract(spec)
    assert np.isnan(parse(contract, {"rows": [[1, None]]}).feeds["numeric"][0, 1])
    assert "row 1, column a: null is not allowed" in refusal(contract, {"rows": [[1, 2], [None, 2]]})


def test_digits_rows_keep_their_range() -> None:
    contract = compile_contract(digits_spec().dataset)
    row = [0] * 64
    assert parse(contract, {"rows": [row]}).feeds["pixels"].shape == (1, 64)
    message = refusal(contract, {"rows": [row, [*row[:17], 16.5, *row[18:]]]})
    assert message == "row 1, column pixel_2_1: 16.5 is above the maximum 16"


def test_classification_answers_the_users_labels_with_probabilities_keyed_by_label() -> None:
    target = TargetSpec(name="malignant", task="classification", labels=[False, True])
    columns = load_breast_cancer().feature_names[:3]
    spec = DatasetSpec(target=target, features=[FeatureSpec(name=c, type="numeric") for c in columns])
    answer = json.loads(compile_contract(spec).answer(np.array([[2.0, 0.0], [0.0, 3.0]], np.float32), "bc", "4"))
    assert answer["predictions"] == [False, True]  # the labels' own JSON type, not their index
    assert [list(p) for p in answer["probabilities"]] == [["false", "true"]] * 2
    assert answer["probabilities"][0]["false"] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert (answer["model_name"], answer["model_version"]) == ("bc", "4")


def test_regression_answers_numbers_in_the_targets_units() -> None:
    answer = json.loads(compile_contract(diabetes()).answer(np.array([151.5, 75.25], np.float32), "d", "1"))
    assert answer == {"predictions": [151.5, 75.25], "model_version": "1", "model_name": "d"}


@pytest.mark.parametrize("spec", [penguins(), wine(), diabetes(), digits_spec().dataset], ids=lambda s: s.name)
def test_the_example_request_is_one_the_contract_accepts(spec: DatasetSpec) -> None:
    contract = compile_contract(spec)
    batch = parse(contract, contract.example_body())
    assert isinstance(batch, Batch), batch
    assert set(batch.feeds) == set(spec.onnx_inputs())


def test_the_openapi_document_names_every_field_with_its_type() -> None:
    spec = penguins()
    document = openapi_document(compile_contract(spec), "penguins", "2")
    record = document["components"]["schemas"]["Record"]
    assert list(record["properties"]) == [f.name for f in spec.features]
    assert set(record["required"]) == {"island", "year"}
    assert record["properties"]["bill_length_mm"]["anyOf"][0]["type"] == "number"
    assert "Biscoe" in record["properties"]["island"]["description"]
    answer = document["components"]["schemas"]["Prediction"]["properties"]
    assert answer["predictions"]["items"]["enum"] == spec.target.labels
    assert list(answer["probabilities"]["items"]["properties"]) == [value_text(v) for v in spec.target.labels]
    docs = {doc.name: doc for doc in field_docs(compile_contract(spec))}
    assert docs["sex"].missing == "may be null or absent" and docs["island"].missing == "required"


def test_column_names_that_are_not_identifiers_are_fields() -> None:
    names = ["bill length (mm)", "model_config", "1st", "class"]
    spec = DatasetSpec(
        target=TargetSpec(name="y", task="regression"), features=[FeatureSpec(name=n, type="numeric") for n in names]
    )
    batch = parse(compile_contract(spec), {"records": [dict.fromkeys(names, 1.5)]})
    assert batch.feeds["numeric"].tolist() == [[1.5] * 4]


def test_a_small_batch_and_a_large_one_answer_the_same_probabilities() -> None:
    """Small batches take a plain-Python softmax (speed), large ones numpy's: a row's answer must not depend on it."""
    contract = compile_contract(penguins())
    logits = np.random.default_rng(0).normal(0, 5, (40, 3)).astype(np.float32)
    small = json.loads(contract.answer(logits[:3], "penguins", "1"))
    large = json.loads(contract.answer(logits, "penguins", "1"))
    assert small["predictions"] == large["predictions"][:3]
    for mine, theirs in zip(small["probabilities"], large["probabilities"][:3], strict=True):
        assert mine.keys() == theirs.keys()
        assert all(abs(mine[k] - theirs[k]) < 1e-12 for k in mine)


def dated() -> DatasetSpec:
    when = FeatureSpec(name="when", type="datetime", nullable=True, parts=["year", "hour", "elapsed"], min="2024-01-01")
    return DatasetSpec(
        target=TargetSpec(name="y", task="regression"), features=[FeatureSpec(name="x", type="numeric"), when]
    )


def test_a_datetime_field_takes_iso_text_and_feeds_the_parts_the_spec_computes() -> None:
    spec = dated()
    contract = compile_contract(spec)
    records = [{"x": 1.0, "when": "2024-03-31T13:30:00"}, {"x": 2.0, "when": None}, {"x": 3.0}]
    batch = parse(contract, {"records": records})
    assert isinstance(batch, Batch), batch
    expected = spec.feeds({"x": [1.0, 2.0, 3.0], "when": ["2024-03-31T13:30:00", None, None]})
    np.testing.assert_array_equal(batch.feeds["numeric"], expected["numeric"])
    assert batch.feeds["numeric"][0].tolist() == pytest.approx([1.0, 2024, 13.5, 90 + 13.5 / 24])
    assert contract.rows is None  # a date is not a number: no rows form
    example = contract.example_body()
    check_feeds(contract, parse(contract, example), contract.request.model_validate(example).records)  # warm-up


def test_a_datetime_field_refuses_what_is_not_a_date_saying_what_to_send() -> None:
    contract = compile_contract(dated())
    not_a_date = refusal(contract, {"records": [{"x": 1.0, "when": "2024-03-31"}, {"x": 1.0, "when": "next week"}]})
    assert not_a_date.startswith("record 1, field 'when': \"next week\" is not a date; send ISO 8601, e.g.")
    a_number = refusal(contract, {"records": [{"x": 1.0, "when": 1711891800}]})
    assert a_number.startswith("record 0, field 'when': 1711891800 is not a date (send an ISO 8601 string")
    schema = openapi_document(contract, "dated", "1")["components"]["schemas"]["Record"]["properties"]["when"]
    assert schema["anyOf"][0]["type"] == "string" and "ISO 8601" in schema["description"]
