"""The Open Inference Protocol (V2) over a served spec, without a server: the metadata a KServe or Triton client
reads, tensors (JSON and binary, as tritonclient sends them) becoming the same feeds as /predict's records, the
refusals, and the answer in both forms."""

import json
import struct

import numpy as np
import pytest
from test_request_contract import diabetes, penguin_records, penguins
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from bentos import inference_protocol as v2
from tasks.core.contract import Batch, Refusal, compile_contract
from tasks.core.spec import digits_spec

PENGUINS = compile_contract(penguins())


def tensor(name: str, datatype: str, values: list) -> dict:
    return {"name": name, "datatype": datatype, "shape": [len(values)], "data": values}


def penguin_tensors(records: list[dict]) -> list[dict]:
    """One tensor per feature; a missing number is NaN (BYTES has no null: the rows used here have their
    categories)."""
    tensors = []
    for feature in PENGUINS.spec.model_features:
        values = [record.get(feature.name) for record in records]
        if feature.signature_type() == "double":
            tensors.append(tensor(feature.name, "FP64", [float("nan") if v is None else v for v in values]))
        else:
            tensors.append(tensor(feature.name, "BYTES", [str(v) for v in values]))
    return tensors


def binary_body(header: dict, blobs: list[bytes]) -> tuple[bytes, str]:
    encoded = json.dumps(header).encode()
    return encoded + b"".join(blobs), str(len(encoded))


def test_metadata_names_each_feature_with_its_datatype_and_shape() -> None:
    metadata = v2.model_metadata(PENGUINS, "penguins", "3")
    inputs = {i["name"]: (i["datatype"], i["shape"]) for i in metadata["inputs"]}
    assert inputs["bill_length_mm"] == ("FP32", [-1]) and inputs["island"] == ("BYTES", [-1])
    assert metadata["versions"] == ["3"]
    assert metadata["outputs"][1]["parameters"]["labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    digits = v2.model_metadata(compile_contract(digits_spec().dataset), "digits", "1")
    assert digits["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    regression = v2.model_metadata(compile_contract(diabetes()), "diabetes", "1")
    assert [o["name"] for o in regression["outputs"]] == ["prediction"]


def test_json_tensors_give_the_same_feeds_as_the_records_of_predict() -> None:
    records = [r for r in penguin_records(slice(0, 40)) if r["sex"]][:12]  # BYTES has no null: sent whole
    request = v2.parse_infer(json.dumps({"inputs": penguin_tensors(records)}).encode(), None, PENGUINS)
    assert isinstance(request, v2.InferRequest), request
    expected = PENGUINS.parse(json.dumps({"records": records}).encode())
    assert isinstance(expected, Batch)
    for name, feed in expected.feeds.items():
        np.testing.assert_array_equal(request.batch.feeds[name], feed)


def test_binary_tensors_as_tritonclient_sends_them() -> None:
    contract = compile_contract(digits_spec().dataset)
    pixels = (np.arange(2 * 64).reshape(2, 64) % 17).astype(np.float32)
    header = {
        "inputs": [
            {
                "name": "pixels",
                "shape": [2, 64],
                "datatype": "FP32",
                "parameters": {"binary_data_size": pixels.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    body, length = binary_body(header, [pixels.tobytes()])
    request = v2.parse_infer(body, length, contract)
    assert isinstance(request, v2.InferRequest), request
    np.testing.assert_array_equal(request.batch.feeds["pixels"], pixels)
    logits = np.array([[0.0] * 9 + [5.0], [5.0] + [0.0] * 9], dtype=np.float32)
    answer = v2.infer_answer(request, logits, contract, "digits", "1")
    size = int(answer.headers[v2.HEADER_LENGTH])
    outputs = {o["name"]: o for o in json.loads(answer.body[:size])["outputs"]}
    label_size = outputs["label"]["parameters"]["binary_data_size"]
    labels = deserialize_bytes_tensor(answer.body[size : size + label_size])
    assert [label.decode() for label in labels] == ["9", "0"]
    probabilities = np.frombuffer(answer.body[size + label_size :], dtype=np.float32).reshape(2, 10)
    assert probabilities.argmax(axis=1).tolist() == [9, 0] and np.allclose(probabilities.sum(axis=1), 1)


def test_binary_bytes_tensors_are_read_element_by_element() -> None:
    records = [r for r in penguin_records(slice(0, 40)) if r["sex"]][:3]
    tensors, blobs = [], []
    for item in penguin_tensors(records):
        if item["datatype"] == "BYTES":
            raw = serialize_byte_tensor(np.array([v.encode() for v in item["data"]], dtype=object)).item()
            tensors.append({**item, "parameters": {"binary_data_size": len(raw)}})
            del tensors[-1]["data"]
            blobs.append(raw)
        else:
            tensors.append(item)
    body, length = binary_body({"inputs": tensors}, blobs)
    request = v2.parse_infer(body, length, PENGUINS)
    assert isinstance(request, v2.InferRequest), request
    expected = PENGUINS.parse(json.dumps({"records": records}).encode())
    np.testing.assert_array_equal(request.batch.feeds["categorical"], expected.feeds["categorical"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: [*t, tensor("beak", "FP32", [1.0])], "unknown input 'beak'; the inputs are"),
        (lambda t: [x for x in t if x["name"] != "island"], "input 'island' is missing"),
        (lambda t: [{**x, "shape": [2]} if x["name"] == "island" else x for x in t], "input 'island': 1 values"),
        (lambda t: [tensor("island", "BYTES", ["Dream", "Biscoe"]), *t[1:]], "has 1 rows; the inputs before it"),
        (lambda t: [{**x, "datatype": "BYTES"} if x["name"] == "body_mass_g" else x for x in t], "is BYTES"),
        (lambda t: [{**x, "datatype": "FP8"} if x["name"] == "body_mass_g" else x for x in t], "'FP8' is not one"),
        (lambda t: [{**x, "data": ["x"]} if x["name"] == "body_mass_g" else x for x in t], "not all FP64 numbers"),
        (lambda t: t[:0], '"inputs" must be a non-empty list'),
    ],
)
def test_a_bad_tensor_is_refused_with_400_naming_it(change, message: str) -> None:
    record = {"island": "Dream", "bill_length_mm": 40.0, "bill_depth_mm": 18.0, "flipper_length_mm": 190.0}
    record |= {"body_mass_g": 3500.0, "sex": "male", "year": 2008}
    tensors = change(penguin_tensors([record]))
    refused = v2.parse_infer(json.dumps({"inputs": tensors}).encode(), None, PENGUINS)
    assert isinstance(refused, Refusal) and refused.status == 400
    assert message in refused.message


def test_a_value_the_contract_refuses_is_refused_as_predict_refuses_it() -> None:
    spec = penguins()  # flipper length made required: the spec allows no missing value there
    required = [f.model_copy(update={"nullable": False}) if f.name == "flipper_length_mm" else f for f in spec.features]
    contract = compile_contract(spec.model_copy(update={"features": required}))
    categories = [tensor("island", "BYTES", ["Dream"]), tensor("year", "INT64", [2008])]
    tensors = [tensor("flipper_length_mm", "FP32", [float("nan")]), *categories]  # NaN: missing, not allowed
    refused = v2.parse_infer(json.dumps({"inputs": tensors}).encode(), None, contract)
    assert isinstance(refused, Refusal) and refused.status == 400 and refused.field == "flipper_length_mm"
    assert "null is not allowed" in refused.message
    answered = [tensor("flipper_length_mm", "FP32", [190.0]), *categories]
    request = v2.parse_infer(json.dumps({"inputs": answered}).encode(), None, contract)
    assert isinstance(request, v2.InferRequest)  # the nullable numbers and sex may be left out whole


def test_a_binary_part_shorter_than_announced_is_refused() -> None:
    header = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "parameters": {}}]}
    header["inputs"][0]["parameters"]["binary_data_size"] = 256
    body, length = binary_body(header, [struct.pack("<f", 1.0) * 10])
    refused = v2.parse_infer(body, length, compile_contract(digits_spec().dataset))
    assert isinstance(refused, Refusal) and "runs past the end of the body" in refused.message
    assert isinstance(v2.parse_infer(body, "99999", compile_contract(digits_spec().dataset)), Refusal)
