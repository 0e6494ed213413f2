"""`greenlight containerize`: a version's service image built here with podman, from a base image made locally
(tasks/release/images.py), saved as an OCI archive, its digest recorded on the version. The image is the one
`greenlight export k8s` names in its Deployment (the bento tag), run as its manifests run it. With --pipeline: the
pipeline image instead (deployments/kubernetes/Dockerfile), the one the container and Kubernetes work pools run.
"""

import argparse
import os
import tempfile
from pathlib import Path

from deployments.export import add_force_arguments, forced_reason
from tasks.core.locations import Locations

# Version tags: where the image is and which bytes it is (an operator loads the archive into any registry).
IMAGE_TAGS = ("image.reference", "image.id", "image.digest", "image.archive", "image.base")


def add_containerize_parser(commands: argparse._SubParsersAction) -> None:
    """The `containerize` command and its flags."""
    containerize = commands.add_parser(
        "containerize",
        help="build a version's service image with podman (base image made locally), save it, record its digest",
        description=(
            "Build the image of a registered version's bento (BentoML's Dockerfile, the image `greenlight export k8s`"
            " names) with podman, from a Debian base image made here once with debootstrap (no registry is pulled"
            " from); save it as an OCI archive under <GREENLIGHT_HOME>/images/ and record the image's reference,"
            " id, digest and archive as tags on the version. Exit 1 with the failing step's output when a build fails."
        ),
    )
    containerize.add_argument(
        "--pipeline",
        action="store_true",
        help="build the pipeline image (deployments/kubernetes/Dockerfile, this checkout) instead of a version's",
    )
    containerize.add_argument("--model-name", default="digits-classifier")
    containerize.add_argument("--version", help="registered version number (default: the production version)")
    containerize.add_argument(
        "--tag", help="image reference (default: the bento tag, as export k8s names it; --pipeline: PIPELINE_IMAGE)"
    )
    containerize.add_argument("--rebuild-base", action="store_true", help="make the base image again first")
    containerize.add_argument("--no-save", action="store_true", help="do not write the OCI archive")
    add_force_arguments(containerize)  # issue 26 item 9: a version no gate passed is built only when forced


def command_containerize(args: argparse.Namespace, locations: Locations) -> int:
    """Write the build context, build on the local base, save, tag the version; print how to run it."""
    if args.pipeline:
        return command_containerize_pipeline(args, locations)
    from tasks.registry.client import tag_model_version
    from tasks.release.handoff import exported_version
    from tasks.release.images import (
        Podman,
        build_image,
        ensure_base_image,
        save_image,
        service_build_context,
        use_local_base,
    )

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    exported = exported_version(locations.tracking_uri, args.model_name, args.version, forced_reason(args))
    ref = exported.ref
    podman = Podman.find(locations.home)
    print(f"base image        {ensure_base_image(podman, force=args.rebuild_base)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="greenlight-image-") as folder:
        context, dockerfile, bento_tag = service_build_context(ref, Path(folder))
        base = ensure_base_image(podman)
        use_local_base(dockerfile, base)
        reference = args.tag or bento_tag.lower()
        print(f"building          {reference} from {ref.uri} (bento {bento_tag})", flush=True)
        image = build_image(podman, context, dockerfile, reference)
    tags = {"image.reference": image.reference, "image.id": image.image_id, "image.digest": image.digest}
    tags["image.base"] = base
    print(f"image             {image.reference}  {image.size_bytes / 1e6:,.0f} MB, built in {image.seconds:.0f} s")
    print(f"digest            {image.digest}")
    if not args.no_save:
        name = f"{ref.name}-v{ref.version}.oci.tar"
        archive = save_image(podman, image, locations.home / "images" / name)
        tags["image.archive"] = str(archive)
        print(
            f"archive           {archive}  (podman load -i / skopeo copy oci-archive:{archive} docker://REGISTRY/...)"
        )
    tag_model_version(ref, tags)
    print(f"recorded          {', '.join(tags)} on {ref.uri}")
    print(
        f"run               podman run --read-only --user 1034:1034 --tmpfs /tmp --cap-drop ALL -v KEY_DIR:"
        f"/var/run/secrets/greenlight:ro -e GREENLIGHT_API_KEY_FILE=/var/run/secrets/greenlight/api-key"
        f" -e BENTOML_HOME=/tmp/bentoml -e HOME=/tmp -p 127.0.0.1:3000:3000 {image.reference}"
    )
    return 0


def command_containerize_pipeline(args: argparse.Namespace, locations: Locations) -> int:
    """Build the pipeline image from this checkout on the local base; save it unless --no-save."""
    from tasks.core.errors import ConfigRejected
    from tasks.core.locations import PROJECT_ROOT
    from tasks.release.images import (
        PIPELINE_IMAGE,
        BuiltImage,
        Podman,
        build_pipeline_image,
        ensure_base_image,
        save_image,
        torch_wheelhouse,
    )

    if args.version:
        raise ConfigRejected("--pipeline builds the pipeline image, which holds no model version: drop --version")
    podman = Podman.find(locations.home)
    base = ensure_base_image(podman, force=args.rebuild_base)
    reference = args.tag or PIPELINE_IMAGE
    wheelhouse = torch_wheelhouse(PROJECT_ROOT, dict(os.environ))
    torch_from = f"the wheel in {wheelhouse}" if wheelhouse else "TORCH_INDEX (download.pytorch.org's CPU build)"
    print(f"base image        {base}", flush=True)
    print(f"building          {reference} from {PROJECT_ROOT} (torch: {torch_from})", flush=True)
    image: BuiltImage = build_pipeline_image(podman, PROJECT_ROOT, reference, base)
    print(f"image             {image.reference}  {image.size_bytes / 1e6:,.0f} MB, built in {image.seconds:.0f} s")
    print(f"digest            {image.digest}")
    if not args.no_save:
        archive = save_image(podman, image, locations.home / "images" / "greenlight-pipeline.oci.tar")
        print(f"archive           {archive}")
    print(f"run               make up-containers (a docker work pool whose flow runs use {image.reference})")
    return 0
