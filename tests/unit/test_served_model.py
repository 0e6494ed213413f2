"""Loading a version for serving, without a server: the spec it records decides its contract, and a version
whose spec is missing, invalid or not the one its graph takes is refused with the reason."""

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper

from tasks.core.contract import Batch
from tasks.core.keys import sign, signed_payload
from tasks.core.spec import DIGITS_COLUMNS, DatasetSpec, FeatureSpec, Spec, TargetSpec, digits_spec
from tasks.onnx.verified import ModelRefused, Provenance, load_verified


def digits_graph() -> bytes:
    """The digits hand-off: pixels [n, 64] -> logits [n, 10] through a fixed Gemm."""
    weights = numpy_helper.from_array(np.linspace(-1, 1, 640, dtype=np.float32).reshape(64, 10), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["pixels", "W"], ["logits"])],
        "digits",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def mlflow_model_dir(tmp_path: Path, graph: bytes, spec: object | None) -> tuple[Path, str]:
    """An MLflow onnx-flavor model directory as registration writes it; its sha256."""
    (tmp_path / "model.onnx").write_bytes(graph)
    mlmodel = {"flavors": {"onnx": {"data": "model.onnx"}}}
    if spec is not None:
        mlmodel["metadata"] = {"greenlight_spec": spec}
    (tmp_path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return tmp_path, hashlib.sha256(graph).hexdigest()


def test_the_recorded_spec_is_the_contract(tmp_path: Path) -> None:
    directory, checksum = mlflow_model_dir(tmp_path, digits_graph(), digits_spec().model_dump(mode="json"))
    model = load_verified(directory, Provenance(checksum), "digits", "3", threads=1)
    assert model.contract.spec == digits_spec().dataset
    batch = model.contract.parse(b'{"rows": [[' + b",".join([b"1"] * 64) + b"]]}")
    assert isinstance(batch, Batch) and model.predict(batch).shape == (1, 10)


def test_a_digits_graph_registered_before_specs_is_served_as_the_digits(tmp_path: Path) -> None:
    directory, checksum = mlflow_model_dir(tmp_path, digits_graph(), spec=None)
    model = load_verified(directory, Provenance(checksum), "digits", "1", threads=1)
    assert model.contract.rows.columns == DIGITS_COLUMNS


def test_another_graph_without_a_spec_is_refused(tmp_path: Path) -> None:
    graph = onnx.load_from_string(digits_graph())
    graph.graph.input[0].name = graph.graph.node[0].input[0] = "features"
    directory, checksum = mlflow_model_dir(tmp_path, graph.SerializeToString(), spec=None)
    with pytest.raises(ModelRefused, match="records no spec") as refused:
        load_verified(directory, Provenance(checksum), "mystery", "2", threads=1)
    assert refused.value.reason == "spec_missing"


def test_an_invalid_spec_is_refused_naming_the_problem(tmp_path: Path) -> None:
    spec = digits_spec().model_dump(mode="json")
    spec["dataset"]["target"]["labels"] = [1]
    directory, checksum = mlflow_model_dir(tmp_path, digits_graph(), spec)
    with pytest.raises(ModelRefused, match="invalid spec: dataset.target: .*at least 2 labels") as refused:
        load_verified(directory, Provenance(checksum), "digits", "4", threads=1)
    assert refused.value.reason == "spec_invalid"


def test_a_graph_that_does_not_take_its_specs_inputs_is_refused(tmp_path: Path) -> None:
    table = DatasetSpec(
        target=TargetSpec(name="y", task="classification", labels=["a", "b"]),
        features=[FeatureSpec(name="x", type="numeric")],
    )
    directory, checksum = mlflow_model_dir(tmp_path, digits_graph(), Spec(dataset=table).model_dump(mode="json"))
    with pytest.raises(ModelRefused, match="cannot answer its spec's example") as refused:
        load_verified(directory, Provenance(checksum), "table", "5", threads=1)
    assert refused.value.reason == "load_error"


def test_bytes_other_than_the_registered_ones_are_refused(tmp_path: Path) -> None:
    directory, _ = mlflow_model_dir(tmp_path, digits_graph(), digits_spec().model_dump(mode="json"))
    with pytest.raises(ModelRefused, match="fails its checksum") as refused:
        load_verified(directory, Provenance("0" * 64), "digits", "6", threads=1)
    assert refused.value.reason == "checksum_mismatch"


def test_with_a_verify_key_only_a_version_signed_by_the_pipeline_key_serves(tmp_path: Path) -> None:
    spec = digits_spec().model_dump(mode="json")
    directory, checksum = mlflow_model_dir(tmp_path, digits_graph(), spec)
    pipeline_key, other_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = pipeline_key.public_key()
    signature = sign(pipeline_key, signed_payload(checksum, spec, "digits", "7"))
    model = load_verified(directory, Provenance(checksum, signature, public), "digits", "7", threads=1)
    assert model.version == "7"
    refusals = {
        "signature_missing": Provenance(checksum, "none", public),
        "signature_invalid": Provenance(
            checksum, sign(other_key, signed_payload(checksum, spec, "digits", "7")), public
        ),
    }
    for reason, provenance in refusals.items():
        with pytest.raises(ModelRefused) as refused:
            load_verified(directory, provenance, "digits", "7", threads=1)
        assert refused.value.reason == reason
    # A valid signature of version 7 does not carry over to version 8 with the same bytes (a replay).
    with pytest.raises(ModelRefused, match="does not match its sha256 and spec"):
        load_verified(directory, Provenance(checksum, signature, public), "digits", "8", threads=1)
    # Whoever edits the spec in the registry (here: the MLmodel metadata) breaks the signature too.
    spec["dataset"]["target"]["labels"] = [str(i) for i in reversed(range(10))]
    directory, _ = mlflow_model_dir(tmp_path, digits_graph(), spec)
    with pytest.raises(ModelRefused, match="does not match"):
        load_verified(directory, Provenance(checksum, signature, public), "digits", "7", threads=1)


def test_without_a_verify_key_unsigned_versions_serve_as_before(tmp_path: Path) -> None:
    directory, checksum = mlflow_model_dir(tmp_path, digits_graph(), digits_spec().model_dump(mode="json"))
    assert load_verified(directory, Provenance(checksum, "none", None), "digits", "9", threads=1).version == "9"
