"""Write the container build of a registered version's bento: the Dockerfile BentoML generates, beside the bento
and its model (BentoML's construct_containerfile, written to a folder instead of built; docs/deployment.md).

    python -m bentos.containerize --bento TAG --model-name NAME --model-version 3 --out build/
"""

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path

import bentoml
from bentoml._internal.container import construct_containerfile
from bentoml.exceptions import NotFound

from tasks.core.locations import export_locations, resolve_locations

DOCKERFILE = "env/docker/Dockerfile"


def version_bento(bento_tag: str | None, model_name: str, model_version: int, tracking_uri: str) -> bentoml.Bento:
    """The bento the pipeline built for the version, or a new one built from the registry when it is not here."""
    if bento_tag:
        with contextlib.suppress(NotFound):
            return bentoml.bentos.get(bento_tag)
    from bentos.build import build_version, work_offline  # imports MLflow: only when a build is needed

    print(f"bento {bento_tag or '(none recorded)'} is not in this store: building one from the registry")
    work_offline()
    return build_version(tracking_uri, model_name, model_version)[1]


def write_build_context(bento: bentoml.Bento, out: Path) -> Path:
    """Copy the bento's build context, models included, into `out` (which must not exist); returns the Dockerfile."""
    # BuildKit as `bentoml containerize` uses it with Docker's default builder: its cache mounts speed rebuilds up.
    with construct_containerfile(bento, enable_buildkit=True) as (context, _):
        shutil.copytree(context, out)
    return out / DOCKERFILE


def main(argv: list[str] | None = None) -> int:
    """Write the build context; exit 1 with one line on stderr when it cannot be made."""
    parser = argparse.ArgumentParser(prog="python -m bentos.containerize", description=__doc__.splitlines()[0])
    parser.add_argument("--bento", help="the version's bento tag (its bento_tag tag), if it has one")
    parser.add_argument("--model-name", required=True, help="registered MLflow model name")
    parser.add_argument("--model-version", required=True, type=int, help="registered MLflow model version")
    parser.add_argument("--out", required=True, help="folder to create for the build context")
    args = parser.parse_args(argv)
    locations = resolve_locations()
    export_locations(locations, create=False)  # reads the stores; never creates one
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the caller parses stdout: it carries only the result
            bento = version_bento(args.bento, args.model_name, args.model_version, locations.tracking_uri)
            dockerfile = write_build_context(bento, Path(args.out))
    except Exception as exc:  # the caller is an export: one readable line, not a traceback
        print(f"bentos.containerize: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps({"bento_tag": str(bento.tag), "dockerfile": str(dockerfile.relative_to(args.out))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
