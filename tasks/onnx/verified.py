"""Load a registered version only if its bytes are the registered ones, read the spec it was trained with,
compile that spec's request contract and warm both up: what the service (bentos/) and batch scoring answer with.

The session is built from the very bytes that were hashed against the `onnx_sha256` tag; the spec is the MLflow
model's metadata["greenlight_spec"].
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from tasks.core.contract import Batch, Contract, Refusal, compile_contract
from tasks.core.errors import GreenlightError
from tasks.core.keys import signed_payload, verify
from tasks.core.spec import (
    DIGITS_COLUMNS,
    LOGITS_OUTPUT,
    PIXELS_INPUT,
    SPEC_METADATA_KEY,
    DatasetSpec,
    Spec,
    digits_spec,
    validation_problems,
)
from tasks.onnx.runtime import graph_feeds, open_session

logger = logging.getLogger("greenlight.serving")

# One row and a typical batch: the first run of each shape allocates onnxruntime's buffers.
WARM_UP_BATCHES = (1, 64)
# The key tasks.registry.client writes the spec under; repeated here so loading a model never imports MLflow.


class ModelRefused(GreenlightError):
    """A model that must not serve; reason is a metric label (checksum_mismatch, checksum_missing,
    spec_missing, spec_invalid, load_error)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ServedModel:
    """One registered model version, loaded, verified and warmed up, with the contract of its spec."""

    name: str
    version: str
    sha256: str
    session: Any  # onnxruntime.InferenceSession, from tasks.onnx.runtime.open_session
    contract: Contract
    size_bytes: int = 0  # the ONNX file's size: what a many-model service counts against its memory bound

    def predict(self, batch: Batch) -> np.ndarray:
        """The graph's output for a parsed request: logits [n, labels] or predictions [n]."""
        (outputs,) = self.session.run([self.contract.spec.onnx_output], graph_feeds(self.session, batch.feeds))
        return outputs


def onnx_file(mlflow_model_dir: Path) -> Path:
    """The .onnx file that MLflow's onnx flavor recorded in the MLmodel file."""
    return mlflow_model_dir / read_mlmodel(mlflow_model_dir)["flavors"]["onnx"]["data"]


def read_mlmodel(mlflow_model_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((mlflow_model_dir / "MLmodel").read_text())


@dataclass(frozen=True)
class Provenance:
    """What a version's registry entry says its bytes are: the sha256, the signature (None or "none": unsigned),
    and the public key to check the signature with (None: signatures are not checked)."""

    sha256: str | None
    signature: str | None = None
    verify_key: Any = None


def load_verified(mlflow_model_dir: Path, provenance: Provenance, name: str, version: str, threads: int) -> ServedModel:
    """Load an MLflow model directory only if its ONNX bytes are the registered ones, signed where a key is
    given, and it answers its spec's example; else ModelRefused saying why."""
    path = onnx_file(mlflow_model_dir)
    where = f"{name} version {version} ({path})"
    content = verified_bytes(path, provenance.sha256, where)
    if provenance.verify_key is not None:
        check_signature(provenance, read_mlmodel(mlflow_model_dir), name, version, where)
    try:
        session = open_session(content, threads)
    except Exception as error:  # onnxruntime raises its own types (Fail, InvalidGraph, ...) for a bad graph
        raise ModelRefused(f"{where} cannot be loaded: {short(error)}", "load_error") from error
    spec = read_spec(read_mlmodel(mlflow_model_dir), session, where)
    model = ServedModel(name, version, actual_sha256(content), session, compile_contract(spec), len(content))
    try:
        warm_up(model)
    except Exception as error:  # a graph that does not take its spec's inputs fails here, not on a request
        raise ModelRefused(f"{where} cannot answer its spec's example: {short(error)}", "load_error") from error
    return model


def verified_bytes(path: Path, expected_sha256: str | None, where: str) -> bytes:
    """The file's bytes if their sha256 is the registered one."""
    if not expected_sha256:
        raise ModelRefused(
            f"{where} has no recorded onnx_sha256: register it through the pipeline and rebuild the bento",
            "checksum_missing",
        )
    content = path.read_bytes()
    if (actual := actual_sha256(content)) != expected_sha256:
        raise ModelRefused(
            f"{where} fails its checksum: sha256 {actual[:12]}... but {expected_sha256[:12]}... was registered; "
            "the file changed after registration, refusing to serve it",
            "checksum_mismatch",
        )
    return content


def check_signature(provenance: Provenance, mlmodel: dict[str, Any], name: str, version: str, where: str) -> None:
    """The version's sha256 and spec must carry a valid signature by the pipeline's key."""
    signature = None if provenance.signature in (None, "", "none") else provenance.signature
    spec = (mlmodel.get("metadata") or {}).get(SPEC_METADATA_KEY)
    payload = signed_payload(provenance.sha256 or "", spec, name, version)
    problem = verify(provenance.verify_key, payload, signature)
    if problem == "signature_missing":
        raise ModelRefused(
            f"{where} is not signed, and this service serves only signed models (GREENLIGHT_VERIFY_KEY_FILE):"
            " register it with GREENLIGHT_SIGNING_KEY_FILE set",
            problem,
        )
    if problem is not None:
        raise ModelRefused(
            f"{where} has a signature that does not match its sha256 and spec under the verify key: the registry"
            " entry or the file was changed by someone without the pipeline's signing key; refusing to serve it",
            problem,
        )


def actual_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def read_spec(mlmodel: dict[str, Any], session: Any, where: str) -> DatasetSpec:
    """The dataset spec the version was registered with; a pre-spec digits model is read as the bundled digits."""
    raw = (mlmodel.get("metadata") or {}).get(SPEC_METADATA_KEY)
    if raw is None:
        if is_legacy_digits(session):
            logger.warning("%s records no spec; its graph is the bundled digits', serving it with that spec", where)
            return digits_spec().dataset
        raise ModelRefused(
            f"{where} records no spec (MLmodel metadata.{SPEC_METADATA_KEY}), so its request contract is unknown: "
            "register it through the pipeline",
            "spec_missing",
        )
    try:
        return Spec.model_validate(raw).dataset
    except ValidationError as error:
        raise ModelRefused(f"{where} records an invalid spec: {validation_problems(error)}", "spec_invalid") from error


def is_legacy_digits(session: Any) -> bool:
    """A graph registered before specs were recorded: input pixels [n, 64] and output logits [n, 10]."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    return (
        [i.name for i in inputs] == [PIXELS_INPUT]
        and inputs[0].shape[-1] == len(DIGITS_COLUMNS)
        and [o.name for o in outputs] == [LOGITS_OUTPUT]
        and outputs[0].shape[-1] == len(digits_spec().dataset.label_texts())
    )


def warm_up(model: ServedModel) -> None:
    """Answer the spec's own example in each warm-up batch size, and check the shape of the answer."""
    contract = model.contract
    labels = len(contract.spec.label_texts())
    for size in WARM_UP_BATCHES:
        body = json.dumps({"records": [contract.example_record()] * size}).encode()
        batch = contract.parse(body)
        if isinstance(batch, Refusal):
            raise ValueError(f"the contract refuses the spec's own example: {batch.message}")
        check_feeds(contract, batch, contract.request.model_validate_json(body).records)
        outputs = model.predict(batch)
        expected = (size, labels) if contract.spec.task == "classification" else (size,)
        if outputs.shape != expected or not np.isfinite(outputs).all():
            raise ValueError(f"{size} rows gave outputs of shape {outputs.shape}; expected {expected}, all finite")
        contract.answer(outputs, model.name, model.version)


def check_feeds(contract: Contract, batch: Batch, records: list[Any]) -> None:
    """The contract's feeds for records are the ones spec.feeds gives (training's encoding), same type and shape."""
    expected = contract.spec.feeds(contract.columns_of(records))
    for name, array in expected.items():
        got = batch.feeds.get(name)
        numeric = array.dtype != object
        if got is None or got.dtype != array.dtype or not np.array_equal(got, array, equal_nan=numeric):
            raise ValueError(
                f"the request feeds for input {name!r} differ from the spec's encoding of the same records"
            )


def short(error: Exception) -> str:
    return " ".join(str(error).split())[:300]
