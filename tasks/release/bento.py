"""Packaging stage: a BentoML service built for one registered version.

The build runs `python -m bentos.build` in a child process: tasks never import BentoML (bentos/ owns
all of it), and the child keeps BentoML's import cost and global state out of the flow's process.
"""

import json
import os
import subprocess
import sys

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.errors import GreenlightError
from tasks.core.locations import PROJECT_ROOT
from tasks.core.processes import start_child, stop_child
from tasks.registry.client import ModelVersionRef

BUILD_TIMEOUT_S = 600


@task(name="build_bento", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def build_bento(version: ModelVersionRef) -> str:
    """Import the version from MLflow into the BentoML store and build its bento; returns the bento tag."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": version.tracking_uri, "BENTOML_DO_NOT_TRACK": "true"}
    command = [sys.executable, "-m", "bentos.build", "--model-name", version.name, "--model-version", version.version]
    # A child that dies with this run: a killed run leaves no build finishing behind it.
    build = start_child(command, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(PROJECT_ROOT))
    try:
        stdout, stderr = (text.decode(errors="replace") for text in build.communicate(timeout=BUILD_TIMEOUT_S))
    finally:
        stop_child(build)
    if build.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise GreenlightError(f"bento build for {version.uri} failed (exit {build.returncode}):\n{tail}")
    return json.loads(stdout.strip().splitlines()[-1])["bento_tag"]
