"""The whole pipeline through the `greenlight` CLI, as a user runs it, against stores in a temp folder.

Order matters and is part of the story: a first run promotes, bad data changes nothing, and a
deliberately worse model is registered but never reaches production.
"""

import hashlib
import os
from pathlib import Path

import kubernetes_validate
import onnx
import pytest
import yaml
from google.protobuf import text_format
from mlflow import MlflowClient
from registry_support import MODEL, bentos, post_json, registry_state, served

from deployments.cli import main
from tasks.core.spec import DIGITS_COLUMNS as FEATURE_COLUMNS
from tasks.core.spec import digits_frame

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    """A key pair from `greenlight keygen`: the pipeline signs with the first, services verify with the second."""
    out = tmp_path_factory.mktemp("keys")
    assert main(["keygen", "--out", str(out)]) == 0
    return out / "greenlight-signing.pem", out / "greenlight-verify.pem"


@pytest.fixture(scope="module")
def first_run(prefect_harness, greenlight_home, keys):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENLIGHT_SIGNING_KEY_FILE", str(keys[0]))
        exit_code = main(["run"])
        client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
        yield exit_code, client


def test_default_run_promotes_an_accurate_onnx_model_with_its_evidence(first_run):
    exit_code, client = first_run
    assert exit_code == 0
    version = client.get_model_version_by_alias(MODEL, "production")
    tags = version.tags
    assert float(tags["test_accuracy"]) >= 0.97
    assert tags["gate_verdict"] == "passed"
    assert float(tags["parity_fp32_max_abs_diff"]) <= 1e-4
    assert float(tags["parity_fp32_agreement"]) == 1.0
    assert tags["task"] == "classification" and tags["model_family"] == "image_cnn"
    # Every candidate was scored on the validation rows: the CNN, two pruned CNNs, a distilled student, and
    # the INT8 files of each; the served one is among them.
    metrics = client.get_run(version.run_id).data.metrics
    scored = {key.removesuffix("_validation_metric") for key in metrics if key.endswith("_validation_metric")}
    for source in ("", "pruned_30_", "pruned_60_", "distilled_"):
        assert {f"{source}int8_static_qdq", f"{source}int8_dynamic", source.rstrip("_") or "fp32"} <= scored
    assert tags["compression"].replace("-", "_").replace("+", "_") in scored
    assert tags["bento_tag"] in bentos()
    files = client.list_artifacts(version.run_id, "gate")
    assert {Path(f.path).name for f in files} == {"gate_report.json", "gate_report.md"}
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.tags["data_sha256"]) == 64
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) >= 2


def test_show_prints_the_lineage_the_gate_report_and_a_valid_signature(first_run, keys, capsys, monkeypatch):
    _, client = first_run
    version = client.get_model_version_by_alias(MODEL, "production").version
    monkeypatch.setenv("GREENLIGHT_VERIFY_KEY_FILE", str(keys[1]))
    assert main(["show", str(version)]) == 0
    shown = capsys.readouterr().out
    assert f"models:/{MODEL}/{version}   aliases: @production" in shown
    assert "signature     signed with key" in shown and ": VALID under the verify key" in shown
    for field in ("data_sha256", "spec_sha256", "code_commit", "code_dirty", "torch", "onnxruntime", "device"):
        assert f"\n  {field} " in shown, field
    assert "constraints_sha256" in shown and "prefect_flow_run_id" in shown and "compared_with" in shown
    assert "**Gate passed**" in shown and "| data_critical_failures | 0 | <= 0 | pass |" in shown
    tags = client.get_model_version(MODEL, version).tags
    run_tags = client.get_run(client.get_model_version(MODEL, version).run_id).data.tags
    assert tags["lineage.data_sha256"] == run_tags["data_sha256"]
    assert main(["show", "999"]) == 1 and "has no version 999" in capsys.readouterr().err


def test_production_bento_answers_predict_over_http(first_run, keys, tmp_path, monkeypatch):
    _, client = first_run
    version = client.get_model_version_by_alias(MODEL, "production")
    # A service given the public key serves only signed versions: this one was signed by the run.
    monkeypatch.setenv("GREENLIGHT_VERIFY_KEY_FILE", str(keys[1]))
    with served(MODEL, tmp_path / "serve.log") as url:
        frame = digits_frame().sample(200, random_state=3)
        status, body = post_json(f"{url}/predict", {"rows": frame[list(FEATURE_COLUMNS)].values.tolist()})
        assert status == 200
        assert body["model_version"] == str(version.version)
        correct = sum(int(a == b) for a, b in zip(body["predictions"], frame["target"], strict=True))
        assert correct / len(frame) >= 0.97
        status, body = post_json(f"{url}/predict", {"rows": [[0] * 63]})
        assert 400 <= status < 500


def test_export_hands_production_to_kubernetes_and_triton(first_run, tmp_path, triton_model_config):
    _, client = first_run
    version = client.get_model_version_by_alias(MODEL, "production")
    k8s = tmp_path / "k8s"
    assert main(["export", "k8s", "--out", str(k8s), "--tracking-uri", "http://mlflow.mlops:5000"]) == 0
    # BentoML's own Dockerfile for the version's bento: its base, the bento copied in, non-root, the port it serves.
    dockerfile = (k8s / "image" / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "COPY --chown=bentoml:bentoml . ./" in dockerfile
    assert "USER bentoml" in dockerfile and "EXPOSE 3000" in dockerfile and "HEALTHCHECK" not in dockerfile
    assert 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]' in dockerfile
    (model,) = (k8s / "image" / "models").rglob("*.onnx")  # the model travels inside the image
    assert hashlib.sha256(model.read_bytes()).hexdigest() == version.tags["onnx_sha256"]
    assert yaml.safe_load((k8s / "image" / "bento.yaml").read_text())["labels"]["model_version"] == str(version.version)
    manifests = {path.name: yaml.safe_load(path.read_text()) for path in (k8s / "kubernetes").glob("*.yaml")}
    assert sorted(manifests) == ["deployment.yaml", "hpa.yaml", "pdb.yaml", "service.yaml"]
    for manifest in manifests.values():
        kubernetes_validate.validate(manifest, "1.30", strict=True)
    env = manifests["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.mlops:5000"} in env

    triton = tmp_path / "triton"
    assert main(["export", "triton", "--out", str(triton)]) == 0
    graph = onnx.load(str(triton / MODEL / "1" / "model.onnx"))
    assert hashlib.sha256((triton / MODEL / "1" / "model.onnx").read_bytes()).hexdigest() == version.tags["onnx_sha256"]
    config = text_format.Parse((triton / MODEL / "config.pbtxt").read_text(), triton_model_config.ModelConfig())
    assert (config.name, config.platform) == (MODEL, "onnxruntime_onnx")
    assert (
        [(i.name, list(i.dims)) for i in config.input]
        == [("pixels", [64])]
        == [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim[1:]]) for i in graph.graph.input]
    )
    assert [o.name for o in config.output] == [o.name for o in graph.graph.output] == ["logits"]
    assert (triton / MODEL / "labels.txt").read_text().split() == [str(digit) for digit in range(10)]


def test_export_refusals_name_the_problem_and_write_nothing(first_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "triton", "--model-name", "nope", "--out", str(out)]) == 1
    assert "no production version of 'nope'" in capsys.readouterr().err
    assert main(["export", "triton", "--version", "999", "--out", str(out)]) == 1
    assert f"'{MODEL}' has no version 999" in capsys.readouterr().err
    assert main(["export", "k8s", "--pinned", "--out", str(tmp_path / "missing" / "out")]) == 2
    assert "parent folder" in capsys.readouterr().err
    assert main(["export", "k8s", "--out", str(out)]) == 2  # the store is a file here: the pods could not follow it
    assert "--tracking-uri" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_export_builds_the_bento_from_the_registry_when_this_store_lacks_it(first_run, tmp_path, monkeypatch):
    """A version trained elsewhere (a Kubernetes job, another machine) exports from the registry alone."""
    _, client = first_run
    version = client.get_model_version_by_alias(MODEL, "production")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "empty-store"))
    assert main(["export", "k8s", "--pinned", "--out", str(tmp_path / "k8s")]) == 0
    (model,) = (tmp_path / "k8s" / "image" / "models").rglob("*.onnx")
    assert hashlib.sha256(model.read_bytes()).hexdigest() == version.tags["onnx_sha256"]
    deployment = yaml.safe_load((tmp_path / "k8s" / "kubernetes" / "deployment.yaml").read_text())
    built = deployment["metadata"]["annotations"]["greenlight/bento"]
    assert built != version.tags["bento_tag"] and built.startswith(f"digits_classifier:v{version.version}-")


def test_bad_data_is_rejected_with_exit_2_and_changes_nothing(first_run, tmp_path, capsys):
    _, client = first_run
    before, bentos_before = registry_state(client), bentos()
    frame = digits_frame()
    frame["pixel_3_4"] = frame["pixel_3_4"].astype(object)
    frame.loc[[5, 17, 900], "pixel_3_4"] = "dark"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)

    assert main(["run", "--data", str(path)]) == 2
    message = capsys.readouterr().err
    assert "pixel_3_4" in message and str(path) in message
    assert registry_state(client) == before
    assert bentos() == bentos_before


def test_worse_model_is_registered_but_not_promoted(first_run, tmp_path):
    _, client = first_run
    versions_before, production_before = registry_state(client)
    # No pruning or distillation of a model trained on shuffled labels: the gate's verdict is the subject.
    small = tmp_path / "small-run.yaml"
    small.write_text("compression: {pruning: {levels: []}, distillation: {enabled: false}}\n")

    assert main(["run", "--shuffle-labels", "--max-epochs", "3", "--config", str(small)]) == 3
    versions_after, production_after = registry_state(client)
    assert production_after == production_before
    (new_version,) = set(versions_after) - set(versions_before)
    tags = client.get_model_version(MODEL, new_version).tags
    assert tags["gate_verdict"] == "failed"
    assert "test_accuracy" in tags["gate_reason"]
    assert tags["bento_tag"] in bentos()  # kept for inspection, never served
