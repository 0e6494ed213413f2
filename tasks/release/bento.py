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
    arguments = ["--model-name", version.name, "--model-version", version.version]
    built = run_bentos_module("bentos.build", arguments, version.tracking_uri, f"bento build for {version.uri}")
    return built["bento_tag"]


def run_bentos_module(module: str, arguments: list[str], tracking_uri: str, what: str) -> dict:
    """Run `python -m <module>` (bentos/ owns all BentoML work) and return the JSON line it prints last.

    Raises:
        GreenlightError: naming `what` with the child's last lines of stderr, when it exits non-zero.
    """
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "BENTOML_DO_NOT_TRACK": "true"}
    command = [sys.executable, "-m", module, *arguments]
    # A child that dies with this run: a killed run leaves no build finishing behind it.
    child = start_child(command, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(PROJECT_ROOT))
    try:
        stdout, stderr = (text.decode(errors="replace") for text in child.communicate(timeout=BUILD_TIMEOUT_S))
    finally:
        stop_child(child)
    if child.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise GreenlightError(f"{what} failed (exit {child.returncode}):\n{tail}")
    return json.loads(stdout.strip().splitlines()[-1])
