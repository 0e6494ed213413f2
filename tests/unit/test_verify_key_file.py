"""The verify key where a user meets it without a model: `greenlight serve` refusing a key file that is no key before
anything starts, the Kubernetes manifests carrying the key an export verified with into the pods, and which
versions an export hands over without --force (issue 26, items 8-10)."""

import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_public_key,
)

from deployments.cli import main, serving_key_files
from tasks.registry.client import ModelVersionRef
from tasks.release.handoff import ExportedVersion, gate_refusal, staged_folder
from tasks.release.kubernetes import KubernetesOptions, manifest_yaml, serving_manifests, serving_plan

PRIVATE = Ed25519PrivateKey.generate()
PUBLIC_PEM = PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
PRIVATE_PEM = PRIVATE.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@pytest.fixture
def cli_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """main() exports the store variables and serve sets the key files' paths: all restored after the test. The
    store is an empty file: `serve` finds one there, and the test fails if anything opens it as MLflow's."""
    for name in ("BENTOML_HOME", "PREFECT_HOME"):
        monkeypatch.setenv(name, os.environ[name])
    (tmp_path / "mlflow.db").touch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("GREENLIGHT_API_KEY", "GREENLIGHT_API_KEY_FILE", "GREENLIGHT_VERIFY_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GREENLIGHT_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not a key\n", "Unable to load PEM file"),
        (PRIVATE_PEM, "Are you sure this is a public key?"),
        (b"", "Unable to load PEM file"),
    ],
    ids=["garbage", "private-key", "empty"],
)
def test_serve_refuses_a_verify_key_file_that_is_no_public_key_in_one_line(
    cli_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, content: bytes, problem: str
) -> None:
    key_file = cli_environment / "verify.pem"
    key_file.write_bytes(content)
    monkeypatch.setenv("GREENLIGHT_VERIFY_KEY_FILE", str(key_file))
    # Refused before the registry is read: the unit rule fails this test if a store is opened or a server started.
    assert main(["serve", "--model-name", "penguins"]) == 2
    assert main(["serve"]) == 2  # every model's gateway too
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line]
    assert len(lines) == 2 and lines[0] == lines[1], error
    assert lines[0].startswith(f"greenlight serve: GREENLIGHT_VERIFY_KEY_FILE={key_file} is not a PEM public key")
    assert problem in lines[0]


def test_serve_refuses_an_empty_api_key_file_the_same_way(cli_environment, monkeypatch, capsys) -> None:
    (cli_environment / "api-key").write_text("\n")
    monkeypatch.setenv("GREENLIGHT_API_KEY_FILE", str(cli_environment / "api-key"))
    assert main(["serve", "--model-name", "penguins"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"greenlight serve: GREENLIGHT_API_KEY_FILE={cli_environment}/api-key is empty"
    )


def test_key_files_reach_the_server_as_absolute_paths(cli_environment, monkeypatch) -> None:
    """The server runs in the bento's folder: a relative path, as `greenlight keygen --out keys` prints it, would
    name nothing there."""
    (cli_environment / "keys").mkdir()
    (cli_environment / "keys" / "verify.pem").write_bytes(PUBLIC_PEM)
    monkeypatch.chdir(cli_environment)
    monkeypatch.setenv("GREENLIGHT_VERIFY_KEY_FILE", "keys/verify.pem")
    assert serving_key_files() == {"GREENLIGHT_VERIFY_KEY_FILE": str(cli_environment / "keys" / "verify.pem")}


def ref(**tags: str) -> ModelVersionRef:
    return ModelVersionRef("sqlite:///x/mlflow.db", "churn", "3", "run-1", {"bento_tag": "churn:v3-1a2b3c4d", **tags})


def manifests_for(exported: ExportedVersion) -> dict[str, dict]:
    return serving_manifests(serving_plan(exported, "churn:v3-1a2b3c4d", KubernetesOptions(pinned=True)))


def pod_spec(found: dict[str, dict]) -> dict:
    return found["deployment.yaml"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", ("1.30", "1.37"))
def test_pods_get_the_verify_key_the_export_verified_with(version: str) -> None:
    found = manifests_for(ExportedVersion(ref(gate_verdict="passed"), True, PRIVATE.public_key()))
    for manifest in found.values():
        kubernetes_validate.validate(yaml.safe_load(manifest_yaml(manifest)), version, strict=True)
    secret = found["verify-key.yaml"]
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "churn-verify-key")
    (pem,) = secret["stringData"].values()
    written = manifest_yaml(secret).splitlines()  # the key's lines as the PEM file has them, not a quoted string
    assert all(line in {w.strip() for w in written} for line in PUBLIC_PEM.decode().splitlines())
    assert load_pem_public_key(pem.encode()).public_bytes(
        Encoding.Raw, PublicFormat.Raw
    ) == PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    spec = pod_spec(found)
    (volume,) = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "churn-verify-key"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    env = {variable["name"]: variable["value"] for variable in spec["containers"][0]["env"]}
    (file_name,) = secret["stringData"]
    assert mount["readOnly"] and env["GREENLIGHT_VERIFY_KEY_FILE"] == f"{mount['mountPath']}/{file_name}"
    assert env["GREENLIGHT_API_KEY_FILE"].startswith("/var/run/secrets/greenlight/")  # the API key's mount stays


def test_without_a_verify_key_the_pods_verify_checksums_only() -> None:
    found = manifests_for(ExportedVersion(ref(gate_verdict="passed"), True))
    assert "verify-key.yaml" not in found
    assert "GREENLIGHT_VERIFY_KEY_FILE" not in {v["name"] for v in pod_spec(found)["containers"][0]["env"]}


@pytest.mark.parametrize("verdict", ["pending", "abandoned", "error"])
def test_a_version_no_gate_judged_is_refused_as_promote_refuses_it(verdict: str) -> None:
    refusal = gate_refusal(ExportedVersion(ref(gate_verdict=verdict, gate_reason="its run died"), False))
    assert refusal == (
        f"models:/churn/3 has no gate verdict ({verdict}: its run died): it was never built and checked like a"
        " candidate"
    )
    # Production is what `greenlight serve` serves already, whatever its tags say: handing it over widens nothing.
    assert gate_refusal(ExportedVersion(ref(gate_verdict=verdict), True)) is None


def test_a_failed_version_is_refused_unless_a_person_promoted_it() -> None:
    failed = {"gate_verdict": "failed", "gate_reason": "accuracy 0.71 < 0.80"}
    assert (
        gate_refusal(ExportedVersion(ref(**failed), False)) == "models:/churn/3 failed its gate (accuracy 0.71 < 0.80)"
    )
    assert gate_refusal(ExportedVersion(ref(**failed), True)) is None  # production now: forced by a person
    assert gate_refusal(ExportedVersion(ref(**failed, forced_promotion="hotfix"), False)) is None  # and rolled back
    assert gate_refusal(ExportedVersion(ref(gate_verdict="passed"), False)) is None


def test_a_relative_out_is_staged_where_a_child_process_finds_it(tmp_path, monkeypatch) -> None:
    """`export k8s --out deploy` builds the image context in a child process run from the project root: given a
    relative staging folder it wrote there, and the export lacked image/."""
    monkeypatch.chdir(tmp_path)
    with staged_folder(Path("deploy")) as staging:
        assert staging.is_absolute() and staging.parent == tmp_path
        (staging / "README.md").write_text("done\n")
    assert (tmp_path / "deploy" / "README.md").read_text() == "done\n"
