"""The serving manifests `greenlight export k8s` writes: valid for the cluster's schemas (offline), and saying
what a cluster operator relies on: probes, the API key's Secret, non-root, a read-only root, selectors that meet."""

import kubernetes_validate
import pytest
import yaml

from tasks.core.errors import ConfigRejected
from tasks.registry.client import ModelVersionRef
from tasks.release.handoff import ExportedVersion
from tasks.release.kubernetes import (
    KubernetesOptions,
    manifest_yaml,
    object_name,
    serving_manifests,
    serving_plan,
)

# The oldest Kubernetes still in wide support, and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", "1.37")
BENTO = "churn:v3-1a2b3c4d"


def exported(family: str = "tabular_mlp", is_production: bool = True, store: str = "sqlite:///x/mlflow.db"):
    ref = ModelVersionRef(store, "churn", "3", "run-1", {"model_family": family, "bento_tag": BENTO})
    return ExportedVersion(ref, is_production)


def manifests(options: KubernetesOptions | None = None, **version) -> dict[str, dict]:
    options = options or KubernetesOptions(tracking_uri="http://mlflow.mlops:5000")
    return serving_manifests(serving_plan(exported(**version), BENTO, options))


def container(found: dict[str, dict]) -> dict:
    return found["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]


def environment(found: dict[str, dict]) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container(found)["env"]}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_the_cluster_schemas(version: str) -> None:
    found = manifests()
    assert {m["kind"] for m in found.values()} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for filename, manifest in found.items():
        written = yaml.safe_load(manifest_yaml(manifest))  # as the file says it, without YAML aliases
        assert written == manifest and "&id" not in manifest_yaml(manifest), filename
        kubernetes_validate.validate(written, version, strict=True)


def test_pods_are_probed_on_readyz_and_livez_at_the_container_port() -> None:
    server = container(manifests())
    (port,) = server["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 3000)
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert server["startupProbe"]["httpGet"]["path"] == "/livez"


def test_the_api_key_comes_from_a_secret_mounted_as_the_file_the_service_reads() -> None:
    found = manifests()
    volumes = {v["name"]: v for v in found["deployment.yaml"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-key"]["secret"]["secretName"] == "churn-api-key"
    mount = next(m for m in container(found)["volumeMounts"] if m["name"] == "api-key")
    assert mount["readOnly"] and environment(found)["GREENLIGHT_API_KEY_FILE"] == f"{mount['mountPath']}/api-key"
    assert "GREENLIGHT_API_KEY" not in environment(found)  # never a value in the manifest


def test_the_server_runs_as_non_root_on_a_read_only_root_writing_only_to_an_empty_dir() -> None:
    found = manifests()
    pod = found["deployment.yaml"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1034  # BentoML's user
    security = container(found)["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    tmp = next(m for m in container(found)["volumeMounts"] if m["name"] == "tmp")
    assert tmp["mountPath"] == "/tmp" and "emptyDir" in next(v for v in pod["volumes"] if v["name"] == "tmp")
    env = environment(found)
    assert env["BENTOML_HOME"].startswith("/tmp/") and env["HOME"] == "/tmp"


def test_the_service_autoscaler_and_budget_all_reach_the_deployments_pods() -> None:
    found = manifests()
    deployment = found["deployment.yaml"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert found["service.yaml"]["spec"]["selector"] == selector
    assert found["service.yaml"]["spec"]["ports"][0]["targetPort"] == container(found)["ports"][0]["name"]
    assert found["pdb.yaml"]["spec"]["selector"]["matchLabels"] == selector
    target = found["hpa.yaml"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert (found["hpa.yaml"]["spec"]["minReplicas"], found["hpa.yaml"]["spec"]["maxReplicas"]) == (2, 10)


def test_production_is_followed_through_the_configured_tracking_server() -> None:
    env = environment(manifests())
    assert env["GREENLIGHT_FOLLOW_ALIAS"] == "production"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops:5000"
    # The store the version came from, when the pods can reach it: as `greenlight serve` reads MLFLOW_TRACKING_URI.
    env = environment(manifests(KubernetesOptions(), store="http://mlflow.internal:5000"))
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000"


def test_a_store_on_this_machine_cannot_be_followed_from_a_cluster() -> None:
    with pytest.raises(ConfigRejected, match=r"cannot read sqlite:///x/mlflow.db .*--tracking-uri.*--pinned"):
        manifests(KubernetesOptions())
    with pytest.raises(ConfigRejected, match=r"cannot read http://127.0.0.1:5000"):  # `make up`'s MLflow, here
        manifests(KubernetesOptions(tracking_uri="http://127.0.0.1:5000"))
    pinned = environment(manifests(KubernetesOptions(pinned=True)))
    assert "GREENLIGHT_FOLLOW_ALIAS" not in pinned and "MLFLOW_TRACKING_URI" not in pinned


def test_a_version_other_than_production_stays_pinned() -> None:
    assert "GREENLIGHT_FOLLOW_ALIAS" not in environment(manifests(is_production=False))


def test_requests_follow_the_model_family_unless_given() -> None:
    small = container(manifests(family="tabular_mlp"))["resources"]
    encoder = container(manifests(family="pretrained_encoder"))["resources"]
    assert small["requests"] == {"cpu": "250m", "memory": "512Mi"} and small["limits"] == {"memory": "1Gi"}
    assert encoder["requests"] == {"cpu": "1", "memory": "1Gi"}
    options = KubernetesOptions(tracking_uri="http://m:5000", cpu="2", memory="3Gi", image="reg.example.com/churn:3")
    given = container(manifests(options))
    assert (
        given["resources"]["requests"] == {"cpu": "2", "memory": "3Gi"} and given["image"] == "reg.example.com/churn:3"
    )
    assert container(manifests())["image"] == BENTO  # what `bentoml containerize` tags it


def test_replica_flags_that_contradict_each_other_are_refused() -> None:
    options = KubernetesOptions(
        tracking_uri="http://m:5000", namespace="ml", replicas=4, min_replicas=3, max_replicas=6
    )
    found = manifests(options)
    assert found["deployment.yaml"]["spec"]["replicas"] == 4
    assert {m["metadata"]["namespace"] for m in found.values()} == {"ml"}
    with pytest.raises(ConfigRejected, match=r"--min-replicas \(3\) <= --replicas \(2\)"):
        manifests(KubernetesOptions(tracking_uri="http://m:5000", replicas=2, min_replicas=3))


def test_any_registered_name_becomes_a_kubernetes_name() -> None:
    assert object_name("digits-classifier") == "digits-classifier"
    assert object_name("2024_Churn.Model") == "model-2024-churn-model"
    assert len(object_name("x" * 80)) <= 52
