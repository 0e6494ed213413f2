"""The Open Inference Protocol (KServe V2, as KServe, MLServer and Triton speak it) for a served version.

Each model feature is one named input tensor (a one-column feature: shape [-1]; a feature of k columns, such as
an image grid: [-1, k]); numbers are FP32 (any numeric type is taken), texts, categories and image files BYTES.
Tensors become the records of POST /predict and go through the same request contract, so both doors refuse the
same values with the same sentence. The answer: `label` (BYTES) and `probabilities` (FP32 [-1, labels], in the
order of the output's `labels` parameter) for classification, `prediction` (FP32) for regression. The JSON form
and the binary tensor extension (Inference-Header-Content-Length, tritonclient's default) are both read and
written. Protocol: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
"""

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic_core import to_json

from tasks.core.contract import MAX_ROWS, Batch, Contract, Refusal, softmax
from tasks.core.spec import FeatureSpec

HEADER_LENGTH = "inference-header-content-length"
NUMERIC_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
# The tensor type a feature's request field takes, from its MLflow signature type (what a client sends).
SIGNATURE_DATATYPES = {"double": "FP32", "boolean": "BOOL"}
LABEL_OUTPUT, PROBABILITIES_OUTPUT, PREDICTION_OUTPUT = "label", "probabilities", "prediction"


@dataclass(frozen=True)
class InferRequest:
    """An infer request the contract accepted: its feeds, and how the client wants the answer."""

    batch: Batch
    request_id: str | None
    outputs: tuple[str, ...]
    binary: frozenset[str]  # outputs to send in the binary form


@dataclass(frozen=True)
class InferAnswer:
    body: bytes
    headers: dict[str, str]


def input_datatype(feature: FeatureSpec) -> str:
    return SIGNATURE_DATATYPES.get(feature.signature_type(), "BYTES")


def input_shape(feature: FeatureSpec) -> list[int]:
    width = len(feature.source_columns)
    return [-1] if width == 1 else [-1, width]


def output_names(contract: Contract) -> tuple[str, ...]:
    if contract.spec.task == "regression":
        return (PREDICTION_OUTPUT,)
    return (LABEL_OUTPUT, PROBABILITIES_OUTPUT)


def model_metadata(contract: Contract, name: str, version: str) -> dict[str, Any]:
    """GET /v2/models/{name}: the inputs with datatypes and shapes from the spec, and the outputs."""
    inputs = [
        {"name": f.name, "datatype": input_datatype(f), "shape": input_shape(f)} for f in contract.spec.model_features
    ]
    if contract.spec.task == "regression":
        outputs = [{"name": PREDICTION_OUTPUT, "datatype": "FP32", "shape": [-1]}]
    else:
        labels = contract.label_texts
        outputs = [
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {
                "name": PROBABILITIES_OUTPUT,
                "datatype": "FP32",
                "shape": [-1, len(labels)],
                "parameters": {"labels": labels},
            },
        ]
    return {"name": name, "versions": [version], "platform": "onnxruntime_onnx", "inputs": inputs, "outputs": outputs}


def bad_request(message: str) -> Refusal:
    return Refusal(400, message)


def parse_infer(body: bytes, header_length: str | None, contract: Contract) -> InferRequest | Refusal:
    """An infer request's tensors as the contract's records, validated; or the refusal naming the problem."""
    header, binary = split_body(body, header_length)
    if isinstance(header, Refusal):
        return header
    tensors = header.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        return bad_request(f'"inputs" must be a non-empty list of tensors; this model takes {input_list(contract)}')
    features = {f.name: f for f in contract.spec.model_features}
    columns: dict[str, list[list[Any]]] = {}
    offset, rows = 0, None
    for tensor in tensors:
        decoded = decode_tensor(tensor, features, binary, offset)
        if isinstance(decoded, Refusal):
            return decoded
        name, values, offset = decoded
        if name in columns:
            return bad_request(f"input {name!r} is sent twice")
        if rows is not None and len(values) != rows:
            return bad_request(f"input {name!r} has {len(values)} rows; the inputs before it have {rows}")
        columns[name], rows = values, len(values)
    missing = [name for name, feature in features.items() if name not in columns and not feature.nullable]
    if missing:
        return bad_request(f"input {missing[0]!r} is missing; this model takes {input_list(contract)}")
    if rows > MAX_ROWS:
        return Refusal(413, f"{rows} rows in one request; at most {MAX_ROWS}: split the batch")
    batch = contract.parse_records(records_of(columns, features, rows))
    if isinstance(batch, Refusal):
        return Refusal(400 if batch.status == 422 else batch.status, batch.message, batch.record, batch.field)
    return answer_form(header, batch, contract)


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any] | Refusal, bytes]:
    """The JSON header and the binary part after it (the binary tensor extension), or a refusal."""
    size = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > size:
            return bad_request(
                f"Inference-Header-Content-Length {header_length!r} is not a length within the body"
            ), b""
        size = int(header_length)
    try:
        header = json.loads(body[:size])
    except (ValueError, UnicodeDecodeError) as error:
        return bad_request(f"the request header is not valid JSON: {error}"), b""
    if not isinstance(header, dict):
        return bad_request('the request must be a JSON object with "inputs"'), b""
    return header, body[size:]


def decode_tensor(
    tensor: Any, features: dict[str, FeatureSpec], binary: bytes, offset: int
) -> tuple[str, list[list[Any]], int] | Refusal:
    """(feature name, its values row by row, the binary offset after it) for one input tensor."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        return bad_request('each input must be an object with "name", "shape", "datatype" and "data"')
    name, datatype, shape = tensor["name"], tensor.get("datatype"), tensor.get("shape")
    feature = features.get(name)
    if feature is None:
        return bad_request(f"unknown input {name!r}; the inputs are {', '.join(features)}")
    width = len(feature.source_columns)
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        return bad_request(f"input {name!r}: shape must be a list of sizes, got {shape!r}")
    rows, count = shape[0], math.prod(shape)
    if count != rows * width or shape[0] == 0:
        wanted = "[rows]" if width == 1 else f"[rows, {width}]"
        return bad_request(f"input {name!r} has shape {shape}; it takes {wanted} with at least one row")
    if datatype != "BYTES" and datatype not in NUMERIC_TYPES:
        return bad_request(f"input {name!r}: datatype {datatype!r} is not one of BYTES, {', '.join(NUMERIC_TYPES)}")
    if datatype == "BYTES" and input_datatype(feature) != "BYTES":
        return bad_request(f"input {name!r} is BYTES; it takes {input_datatype(feature)} (any numeric datatype)")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or offset + size > len(binary):
            return bad_request(f"input {name!r}: binary_data_size {size!r} runs past the end of the body")
        values = binary_values(binary[offset : offset + size], datatype, count, feature)
        offset += size
    else:
        values = json_values(tensor.get("data"), datatype, count, feature)
    if isinstance(values, str):
        return bad_request(f"input {name!r}: {values}")
    return name, [values[i * width : (i + 1) * width] for i in range(rows)], offset


def binary_values(raw: bytes, datatype: str, count: int, feature: FeatureSpec) -> list[Any] | str:
    """A tensor's elements from the binary form: raw little-endian numbers, or 4-byte-length-prefixed BYTES."""
    if datatype != "BYTES":
        dtype = np.dtype(NUMERIC_TYPES[datatype]).newbyteorder("<")
        if len(raw) != count * dtype.itemsize:
            return f"{len(raw)} bytes of {datatype} data; shape needs {count * dtype.itemsize}"
        return plain(np.frombuffer(raw, dtype=dtype))
    values, position = [], 0
    while position < len(raw):
        if position + 4 > len(raw):
            return "BYTES data ends inside an element's length prefix"
        (length,) = struct.unpack_from("<I", raw, position)
        element = raw[position + 4 : position + 4 + length]
        if len(element) != length:
            return "BYTES data ends inside an element"
        try:
            values.append(feature.tensor_value(element))
        except UnicodeDecodeError:
            return f"element {len(values)} is not UTF-8 text"
        position += 4 + length
    return values if len(values) == count else f"{len(values)} BYTES elements; shape needs {count}"


def json_values(data: Any, datatype: str, count: int, feature: FeatureSpec) -> list[Any] | str:
    """A tensor's elements from the JSON form: a flat (or nested, row-major) list."""
    if not isinstance(data, list):
        return '"data" must be a list of values (or send it in binary, with parameters.binary_data_size)'
    flat = flatten(data)
    if len(flat) != count:
        return f"{len(flat)} values; shape needs {count}"
    if datatype == "BYTES":
        if not all(isinstance(value, str) for value in flat):
            return "BYTES data must be strings"
        return flat
    try:
        return plain(np.asarray(flat, dtype=NUMERIC_TYPES[datatype]))
    except (TypeError, ValueError):
        return f"data is not all {datatype} numbers"


def flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(value, list) for value in data):
        return data
    return [item for value in data for item in (flatten(value) if isinstance(value, list) else [value])]


def plain(array: np.ndarray) -> list[Any]:
    """Python values for the contract: NaN becomes null (missing), which the contract takes only where allowed."""
    if array.dtype.kind == "f":
        values = array.astype(np.float64)
        return [None if math.isnan(value) else value for value in values.tolist()]
    return array.tolist()


def records_of(columns: dict[str, list[list[Any]]], features: dict[str, FeatureSpec], rows: int) -> list[dict]:
    """Row-wise records {column: value} from feature-wise tensors."""
    records: list[dict[str, Any]] = [{} for _ in range(rows)]
    for name, values in columns.items():
        source = features[name].source_columns
        for record, row in zip(records, values, strict=True):
            record.update(zip(source, row, strict=True))
    return records


def input_list(contract: Contract) -> str:
    return ", ".join(f"{f.name} ({input_datatype(f)} {input_shape(f)})" for f in contract.spec.model_features)


def answer_form(header: dict[str, Any], batch: Batch, contract: Contract) -> InferRequest | Refusal:
    """Which outputs the client asked for, and which of them in the binary form."""
    available = output_names(contract)
    binary_default = bool((header.get("parameters") or {}).get("binary_data_output", False))
    requested = header.get("outputs")
    if requested is None:
        binary = frozenset(available) if binary_default else frozenset()
        return InferRequest(batch, request_id(header), available, binary)
    if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
        return bad_request('"outputs" must be a list of {"name": ...} objects')
    names, binary = [], set()
    for output in requested:
        if output["name"] not in available:
            return bad_request(f"unknown output {output['name']!r}; the outputs are {', '.join(available)}")
        names.append(output["name"])
        if (output.get("parameters") or {}).get("binary_data", binary_default):
            binary.add(output["name"])
    return InferRequest(batch, request_id(header), tuple(names), frozenset(binary))


def request_id(header: dict[str, Any]) -> str | None:
    value = header.get("id")
    return value if isinstance(value, str) else None


def infer_answer(
    request: InferRequest, outputs: np.ndarray, contract: Contract, name: str, version: str
) -> InferAnswer:
    """The infer response: each requested output in JSON or appended in the binary form."""
    tensors = output_tensors(outputs, contract)
    entries, blobs = [], []
    for output in request.outputs:
        datatype, array = tensors[output]
        entry: dict[str, Any] = {"name": output, "datatype": datatype, "shape": list(array.shape)}
        if output in request.binary:
            blob = encode_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    body: dict[str, Any] = {"model_name": name, "model_version": version, "outputs": entries}
    if request.request_id is not None:
        body["id"] = request.request_id
    header = to_json(body, inf_nan_mode="null")  # NaN has no JSON spelling: a regression's NaN is null
    if not blobs:
        return InferAnswer(header, {"content-type": "application/json"})
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return InferAnswer(header + b"".join(blobs), headers)


def output_tensors(outputs: np.ndarray, contract: Contract) -> dict[str, tuple[str, np.ndarray]]:
    if contract.spec.task == "regression":
        return {PREDICTION_OUTPUT: ("FP32", outputs.reshape(-1).astype(np.float32))}
    probabilities = softmax(outputs.astype(np.float64)).astype(np.float32)
    texts = np.array(contract.label_texts, dtype=object)
    return {
        LABEL_OUTPUT: ("BYTES", texts[probabilities.argmax(axis=1)]),
        PROBABILITIES_OUTPUT: ("FP32", probabilities),
    }


def encode_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return array.astype(np.dtype(NUMERIC_TYPES[datatype]).newbyteorder("<")).tobytes()
    parts = []
    for value in array.reshape(-1).tolist():
        encoded = value.encode()
        parts.append(struct.pack("<I", len(encoded)) + encoded)
    return b"".join(parts)
