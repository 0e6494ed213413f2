"""`greenlight export k8s|triton`: hand a registered version to another platform as files (tasks/release/).

Only a version a gate passed (or production) is handed over unless --force --reason; its file is checked against its
sha256, and its signature where GREENLIGHT_VERIFY_KEY_FILE is set, before anything is written (tasks/release/handoff).
"""

import argparse
import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tasks.core.locations import Locations

if TYPE_CHECKING:
    from tasks.release.handoff import ExportedVersion

T = TypeVar("T")


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    """The `export` command and its two targets."""
    export = commands.add_parser("export", help="write what Kubernetes or Triton needs to serve a version")
    targets = export.add_subparsers(dest="target", required=True)
    k8s = targets.add_parser("k8s", help="container build (BentoML's Dockerfile) + Deployment, Service, HPA, PDB")
    triton = targets.add_parser("triton", help="a Triton model repository: NAME/config.pbtxt and NAME/1/model.onnx")
    for target in (k8s, triton):
        target.add_argument("--model-name", default="digits-classifier")
        target.add_argument("--version", help="registered version number (default: the production version)")
        target.add_argument("--out", required=True, help="folder to create (its parent must exist)")
        add_force_arguments(target)
    k8s.add_argument("--image", help="image reference the Deployment runs (default: the bento tag)")
    k8s.add_argument("--namespace", default="greenlight")
    k8s.add_argument("--replicas", type=int, help="pods at first (default: --min-replicas)")
    k8s.add_argument("--min-replicas", type=int, default=2, help="the autoscaler's floor (default 2)")
    k8s.add_argument("--max-replicas", type=int, default=10, help="the autoscaler's ceiling (default 10)")
    k8s.add_argument("--cpu", help="CPU request per pod, e.g. 500m (default: by model family)")
    k8s.add_argument("--memory", help="memory request and limit per pod, e.g. 1Gi (default: by model family)")
    k8s.add_argument(
        "--tracking-uri", help="the MLflow server the pods follow production through (default: MLFLOW_TRACKING_URI)"
    )
    k8s.add_argument("--pinned", action="store_true", help="serve this version only; do not follow production")
    triton.add_argument("--max-batch-size", type=int, default=64, help="largest batch Triton forms (default 64)")
    triton.add_argument("--max-queue-delay-us", type=int, default=100, help="dynamic batching wait (default 100)")
    triton.add_argument("--instances", type=int, default=1, help="model instances per device (default 1)")
    triton.add_argument("--gpu", action="store_true", help="instances on GPUs (KIND_GPU) instead of CPUs")


def add_force_arguments(parser: argparse.ArgumentParser) -> None:
    """--force and --reason: hand over a version no gate passed (abandoned, failed, ...), saying why."""
    parser.add_argument(
        "--force", action="store_true", help="export a version no gate passed (never judged, or failed); needs --reason"
    )
    parser.add_argument("--reason", help="why a version no gate passed is exported (recorded on it as forced_export)")


def forced_reason(args: argparse.Namespace) -> str | None:
    """The reason to export a version no gate passed: None without --force, '' when --force has no --reason."""
    return (args.reason or "") if args.force else None


def options_from(args: argparse.Namespace, options: type[T]) -> T:
    """An options dataclass from the flags of the same names (fields without a flag keep their defaults)."""
    return options(**{field.name: getattr(args, field.name) for field in fields(options) if hasattr(args, field.name)})


def command_export(args: argparse.Namespace, locations: Locations) -> int:
    from tasks.release.handoff import check_output_folder, exported_version

    check_output_folder(Path(args.out))  # a mistyped --out is refused before the registry is read
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a download is a fraction of a second
    exported = exported_version(locations.tracking_uri, args.model_name, args.version, forced_reason(args))
    verified = "signature verified" if exported.verify_key is not None else "checksum verified"
    print(f"exporting {exported.ref.uri}{' (production)' if exported.is_production else ''}, {verified}")
    return write_kubernetes(args, exported) if args.target == "k8s" else write_triton(args, exported)


def write_kubernetes(args: argparse.Namespace, exported: "ExportedVersion") -> int:
    from tasks.release.kubernetes import KubernetesOptions, export_kubernetes

    written = export_kubernetes(exported, options_from(args, KubernetesOptions), Path(args.out))
    plan = written.plan
    following = f"follows @{plan.follow_alias} through {plan.tracking_uri}" if plan.follow_alias else "pinned"
    print(f"image build       {written.dockerfile}  (BentoML's Dockerfile for {plan.bento_tag}; image {plan.image})")
    print(f"manifests         {', '.join(str(path) for path in written.manifests)}")
    print(f"pods              {plan.replicas} ({plan.min_replicas}-{plan.max_replicas}), {following}")
    print(f"next              {written.out / 'README.md'}: build, push, create the API key's Secret, kubectl apply")
    return 0


def write_triton(args: argparse.Namespace, exported: "ExportedVersion") -> int:
    from tasks.release.triton import TritonOptions, export_triton

    written = export_triton(exported, options_from(args, TritonOptions), Path(args.out))
    print(f"model repository  {written.out}")
    print(f"config            {written.config}  (inputs {', '.join(t.name for t in written.inputs)})")
    print(f"model             {written.model}")
    print(f"serve             tritonserver --model-repository {written.out}")
    return 0
