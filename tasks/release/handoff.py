"""What every export starts from: the registered version it hands over, and an output folder written whole or not
at all (files go to a hidden folder beside it, renamed into place once everything is written, so a failed export
leaves nothing a user could mistake for a finished one)."""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.registry.client import ModelVersionRef, RegistryError, find_version, get_version


@dataclass(frozen=True)
class ExportedVersion:
    """The version an export hands over, and whether it is the one `production` points to now."""

    ref: ModelVersionRef
    is_production: bool


def exported_version(tracking_uri: str, model_name: str, version: str | None) -> ExportedVersion:
    """`version` of the model, or its production version when None; a GreenlightError says what is missing."""
    production = find_version(tracking_uri, model_name)
    if version is None:
        if production is None:
            raise GreenlightError(
                f"no production version of '{model_name}' in {tracking_uri}: run `greenlight run` first, "
                "or name one with --version"
            )
        return ExportedVersion(production, True)
    try:
        ref = get_version(tracking_uri, model_name, version)
    except RegistryError as error:
        raise GreenlightError(f"'{model_name}' has no version {version} in {tracking_uri}") from error
    return ExportedVersion(ref, production is not None and production.version == ref.version)


def check_output_folder(out: Path) -> None:
    """Refuse an --out whose parent does not exist, or that already holds something."""
    if not out.parent.is_dir():
        raise ConfigRejected(f"--out {out}: its parent folder {out.parent} does not exist; create it first")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigRejected(f"--out {out} already exists and is not empty: choose another folder or remove it")


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `out` to write into; it becomes `out` when the block ends without error."""
    check_output_folder(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the export from the rest of a team
        if out.exists():
            out.rmdir()  # empty (checked above): replaced by the finished folder
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
