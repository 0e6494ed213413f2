"""What the container tests share: podman, runc and debootstrap installed from Debian's packages when missing.

Not a test module: test_containers.py and test_container_pool.py import it.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def install_podman() -> None:
    """Debian's podman, runc and debootstrap, as the README says; skip where this machine cannot install them."""
    if all(shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists() for tool in ("podman", "runc", "debootstrap")):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("podman is not installed and this user cannot install Debian packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    packages = ["podman", "runc", "debootstrap", "uidmap", "fuse-overlayfs", "slirp4netns"]
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot install podman here: {' '.join(command)}: {done.stderr.strip()[-300:]}")
