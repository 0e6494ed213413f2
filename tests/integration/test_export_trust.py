"""Exports trust what serving trusts (issue 26, items 8-10), on small signed models registered without training:
a version whose file and checksum were rewritten is refused under the verify key by every export, a version no gate
judged is exported only with --force --reason (recorded), and `greenlight serve` refuses a verify key file that is no
key in one line, before a server starts."""

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from endpoint_support import PROJECT_ROOT, isolated_store, penguins_spec, register_onnx, table_onnx
from mlflow import MlflowClient

from deployments.cli import main
from tasks.core.keys import key_id, sign, signed_payload

MODEL = "penguins"


def register_signed(store: Path, seed: int, private: Ed25519PrivateKey, **tags: str) -> str:
    """A version registered as the pipeline registers it, signed by its key, with the gate's tags given."""
    spec = penguins_spec()
    version = register_onnx(store, table_onnx(spec, seed), spec, name=MODEL)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    checksum = client.get_model_version(MODEL, version).tags["onnx_sha256"]
    payload = signed_payload(checksum, spec.model_dump(mode="json"), MODEL, version)
    tags |= {"signature": sign(private, payload), "signature_key_id": key_id(private.public_key())}
    for key, value in tags.items():
        client.set_model_version_tag(MODEL, version, key, value)
    return version


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """v1 production (passed), v2 abandoned by a dead run, v3 passed: all signed; the verify key at verify.pem."""
    tmp = tmp_path_factory.mktemp("export-trust")
    private = Ed25519PrivateKey.generate()
    (tmp / "verify.pem").write_bytes(private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    with isolated_store(tmp), pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENLIGHT_HOME", str(tmp / "home"))
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.delenv("GREENLIGHT_VERIFY_KEY_FILE", raising=False)
        register_signed(tmp, 1, private, gate_verdict="passed")
        MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).set_registered_model_alias(MODEL, "production", "1")
        died = "the run that registered it (pid 4242 on this machine) died before the gate decided"
        register_signed(tmp, 2, private, gate_verdict="abandoned", gate_reason=died)
        register_signed(tmp, 3, private, gate_verdict="passed")
        yield tmp


def version_tags(version: str) -> dict[str, str]:
    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_model_version(MODEL, version).tags


def rewrite_file_and_checksum(version: str) -> Path:
    """What someone with write access to the registry, but not the signing key, can do: swap the file, fix the tag."""
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    artifacts = Path(
        client.get_run(client.get_model_version(MODEL, version).run_id).info.artifact_uri.removeprefix("file://")
    )
    (path,) = artifacts.rglob("*.onnx")
    forged = table_onnx(penguins_spec(), seed=99)
    path.write_bytes(forged)
    client.set_model_version_tag(MODEL, version, "onnx_sha256", hashlib.sha256(forged).hexdigest())
    return path


def nothing_written(parent: Path) -> bool:
    return not [path.name for path in parent.iterdir()]


def test_every_export_refuses_a_rewritten_file_and_checksum_under_the_verify_key(store, tmp_path, monkeypatch, capsys):
    forged = rewrite_file_and_checksum("3")
    monkeypatch.setenv("GREENLIGHT_VERIFY_KEY_FILE", str(store / "verify.pem"))
    out = tmp_path / "exports"
    out.mkdir()
    commands = [
        ["export", "triton", "--model-name", MODEL, "--version", "3", "--out", str(out / "triton")],
        ["export", "k8s", "--model-name", MODEL, "--version", "3", "--pinned", "--out", str(out / "k8s")],
        ["containerize", "--model-name", MODEL, "--version", "3"],
    ]
    for command in commands:
        assert main(command) == 1, command
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"greenlight {command[0]}: models:/{MODEL}/3 ({forged.as_uri()}) has a signature"), (
            error
        )
        assert "does not match its sha256 and spec under the verify key" in error and "nothing was exported" in error
    assert nothing_written(out)  # no folder, and no hidden partial one


def test_a_signed_version_is_exported_with_its_signature_checked(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GREENLIGHT_VERIFY_KEY_FILE", str(store / "verify.pem"))
    assert main(["export", "triton", "--model-name", MODEL, "--out", str(tmp_path / "triton")]) == 0
    assert f"exporting models:/{MODEL}/1 (production), signature verified" in capsys.readouterr().out
    assert (tmp_path / "triton" / MODEL / "1" / "model.onnx").is_file()


def test_a_version_no_gate_judged_is_exported_only_when_forced_with_a_reason(store, tmp_path, capsys):
    out = tmp_path / "exports"
    out.mkdir()
    triton = ["export", "triton", "--model-name", MODEL, "--version", "2", "--out", str(out / "triton")]
    for command in (triton, ["export", "k8s", "--model-name", MODEL, "--version", "2", "--pinned", "--out", str(out)]):
        assert main(command) == 1
        error = capsys.readouterr().err.strip()
        assert f"models:/{MODEL}/2 has no gate verdict (abandoned: the run that registered it" in error
        assert "never built and checked like a candidate, so it is not exported: `--force --reason '...'`" in error
    assert main([*triton, "--force"]) == 1
    assert "a forced export needs --reason" in capsys.readouterr().err
    assert nothing_written(out) and "forced_export" not in version_tags("2")
    assert main([*triton, "--force", "--reason", "load test in staging Triton"]) == 0
    assert (out / "triton" / MODEL / "1" / "model.onnx").is_file()
    assert version_tags("2")["forced_export"] == "load test in staging Triton"
    capsys.readouterr()
    assert main(["show", "2", "--model-name", MODEL]) == 0
    assert "forced        exported unjudged: load test in staging Triton" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"not a key\n", b""], ids=["garbage", "empty"])
def test_serve_with_a_verify_key_file_that_is_no_key_exits_2_in_one_line_before_serving(store, content):
    key_file = store / "not-a-key.pem"
    key_file.write_bytes(content)
    env = {**os.environ, "GREENLIGHT_VERIFY_KEY_FILE": str(key_file), "PYTHONPATH": str(PROJECT_ROOT)}
    started = time.monotonic()
    # Before the fix serve went on to the registry (and, given a bento, to a server whose worker failed its start
    # and was restarted forever, with tracebacks): the exit code, or the timeout, fails the test.
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "serve", "--model-name", MODEL, "--port", "0"],
        cwd=store,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert [line for line in done.stderr.splitlines() if line] == [
        f"greenlight serve: GREENLIGHT_VERIFY_KEY_FILE={key_file} is not a PEM public key: Unable to load PEM file."
        " See https://cryptography.io/en/latest/faq/#why-can-t-i-import-my-pem-file for more details. MalformedFraming"
    ]
    assert done.stdout == "" and time.monotonic() - started < 60
