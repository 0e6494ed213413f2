"""Secrets read from the environment: the endpoint's API key, and the keys that sign and verify models.

GREENLIGHT_API_KEY(_FILE), GREENLIGHT_SIGNING_KEY_FILE and GREENLIGHT_VERIFY_KEY_FILE (docs/signing-and-lineage.md).
The private key never reaches the registry: whoever can write the registry cannot sign the bytes they swap.
"""

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from tasks.core.errors import GreenlightError


class SettingsRejected(GreenlightError):
    """An environment variable holds a value that cannot be run with."""


def read_api_key(env: Mapping[str, str]) -> str | None:
    """The key from GREENLIGHT_API_KEY_FILE, else GREENLIGHT_API_KEY; None when neither is set."""
    if key_file := env.get("GREENLIGHT_API_KEY_FILE"):
        key = read_secret_file("GREENLIGHT_API_KEY_FILE", key_file).decode(errors="replace").strip()
        if not key:
            raise SettingsRejected(f"GREENLIGHT_API_KEY_FILE={key_file} is empty")
        return key
    return env.get("GREENLIGHT_API_KEY") or None


def read_secret_file(variable: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise SettingsRejected(f"{variable}={path} cannot be read: {error.strerror}") from error


def signed_payload(onnx_sha256: str, spec_json: dict | None, model_name: str, version: str) -> bytes:
    """The bytes a signature covers: the model file's digest and its spec (canonical JSON), under its registered
    name and version, so a signature cannot be carried over to another version or model."""
    canonical = json.dumps(spec_json, sort_keys=True, separators=(",", ":")).encode()
    identity = {"model": model_name, "version": str(version), "onnx_sha256": onnx_sha256}
    return json.dumps({**identity, "spec_sha256": hashlib.sha256(canonical).hexdigest()}, sort_keys=True).encode()


def load_signing_key(env: Mapping[str, str]):
    """The pipeline's ed25519 private key, or None when GREENLIGHT_SIGNING_KEY_FILE is not set."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    path = env.get("GREENLIGHT_SIGNING_KEY_FILE")
    if not path:
        return None
    try:
        key = load_pem_private_key(read_secret_file("GREENLIGHT_SIGNING_KEY_FILE", path), password=None)
    except (ValueError, TypeError) as error:
        raise SettingsRejected(
            f"GREENLIGHT_SIGNING_KEY_FILE={path} is not an unencrypted PEM private key: {error}"
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SettingsRejected(f"GREENLIGHT_SIGNING_KEY_FILE={path} holds a {type(key).__name__}, not an ed25519 key")
    return key


def load_verify_key(env: Mapping[str, str]):
    """The ed25519 public key a service verifies models with, or None when GREENLIGHT_VERIFY_KEY_FILE is not set."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    path = env.get("GREENLIGHT_VERIFY_KEY_FILE")
    if not path:
        return None
    try:
        key = load_pem_public_key(read_secret_file("GREENLIGHT_VERIFY_KEY_FILE", path))
    except (ValueError, TypeError) as error:
        raise SettingsRejected(f"GREENLIGHT_VERIFY_KEY_FILE={path} is not a PEM public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise SettingsRejected(f"GREENLIGHT_VERIFY_KEY_FILE={path} holds a {type(key).__name__}, not an ed25519 key")
    return key


def sign(private_key, payload: bytes) -> str:
    """An ed25519 signature of payload, base64 (a registry tag)."""
    return base64.b64encode(private_key.sign(payload)).decode()


def key_id(public_key) -> str:
    """A short fingerprint naming the key a version was signed with (sha256 of its raw bytes, 16 hex)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def verify(public_key, payload: bytes, signature: str | None) -> str | None:
    """None when signature is a valid signature of payload by public_key, else what is wrong with it."""
    from cryptography.exceptions import InvalidSignature

    if not signature:
        return "signature_missing"
    try:
        public_key.verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError):
        return "signature_invalid"
    return None
