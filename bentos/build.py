"""Import one registered MLflow model version into the BentoML store and build the bento serving it.

    python -m bentos.build --model-name digits-classifier --model-version 3

Prints one JSON line (bento_tag, model_tag); refuses a version without its `onnx_sha256` tag (docs/serving.md).
"""

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import sys
import time
from pathlib import Path

import bentoml
import mlflow
from bentoml.exceptions import NotFound
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from tasks.core.errors import GreenlightError
from tasks.core.locations import PROJECT_ROOT, export_locations, resolve_locations, sqlite_database
from tasks.onnx.verified import onnx_file

BENTOFILE = Path(__file__).resolve().parent / "bentofile.yaml"


class BuildFailed(GreenlightError):
    """The bento could not be built; the message says which step failed and why."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read --model-name and --model-version."""
    parser = argparse.ArgumentParser(prog="python -m bentos.build", description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", required=True, help="registered MLflow model name")
    parser.add_argument("--model-version", required=True, type=int, help="registered MLflow model version")
    return parser.parse_args(argv)


def work_offline() -> None:
    """Keep the build off the network and fail fast when the tracking server is down."""
    # Without an image (bento v1 layout) BentoML neither locks packages nor pip-installs uv to do so.
    os.environ["BENTOML_ENABLE_FEATURES"] = ",".join(
        filter(None, [os.environ.get("BENTOML_ENABLE_FEATURES"), "no_image"])
    )
    # MLflow's default of 7 retries with backoff turns "server down" into minutes of silence.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def require_existing_sqlite(tracking_uri: str) -> None:
    """Refuse a sqlite store that does not exist: MLflow would silently create an empty one there."""
    database = sqlite_database(tracking_uri)
    if database is not None and not database.is_file():
        raise BuildFailed(f"tracking store {tracking_uri} does not exist; point MLFLOW_TRACKING_URI at the pipeline's")


def read_model_version(client: MlflowClient, name: str, version: int) -> ModelVersion:
    """Look up the registry entry, turning MLflow's errors into one line naming the store."""
    try:
        return client.get_model_version(name, str(version))
    except Exception as exc:  # MlflowException, or SQLAlchemy / requests errors when the store is down
        message = getattr(exc, "message", None) or str(exc)
        raise BuildFailed(f"cannot read model version {name}/{version} from {client.tracking_uri}: {message}") from exc


def stored_model_tag(name: str, model_version: ModelVersion) -> str:
    """BentoML tag for a registry entry; the hash tells apart version 3 of two different registries."""
    identity = f"{model_version.source}|{model_version.run_id}|{model_version.creation_timestamp}"
    return f"{name.lower()}:v{model_version.version}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def recorded_checksum(name: str, model_version: ModelVersion) -> str:
    """The version's onnx_sha256 tag; a version without one cannot be verified when served."""
    checksum = model_version.tags.get("onnx_sha256")
    if not checksum:
        raise BuildFailed(
            f"models:/{name}/{model_version.version} has no onnx_sha256 tag, so the service could not verify it; "
            "register models through the pipeline (tasks.registry.tracking.register_model records it)"
        )
    return checksum


def import_to_store(name: str, model_version: ModelVersion, checksum: str) -> bentoml.Model:
    """Copy the registered ONNX model into the BentoML store, reusing an earlier import of the same bytes."""
    tag = stored_model_tag(name, model_version)
    with contextlib.suppress(NotFound):
        stored = bentoml.models.get(tag)
        same_signature = stored.info.labels.get("signature", "") == model_version.tags.get("signature", "")
        if stored.info.labels.get("onnx_sha256") == checksum and same_signature and stored_checksum(stored) == checksum:
            return stored
        bentoml.models.delete(tag)  # imported before checksums were carried, or changed since
    uri = f"models:/{name}/{model_version.version}"
    flavors = mlflow.models.get_model_info(uri).flavors
    if "onnx" not in flavors:
        raise BuildFailed(f"{uri} has no onnx flavor (has {sorted(flavors)}); log it with mlflow.onnx.log_model")
    labels = {
        "model_name": name,
        "model_version": str(model_version.version),
        "run_id": model_version.run_id or "",
        "onnx_sha256": checksum,
        # Checked by a service given GREENLIGHT_VERIFY_KEY_FILE; "none" or absent: registered without a key.
        "signature": model_version.tags.get("signature", ""),
    }
    model = bentoml.mlflow.import_model(tag, uri, labels=labels, metadata={"mlflow_source": model_version.source})
    if (actual := stored_checksum(model)) != checksum:
        bentoml.models.delete(model.tag)
        raise BuildFailed(
            f"the ONNX file of {uri} has sha256 {actual[:12]}... but {checksum[:12]}... was registered: "
            "the artifact changed after registration; register the model again"
        )
    return model


def stored_checksum(model: bentoml.Model) -> str:
    """sha256 of the .onnx file inside a BentoML model imported from MLflow."""
    return hashlib.sha256(onnx_file(Path(model.path_of("mlflow_model"))).read_bytes()).hexdigest()


def build_bento(model: bentoml.Model, name: str, version: int) -> bentoml.Bento:
    """Build the serving bento, pinning `model` through the bento argument model_tag."""
    return bentoml.bentos.build_bentofile(
        str(BENTOFILE),
        build_ctx=str(PROJECT_ROOT),
        name=name.lower().replace("-", "_"),
        version=f"v{version}-{secrets.token_hex(4)}",
        labels={"model_name": name, "model_version": str(version), "model_tag": str(model.tag)},
        args={"model_tag": str(model.tag)},
    )


def build_version(tracking_uri: str, name: str, version: int) -> tuple[bentoml.Model, bentoml.Bento]:
    """Import a registered version into the BentoML store (verified by its checksum) and build its bento."""
    require_existing_sqlite(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    model_version = read_model_version(client, name, version)
    model = import_to_store(name, model_version, recorded_checksum(name, model_version))
    print(f"model {model.tag} in {os.environ.get('BENTOML_HOME')}", file=sys.stderr)
    return model, build_bento(model, name, version)


def main(argv: list[str] | None = None) -> int:
    """Import, build, print the tags as one JSON line; exit 1 with one line on stderr on failure."""
    args = parse_args(argv)
    started = time.perf_counter()
    locations = resolve_locations()
    export_locations(locations)
    work_offline()
    try:
        # Libraries print progress on stdout; the caller parses stdout, so it carries only the result.
        with contextlib.redirect_stdout(sys.stderr):
            model, bento = build_version(locations.tracking_uri, args.model_name, args.model_version)
    except Exception as exc:  # the caller is a pipeline step: one readable line, not a traceback
        print(f"bentos.build: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"built bento {bento.tag} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(json.dumps({"bento_tag": str(bento.tag), "model_tag": str(model.tag)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
