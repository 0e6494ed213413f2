"""What every export starts from: the registered version it hands over, checked as a service checks it, and an
output folder written whole or not at all (files go to a hidden folder beside it, renamed into place once everything
is written, so a failed export leaves nothing a user could mistake for a finished one).

Every export (`greenlight export k8s|triton`, `greenlight containerize`) resolves its version through
`exported_version`: a version no gate passed is refused unless forced with a reason (recorded on the version), and
its ONNX file must match its registered sha256 and, where GREENLIGHT_VERIFY_KEY_FILE is set, its signature, before
anything is written (docs/signing-and-lineage.md).
"""

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.core.keys import load_verify_key
from tasks.onnx.verified import ModelRefused, Provenance, check_signature, read_mlmodel, verified_bytes
from tasks.registry.client import (
    ModelVersionRef,
    RegistryError,
    download_version_onnx,
    find_version,
    get_version,
    tag_model_version,
    version_artifact_uri,
)
from tasks.release.verdicts import never_judged

# The tag a forced export leaves on the version, as `greenlight promote` leaves forced_promotion.
FORCED_EXPORT_TAG = "forced_export"


@dataclass(frozen=True)
class ExportedVersion:
    """The version an export hands over, whether it is the one `production` points to now, and the public key its
    signature was verified with (None: GREENLIGHT_VERIFY_KEY_FILE was not set, only its checksum was checked)."""

    ref: ModelVersionRef
    is_production: bool
    verify_key: Any = None  # ed25519 public key; Kubernetes pods are given it to verify the model too

    @property
    def verify_key_pem(self) -> str | None:
        """The verify key as PEM text (what GREENLIGHT_VERIFY_KEY_FILE holds), for the pods' Secret."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if self.verify_key is None:
            return None
        return self.verify_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def exported_version(
    tracking_uri: str,
    model_name: str,
    version: str | None,
    forced_reason: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ExportedVersion:
    """`version` of the model, or its production version when None, once it may be handed over: judged by a gate
    (else refused unless `forced_reason`, which is recorded on the version) and its file the registered one, signed
    where GREENLIGHT_VERIFY_KEY_FILE is set in `environ` (default: this process's); a GreenlightError says why not."""
    found = resolved_version(tracking_uri, model_name, version)
    refusal = gate_refusal(found)
    if refusal and forced_reason is None:
        raise GreenlightError(
            f"{refusal}, so it is not exported: `--force --reason '...'` exports it anyway and records why on it"
        )
    if refusal and not forced_reason.strip():
        raise GreenlightError("a forced export needs --reason: say why a version no gate passed is handed over")
    verify_key = load_verify_key(os.environ if environ is None else environ)
    exported = ExportedVersion(found.ref, found.is_production, verify_key)
    with tempfile.TemporaryDirectory(prefix="greenlight-export-check-") as folder:
        verified_onnx(exported, Path(folder))
    if refusal:
        tag_model_version(found.ref, {FORCED_EXPORT_TAG: forced_reason[:4000]})
    return exported


def resolved_version(tracking_uri: str, model_name: str, version: str | None) -> ExportedVersion:
    """`version` of the model, or its production version when None; a GreenlightError says what is missing."""
    production = find_version(tracking_uri, model_name)
    if version is None:
        if production is None:
            raise GreenlightError(
                f"no production version of '{model_name}' in {tracking_uri}: run `greenlight run` first, "
                "or name one with --version"
            )
        return ExportedVersion(production, True)
    try:
        ref = get_version(tracking_uri, model_name, version)
    except RegistryError as error:
        raise GreenlightError(f"'{model_name}' has no version {version} in {tracking_uri}") from error
    return ExportedVersion(ref, production is not None and production.version == ref.version)


def gate_refusal(exported: ExportedVersion) -> str | None:
    """Why the version must not be handed over unforced, or None: production (what `greenlight serve` serves) and a
    version a person promoted once (forced_promotion) go; otherwise a gate must have passed it. One no gate judged is
    refused as `greenlight promote` refuses it; one its gate failed, with the gate's reason."""
    ref = exported.ref
    if exported.is_production or "forced_promotion" in ref.tags:
        return None
    if problem := never_judged(ref):
        return problem
    if ref.tags.get("gate_verdict") == "passed":
        return None
    return f"{ref.uri} failed its gate ({ref.tags.get('gate_reason', 'no reason recorded')})"


def verified_onnx(exported: ExportedVersion, folder: Path) -> Path:
    """The version's ONNX file downloaded into `folder`, refused (ModelRefused, naming the version, the file and
    what failed) unless its bytes are the registered ones and, with a verify key, signed by the pipeline's key:
    the checks a service makes before it serves a version (tasks/onnx/verified.py)."""
    ref = exported.ref
    path = download_version_onnx(ref, folder)
    where = f"{ref.uri} ({version_artifact_uri(ref).rstrip('/')}/{path.relative_to(folder).as_posix()})"
    try:
        verified_bytes(path, ref.tags.get("onnx_sha256"), where)
        if exported.verify_key is not None:
            provenance = Provenance(ref.tags.get("onnx_sha256"), ref.tags.get("signature"), exported.verify_key)
            check_signature(provenance, read_mlmodel(path.parent), ref.name, ref.version, where)
    except ModelRefused as refused:
        raise ModelRefused(f"{refused}; nothing was exported", refused.reason) from refused
    return path


def check_output_folder(out: Path) -> None:
    """Refuse an --out whose parent does not exist, or that already holds something."""
    if not out.parent.is_dir():
        raise ConfigRejected(f"--out {out}: its parent folder {out.parent} does not exist; create it first")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigRejected(f"--out {out} already exists and is not empty: choose another folder or remove it")


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `out` to write into; it becomes `out` when the block ends without error."""
    check_output_folder(out)
    # Absolute: a child process writing into it (the bento's build context) runs in another folder, where a
    # relative --out would name a folder of its own.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent)).resolve()
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the export from the rest of a team
        if out.exists():
            out.rmdir()  # empty (checked above): replaced by the finished folder
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
