"""Kubernetes export: what a cluster needs to serve a registered version as `greenlight serve` does here.

`export_kubernetes` writes image/ (BentoML's Dockerfile, the bento and its model: bentos/containerize.py),
kubernetes/ (deployment, service, hpa, pdb, and the verify key's Secret when the export verified the version's
signature) and README.md; the pods follow `production` unless pinned.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from tasks.core.errors import ConfigRejected
from tasks.core.locations import sqlite_database
from tasks.registry.client import PRODUCTION_ALIAS
from tasks.release.bento import run_bentos_module
from tasks.release.handoff import ExportedVersion, staged_folder

# BentoML's image serves on 3000 (`EXPOSE 3000`, the entrypoint's `bentoml serve`) as the `bentoml` user,
# uid and gid 1034. The uid is named here because the image says `USER bentoml`: a name the kubelet cannot
# check against runAsNonRoot, so the pod must state the number.
SERVER_PORT = 3000
BENTO_UID = 1034
API_KEY_DIR = "/var/run/secrets/greenlight"
API_KEY_FILE = "api-key"
# The public key the export verified the version with, mounted apart from the API key (its own Secret, its own folder):
# the pods refuse any model, the bento's or a followed version, whose signature it does not verify.
VERIFY_KEY_DIR = "/var/run/secrets/greenlight-verify"
VERIFY_KEY_FILE = "verify-key.pem"
# Optional: MLflow credentials the pods need to read the registry (MLFLOW_TRACKING_TOKEN, AWS_* for S3 artifacts).
MLFLOW_SECRET = "greenlight-mlflow"
# Stores on this machine, files or loopback servers: a pod cannot reach them, so following the alias needs a server.
LOCAL_STORES = ("sqlite:", "file:", "/", ".")
LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


@dataclass(frozen=True)
class Resources:
    """Per-pod requests (and the memory limit) for one model family."""

    cpu: str
    memory: str
    memory_limit: str


# Measured: the digits service following the registry holds ~390 MB (BentoML's process and one worker with
# MLflow imported), and a promotion briefly holds two models. Text families add the tokenizer and a larger
# graph (pretrained_encoder: 91 MB fp32). No CPU limit: throttling a latency-bound server costs more than it saves.
FAMILY_RESOURCES = {
    "tabular_mlp": Resources("250m", "512Mi", "1Gi"),
    "image_cnn": Resources("250m", "512Mi", "1Gi"),
    "text_transformer": Resources("500m", "768Mi", "1536Mi"),
    "pretrained_encoder": Resources("1", "1Gi", "2Gi"),
}
DEFAULT_RESOURCES = FAMILY_RESOURCES["tabular_mlp"]


@dataclass(frozen=True)
class KubernetesOptions:
    """The export's flags; None means: choose from the version (image, resources) or the store (tracking URI)."""

    namespace: str = "greenlight"
    image: str | None = None
    replicas: int | None = None
    min_replicas: int = 2
    max_replicas: int = 10
    cpu: str | None = None
    memory: str | None = None
    tracking_uri: str | None = None
    pinned: bool = False
    target_cpu_percent: int = 70


@dataclass(frozen=True)
class ServingPlan:
    """Everything the manifests say, decided once: what runs, where, how many, and what it follows."""

    name: str
    namespace: str
    model_name: str
    model_version: str
    bento_tag: str
    image: str
    replicas: int
    min_replicas: int
    max_replicas: int
    resources: Resources
    follow_alias: str | None
    tracking_uri: str | None
    target_cpu_percent: int
    verify_key_pem: str | None = None  # None: the export checked no signature, and the pods check none

    @property
    def verify_key_secret(self) -> str:
        return f"{self.name}-verify-key"

    @property
    def selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.name, "app.kubernetes.io/component": "model-server"}

    @property
    def api_key_secret(self) -> str:
        return f"{self.name}-api-key"


@dataclass(frozen=True)
class KubernetesExport:
    out: Path
    plan: ServingPlan
    dockerfile: Path
    manifests: tuple[Path, ...]


def object_name(model_name: str) -> str:
    """A model name as a Kubernetes name: lower-case letters, digits and '-', starting with a letter, <= 52
    characters (room for the '-api-key' suffix within the 63 a Service name allows)."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    name = name if name[:1].isalpha() else f"model-{name}"
    return name[:52].rstrip("-")


def pod_tracking_uri(options: KubernetesOptions, store_uri: str) -> str:
    """The registry the pods follow: --tracking-uri, else the store the version came from, if a pod can reach it."""
    uri = options.tracking_uri or store_uri
    if uri.startswith(LOCAL_STORES) or sqlite_database(uri) is not None or urlparse(uri).hostname in LOOPBACK:
        raise ConfigRejected(
            f"the pods cannot read {uri} (a store on this machine) to follow @{PRODUCTION_ALIAS}: pass --tracking-uri "
            "with the MLflow server the cluster reaches (e.g. http://mlflow.mlops.svc.cluster.local:5000), "
            "or --pinned to serve this version only"
        )
    return uri


def serving_plan(exported: ExportedVersion, bento_tag: str, options: KubernetesOptions) -> ServingPlan:
    """Decide the manifests' values; flags that contradict each other are refused by name."""
    ref = exported.ref
    replicas = options.min_replicas if options.replicas is None else options.replicas
    if not 1 <= options.min_replicas <= replicas <= options.max_replicas:
        raise ConfigRejected(
            f"replicas must satisfy 1 <= --min-replicas ({options.min_replicas}) <= --replicas ({replicas}) "
            f"<= --max-replicas ({options.max_replicas})"
        )
    family = FAMILY_RESOURCES.get(ref.tags.get("model_family", ""), DEFAULT_RESOURCES)
    resources = Resources(
        options.cpu or family.cpu, options.memory or family.memory, options.memory or family.memory_limit
    )
    # Another version than production would be replaced by production at the first poll: it stays pinned.
    follow = exported.is_production and not options.pinned
    return ServingPlan(
        name=object_name(ref.name),
        namespace=options.namespace,
        model_name=ref.name,
        model_version=ref.version,
        bento_tag=bento_tag,
        image=options.image or bento_tag.lower(),  # what `bentoml containerize` tags the image by default
        replicas=replicas,
        min_replicas=options.min_replicas,
        max_replicas=options.max_replicas,
        resources=resources,
        follow_alias=PRODUCTION_ALIAS if follow else None,
        tracking_uri=pod_tracking_uri(options, ref.tracking_uri) if follow else None,
        target_cpu_percent=options.target_cpu_percent,
        verify_key_pem=exported.verify_key_pem,
    )


def metadata(plan: ServingPlan) -> dict:
    labels = {**plan.selector, "app.kubernetes.io/part-of": "greenlight"}
    return {"name": plan.name, "namespace": plan.namespace, "labels": labels}


def server_environment(plan: ServingPlan) -> list[dict]:
    """The service's settings (bentos/settings.py) for a read-only root filesystem: every write goes to /tmp."""
    env = {
        "GREENLIGHT_API_KEY_FILE": f"{API_KEY_DIR}/{API_KEY_FILE}",
        "GREENLIGHT_ORT_THREADS": "1",  # one worker per pod, one core each: scale with replicas
        "BENTOML_HOME": "/tmp/bentoml",  # BentoML creates its store's folders at start; the model is in the image
        "HOME": "/tmp",  # onnxruntime and MLflow keep small files under ~
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
    }
    if plan.follow_alias:
        env |= {"GREENLIGHT_FOLLOW_ALIAS": plan.follow_alias, "MLFLOW_TRACKING_URI": plan.tracking_uri or ""}
    if plan.verify_key_pem:
        env["GREENLIGHT_VERIFY_KEY_FILE"] = f"{VERIFY_KEY_DIR}/{VERIFY_KEY_FILE}"
    return [{"name": name, "value": value} for name, value in env.items()]


def key_volumes(plan: ServingPlan) -> list[tuple[str, str, str]]:
    """(volume, Secret, mount folder) of each key file the server reads: the API key, and the verify key when the
    export verified the version's signature."""
    keys = [("api-key", plan.api_key_secret, API_KEY_DIR)]
    return keys + ([("verify-key", plan.verify_key_secret, VERIFY_KEY_DIR)] if plan.verify_key_pem else [])


def server_container(plan: ServingPlan) -> dict:
    """The model server: probes on BentoML's /readyz (a verified model answered its warm-up) and /livez."""
    probe = {"httpGet": {"path": "/livez", "port": "http"}}
    return {
        "name": "model-server",
        "image": plan.image,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "env": server_environment(plan),
        "envFrom": [{"secretRef": {"name": MLFLOW_SECRET, "optional": True}}],
        # Up to 2 minutes to start (imports, and a download when production is not the bento's own version).
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 2},
        "resources": {
            "requests": {"cpu": plan.resources.cpu, "memory": plan.resources.memory},
            "limits": {"memory": plan.resources.memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
        + [{"name": volume, "mountPath": folder, "readOnly": True} for volume, _, folder in key_volumes(plan)],
    }


def deployment_manifest(plan: ServingPlan) -> dict:
    """The pods: non-root, read-only root filesystem, the API key mounted from its Secret; rolling updates
    never go below the ready replicas."""
    annotations = {
        "greenlight/model": f"models:/{plan.model_name}/{plan.model_version}",
        "greenlight/bento": plan.bento_tag,
    }
    pod_spec = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": BENTO_UID,
            "runAsGroup": BENTO_UID,
            "fsGroup": BENTO_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [server_container(plan)],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},  # downloads of followed versions land here
        ]
        + [
            {"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}}
            for volume, secret, _ in key_volumes(plan)
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**metadata(plan), "annotations": annotations},
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": plan.selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": metadata(plan)["labels"], "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def service_manifest(plan: ServingPlan) -> dict:
    port = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    spec = {"type": "ClusterIP", "selector": plan.selector, "ports": [port]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(plan), "spec": spec}


def autoscaler_manifest(plan: ServingPlan) -> dict:
    utilization = {"type": "Utilization", "averageUtilization": plan.target_cpu_percent}
    spec = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.name},
        "minReplicas": plan.min_replicas,
        "maxReplicas": plan.max_replicas,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": utilization}}],
    }
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": metadata(plan), "spec": spec}


def disruption_budget_manifest(plan: ServingPlan) -> dict:
    """One pod at a time may be evicted (node drains): never all of them, whatever the replica count."""
    spec = {"maxUnavailable": 1, "selector": {"matchLabels": plan.selector}}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(plan), "spec": spec}


def verify_key_manifest(plan: ServingPlan) -> dict:
    """The public key the pods verify signatures with, as a Secret written whole (a public key hides nothing; a
    Secret, as the API key, so it is mounted the same way and a cluster's policy on key material applies)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**metadata(plan), "name": plan.verify_key_secret},
        "type": "Opaque",
        "stringData": {VERIFY_KEY_FILE: plan.verify_key_pem},
    }


def serving_manifests(plan: ServingPlan) -> dict[str, dict]:
    """File name -> manifest, one file per kind."""
    manifests = {
        "deployment.yaml": deployment_manifest(plan),
        "service.yaml": service_manifest(plan),
        "hpa.yaml": autoscaler_manifest(plan),
        "pdb.yaml": disruption_budget_manifest(plan),
    }
    return manifests | ({"verify-key.yaml": verify_key_manifest(plan)} if plan.verify_key_pem else {})


class ManifestDumper(yaml.SafeDumper):
    """Plain YAML: a value used twice (the probes' path, the annotations) is written twice, not as &id001 / *id001."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def literal_block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    """Text of several lines (the verify key's PEM) as a YAML literal block: the file as it was, line for line."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


ManifestDumper.add_representer(str, literal_block)


def manifest_yaml(manifest: dict) -> str:
    return yaml.dump(manifest, Dumper=ManifestDumper, sort_keys=False)


def export_kubernetes(exported: ExportedVersion, options: KubernetesOptions, out: Path) -> KubernetesExport:
    """Write the container build and the manifests for the version into `out`, whole or not at all."""
    ref = exported.ref
    registered_bento = ref.tags.get("bento_tag", "")
    serving_plan(exported, registered_bento, options)  # contradictory flags are refused before any work
    with staged_folder(out) as staging:
        arguments = ["--model-name", ref.name, "--model-version", ref.version, "--out", str(staging / "image")]
        arguments += ["--bento", registered_bento] if registered_bento else []
        written = run_bentos_module("bentos.containerize", arguments, ref.tracking_uri, f"container build of {ref.uri}")
        plan = serving_plan(exported, written["bento_tag"], options)  # the bento in the image: built anew if missing
        (staging / "kubernetes").mkdir()
        for filename, manifest in serving_manifests(plan).items():
            (staging / "kubernetes" / filename).write_text(manifest_yaml(manifest))
        (staging / "README.md").write_text(next_steps(plan))
    manifests = tuple(out / "kubernetes" / filename for filename in serving_manifests(plan))
    return KubernetesExport(out, plan, out / "image" / written["dockerfile"], manifests)


def next_steps(plan: ServingPlan) -> str:
    """The folder's README: build, push, the Secret, apply."""
    following = (
        f"The pods follow @{plan.follow_alias} through {plan.tracking_uri}: a promotion or rollback reaches them "
        f"within seconds, without a rollout."
        if plan.follow_alias
        else f"The pods serve version {plan.model_version} only (pinned)."
    )
    verifies = (
        f"\nThe pods serve only models signed by the pipeline's key: kubernetes/verify-key.yaml holds the public key"
        f" this export verified version {plan.model_version} with (GREENLIGHT_VERIFY_KEY_FILE in the pods).\n"
        if plan.verify_key_pem
        else ""
    )
    return f"""# {plan.model_name} v{plan.model_version} on Kubernetes

{following}
{verifies}
```bash
docker build -t {plan.image} -f image/env/docker/Dockerfile image/   # BuildKit (Docker's default builder)
docker push {plan.image}
kubectl create namespace {plan.namespace}
kubectl -n {plan.namespace} create secret generic {plan.api_key_secret} --from-file={API_KEY_FILE}=./api-key.txt
kubectl -n {plan.namespace} create secret generic {MLFLOW_SECRET} --from-literal=MLFLOW_TRACKING_TOKEN=...  # optional
kubectl apply -f kubernetes/
```

- image/: the Dockerfile BentoML generates for bento {plan.bento_tag}, with the bento and its model inside
- kubernetes/deployment.yaml: {plan.replicas} pods, non-root, read-only root filesystem, /readyz and /livez probes
- kubernetes/service.yaml: ClusterIP port 80 -> the pods' port {SERVER_PORT}
- kubernetes/hpa.yaml: {plan.min_replicas} to {plan.max_replicas} pods at {plan.target_cpu_percent}% CPU
- kubernetes/pdb.yaml: at most one pod evicted at a time
""" + ("- kubernetes/verify-key.yaml: the public key the pods verify signatures with\n" if plan.verify_key_pem else "")
