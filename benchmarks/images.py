"""How long the container images take to build, and how big they are: the pipeline image (deployments/kubernetes/
Dockerfile) from nothing, again with nothing changed, and after a code change; the service image of a registered
version, from nothing and again.

    python benchmarks/images.py                          # pipeline image; service image of digits-classifier
    python benchmarks/images.py --model-name churn       # the service image of another model's production version
    python benchmarks/images.py --skip-service

Built with podman on the local base image (made first if missing, timed apart), as `greenlight containerize` builds
them, under benchmark tags that are removed afterwards; the code change is made in a copy of the checkout. "From
nothing" is podman's --no-cache: every package is downloaded and installed again (through this machine's package
registry), so the first figure follows the network as much as the CPU. The service image needs a registered
version (the default store's, or MLFLOW_TRACKING_URI's); without one it is skipped with a line saying so.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.core.locations import PROJECT_ROOT, export_locations, resolve_locations  # noqa: E402
from tasks.release.images import (  # noqa: E402
    BuiltImage,
    Podman,
    build_image,
    build_pipeline_image,
    ensure_base_image,
    service_build_context,
    use_local_base,
)

PIPELINE_TAG = "localhost/greenlight-pipeline:benchmark"
SERVICE_TAG = "localhost/greenlight-service:benchmark"
# What the copy of the checkout leaves out: the top-level folders the image does not need (tasks/data stays).
TOP_LEVEL_IGNORED = {".venv", "data", ".git", "tests", "benchmarks"}


def ignored(folder: str, names: list[str]) -> set[str]:
    top = {name for name in names if name in TOP_LEVEL_IGNORED} if Path(folder) == PROJECT_ROOT else set()
    return top | {name for name in names if name == "__pycache__" or name.endswith(".egg-info")}


def row(what: str, image: BuiltImage) -> None:
    print(f"  {what:<34} {image.seconds:7.1f} s   {image.size_bytes / 1e9:6.2f} GB   {image.image_id[:12]}", flush=True)


def pipeline(podman: Podman, base: str) -> None:
    print(f"pipeline image ({PIPELINE_TAG}), from a copy of {PROJECT_ROOT}:")
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-") as folder:
        checkout = Path(folder) / "checkout"
        shutil.copytree(PROJECT_ROOT, checkout, ignore=ignored)
        row("first build (--no-cache)", build_pipeline_image(podman, checkout, PIPELINE_TAG, base, no_cache=True))
        row("again, nothing changed", build_pipeline_image(podman, checkout, PIPELINE_TAG, base))
        with (checkout / "tasks" / "core" / "locations.py").open("a") as code:
            code.write("\n# a code change\n")
        row("after a code change (one file)", build_pipeline_image(podman, checkout, PIPELINE_TAG, base))


def service(podman: Podman, base: str, model_name: str, locations) -> None:
    from tasks.core.errors import GreenlightError
    from tasks.release.handoff import exported_version

    try:
        ref = exported_version(locations.tracking_uri, model_name, None).ref
    except GreenlightError as error:
        print(f"service image: skipped ({error})")
        return
    print(f"service image ({SERVICE_TAG}) of {ref.uri}:")
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-") as folder:
        context, dockerfile, _ = service_build_context(ref, Path(folder))
        use_local_base(dockerfile, base)
        row("first build (--no-cache)", build_image(podman, context, dockerfile, SERVICE_TAG, ("--no-cache",)))
        row("again, nothing changed", build_image(podman, context, dockerfile, SERVICE_TAG))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default="digits-classifier")
    parser.add_argument("--skip-service", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    locations = resolve_locations()
    export_locations(locations)
    podman = Podman.find(locations.home)
    began = time.monotonic()
    base = ensure_base_image(podman)
    load = open("/proc/loadavg").read().split()[0]
    print(f"base image {base} ready in {time.monotonic() - began:.1f} s; load average {load}")
    print(f"  {'build':<34} {'time':>9}   {'size':>9}   image id")
    try:
        if not args.skip_pipeline:
            pipeline(podman, base)
        if not args.skip_service:
            service(podman, base, args.model_name, locations)
    finally:
        for tag in (PIPELINE_TAG, SERVICE_TAG):
            if podman.exists(tag):
                podman.run("rmi", tag, what=f"removing {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
