"""Container images built here, with podman: a base image made locally from Debian's own packages, a version's
service image from the Dockerfile BentoML generates for its bento (the build context `greenlight export k8s` writes),
and the pipeline image (deployments/kubernetes/Dockerfile, this checkout) that work pools run flow runs in.

No image registry is reachable from this kind of machine, so nothing is pulled: the base is a Debian 12 root file
system made by `debootstrap` (its python3 is 3.11) and imported with `podman import`, plus a layer with pip, venv and
this machine's CA bundle (the package registries may sit behind a proxy whose certificate the system trusts).
The settings podman needs here (runc, cgroupfs, no default ulimits) live in a containers.conf of our own, passed with
CONTAINERS_CONF: /etc is left as it was. The manual: docs/deployment.md#container-images.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import GreenlightError

# Debian 12: its python3 is 3.11, the version the bento's Dockerfile asks for (`FROM python:3.11-slim`).
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ROOT_IMAGE = f"localhost/greenlight-debian:{SUITE}"
BASE_IMAGE = f"localhost/greenlight-python:3.11-{SUITE}"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINERS_CONF = """# podman's settings for Greenlight's image builds (tasks/release/images.py): runc (crun fails on
# this kernel's cgroup layout), cgroupfs (no systemd), and no default ulimits (a container may not raise them here).
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""
PYTHON_LAYER = """FROM {root}
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip python3-venv \\
    && rm -rf /var/lib/apt/lists/* \\
    && ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/pip3 /usr/local/bin/pip
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Debian marks its python as managed by apt: the bento's Dockerfile installs uv with pip, into this image only.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt UV_NATIVE_TLS=1
"""
PIPELINE_DOCKERFILE = Path("deployments") / "kubernetes" / "Dockerfile"  # in the checkout, the build context
PIPELINE_IMAGE = "localhost/greenlight-pipeline:latest"
# Where a build's RUN steps see a local wheelhouse (podman build --volume): a fixed path, so that the dependency
# layer's cache key (it includes build arguments) is the same on every build.
WHEELHOUSE_MOUNT = "/var/cache/greenlight-wheels"
# The base image line of BentoML's Dockerfile (python:3.11-slim, with or without a registry and a stage name).
FROM_PYTHON = re.compile(r"^FROM\s+(?:docker\.io/(?:library/)?)?python:[\w.-]+", re.MULTILINE)


class ImageBuildFailed(GreenlightError):
    """podman, debootstrap or a build step failed; the message carries the end of its output."""


@dataclass(frozen=True)
class Podman:
    """The podman executable with our containers.conf."""

    executable: str
    conf: Path

    @classmethod
    def find(cls, home: Path) -> "Podman":
        executable = shutil.which("podman")
        if executable is None:
            raise ImageBuildFailed(
                "podman is not installed: `sudo apt-get install -y podman runc debootstrap` (Debian's packages), then"
                " run this again"
            )
        conf = home / "containers" / "containers.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
            conf.write_text(CONTAINERS_CONF)
        return cls(executable, conf)

    def run(self, *args: str, what: str, cwd: Path | None = None, stdin=None) -> str:
        """Run podman; its stdout, or ImageBuildFailed naming what failed with the end of its output."""
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        done = subprocess.run(
            [self.executable, *args], cwd=cwd, env=env, stdin=stdin, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ImageBuildFailed(f"{what} failed (podman {args[0]}, exit {done.returncode}):\n{tail}")
        return done.stdout

    def exists(self, image: str) -> bool:
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        return subprocess.run([self.executable, "image", "exists", image], env=env, check=False).returncode == 0


@dataclass(frozen=True)
class BuiltImage:
    """An image built here: its reference, id, manifest digest, size and how long the build took."""

    reference: str
    image_id: str
    digest: str
    size_bytes: int
    seconds: float


def ensure_base_image(podman: Podman, force: bool = False) -> str:
    """The base image, made once and reused: a Debian root file system from Debian's packages, then pip and the CA
    bundle. `force` makes both again (after a Debian point release, or a new CA bundle)."""
    if podman.exists(BASE_IMAGE) and not force:
        return BASE_IMAGE
    if force or not podman.exists(ROOT_IMAGE):
        import_debian_root(podman)
    with tempfile.TemporaryDirectory(prefix="greenlight-base-") as folder:
        context = Path(folder)
        (context / "Containerfile").write_text(PYTHON_LAYER.format(root=ROOT_IMAGE))
        shutil.copyfile(CA_BUNDLE, context / "ca-certificates.crt")
        podman.run("build", "--runtime", "runc", "-t", BASE_IMAGE, str(context), what=f"building {BASE_IMAGE}")
    return BASE_IMAGE


def import_debian_root(podman: Podman) -> None:
    """debootstrap a minimal Debian with python3 into a temporary folder and import it as ROOT_IMAGE (~1 min)."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise ImageBuildFailed("debootstrap is not installed: `sudo apt-get install -y debootstrap`, then run again")
    if os.geteuid() != 0:
        raise ImageBuildFailed("making the base image runs debootstrap, which needs root: run this once as root")
    with tempfile.TemporaryDirectory(prefix="greenlight-rootfs-", dir="/var/tmp") as folder:
        command = [debootstrap, "--variant=minbase", "--include=python3,python3-venv,ca-certificates", SUITE, folder]
        done = subprocess.run([*command, MIRROR], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ImageBuildFailed(f"debootstrap {SUITE} from {MIRROR} failed:\n{tail}")
        tar = subprocess.Popen(["tar", "-C", folder, "-c", "."], stdout=subprocess.PIPE)
        try:
            podman.run("import", "-", ROOT_IMAGE, what=f"importing {ROOT_IMAGE}", stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()


def use_local_base(dockerfile: Path, base: str) -> None:
    """Point the Dockerfile's python base image at the local one; refuse a Dockerfile with none to replace."""
    text = dockerfile.read_text()
    if not FROM_PYTHON.search(text):
        raise ImageBuildFailed(f"{dockerfile} has no `FROM python:...` line to point at {base}")
    dockerfile.write_text(FROM_PYTHON.sub(f"FROM {base}", text))


def build_image(
    podman: Podman, context: Path, dockerfile: Path, reference: str, options: tuple[str, ...] = ()
) -> BuiltImage:
    """podman build of the context (`options`: more flags for podman build); the image's id, digest and size read
    back from podman."""
    started = time.monotonic()
    podman.run(
        "build", "--runtime", "runc", *options, "-t", reference, "-f", str(dockerfile), str(context),
        what=f"building {reference}",
    )  # fmt: skip
    seconds = time.monotonic() - started
    found = podman.run("image", "inspect", "--format", "{{.Id}} {{.Digest}} {{.Size}}", reference, what="inspect")
    image_id, digest, size = found.split()
    return BuiltImage(reference, image_id, digest, int(size), seconds)


def save_image(podman: Podman, image: BuiltImage, archive: Path) -> Path:
    """The image as an OCI archive any registry tool loads (`podman load`, `skopeo copy oci-archive:...`)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    podman.run("save", "--format", "oci-archive", "-o", str(partial), image.reference, what=f"saving {image.reference}")
    partial.replace(archive)
    return archive


def pinned_version(constraints: Path, package: str) -> str | None:
    """The version constraints.txt pins for `package`, or None."""
    for line in constraints.read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package and version:
            return version.strip()
    return None


def find_links(environ: dict[str, str]) -> list[Path]:
    """The local folders pip looks in for wheels here: PIP_FIND_LINKS, else pip's configured find-links."""
    configured = environ.get("PIP_FIND_LINKS", "")
    if not configured:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        configured = done.stdout if done.returncode == 0 else ""
    entries = [entry.removeprefix("file://") for entry in configured.split()]
    return [Path(entry) for entry in entries if "://" not in entry and Path(entry).is_dir()]


def torch_wheelhouse(project_root: Path, environ: dict[str, str]) -> Path | None:
    """A local folder holding the pinned torch's CPU wheel for this Python, if pip here has one (machines with no
    route to download.pytorch.org); None means the build installs torch from TORCH_INDEX."""
    version = pinned_version(project_root / "constraints.txt", "torch")
    if version is None:
        return None
    for folder in find_links(environ):
        if any(folder.glob(f"torch-{version}+cpu-cp311-*.whl")):
            return folder
    return None


def build_pipeline_image(
    podman: Podman, project_root: Path, reference: str, base: str, no_cache: bool = False
) -> BuiltImage:
    """deployments/kubernetes/Dockerfile on the local base, from a checkout (its .dockerignore applies), torch's
    CPU wheel from the local wheelhouse when there is one; host networking, as pip's proxy may only be reachable
    that way. `no_cache`: every layer built again (a first build, for benchmarks/images.py)."""
    from tasks.core.locations import code_version

    commit, dirty = code_version()
    options = ["--network", "host", "--build-arg", f"GREENLIGHT_CODE_COMMIT={commit}"]
    options += ["--build-arg", f"GREENLIGHT_CODE_DIRTY={dirty}"] + ["--no-cache"] * no_cache
    if wheelhouse := torch_wheelhouse(project_root, dict(os.environ)):
        options += ["--volume", f"{wheelhouse}:{WHEELHOUSE_MOUNT}:ro", "--build-arg", "TORCH_INDEX="]
        options += ["--build-arg", f"PIP_FIND_LINKS={WHEELHOUSE_MOUNT}"]
    with tempfile.TemporaryDirectory(prefix="greenlight-pipeline-") as folder:
        dockerfile = Path(folder) / "Dockerfile"
        shutil.copyfile(project_root / PIPELINE_DOCKERFILE, dockerfile)
        use_local_base(dockerfile, base)
        return build_image(podman, project_root, dockerfile, reference, tuple(options))


def service_build_context(ref, folder: Path) -> tuple[Path, Path, str]:
    """The build context `greenlight export k8s` writes for a registered version (BentoML's Dockerfile, the bento and
    its model) in `folder`/image: the context, its Dockerfile and the bento tag."""
    from tasks.release.bento import run_bentos_module

    arguments = ["--model-name", ref.name, "--model-version", ref.version, "--out", str(folder / "image")]
    if bento := ref.tags.get("bento_tag"):
        arguments += ["--bento", bento]
    written = run_bentos_module("bentos.containerize", arguments, ref.tracking_uri, f"container build of {ref.uri}")
    return folder / "image", folder / "image" / written["dockerfile"], written["bento_tag"]
