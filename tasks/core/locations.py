"""Where Greenlight keeps its state, resolved once from the standard variables at the edge."""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import DataRejected

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Locations:
    """Stores used by a run. Defaults sit under one gitignored folder (GREENLIGHT_HOME, else ./data)."""

    home: Path
    tracking_uri: str
    bentoml_home: Path
    prefect_home: Path
    # Optuna's studies (greenlight sweep). Their own database, never MLflow's file: both keep their schema's
    # revision in a table named alembic_version, and each would read the other's revision as its own.
    study_storage: str
    # Where services capture requests and the monitor, feedback and shadow read them: a folder or s3://bucket/prefix
    # (GREENLIGHT_CAPTURE_DIR, else <home>/capture; tasks/core/capture_store.py).
    capture: str

    @property
    def runs_dir(self) -> Path:
        """Per-run working files (datasets, checkpoints, reports) before they are logged to MLflow."""
        return self.home / "runs"

    @property
    def datasets_dir(self) -> Path:
        """Where the bundled digits are written as a file the first time a run reads them."""
        return self.home / "datasets"


def resolve_locations(environ: dict[str, str] | None = None) -> Locations:
    """Read GREENLIGHT_HOME, MLFLOW_TRACKING_URI, BENTOML_HOME, PREFECT_HOME, GREENLIGHT_STUDY_STORAGE (an
    SQLAlchemy URL: PostgreSQL in the production stack) and GREENLIGHT_CAPTURE_DIR, filling defaults."""
    env = os.environ if environ is None else environ
    home = Path(env.get("GREENLIGHT_HOME") or PROJECT_ROOT / "data").resolve()
    return Locations(
        home=home,
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
        bentoml_home=Path(env.get("BENTOML_HOME") or home / "bentoml").resolve(),
        prefect_home=Path(env.get("PREFECT_HOME") or home / "prefect").resolve(),
        study_storage=env.get("GREENLIGHT_STUDY_STORAGE") or f"sqlite:///{home / 'studies.db'}",
        capture=env.get("GREENLIGHT_CAPTURE_DIR") or str(home / "capture"),
    )


def export_locations(locations: Locations, create: bool = True) -> None:
    """Publish the homes to child processes and to libraries that read them at import; create them unless
    the command only reads (a mistyped GREENLIGHT_HOME must not leave empty stores behind)."""
    for folder in (locations.home, locations.bentoml_home, locations.prefect_home) if create else ():
        # Prefect creates PREFECT_HOME but not its parents, and then fails to start its server.
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = locations.tracking_uri
    os.environ["BENTOML_HOME"] = str(locations.bentoml_home)
    os.environ["PREFECT_HOME"] = str(locations.prefect_home)
    # No network here, and nobody asked to be counted.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")


def check_readable_file(path: Path) -> None:
    """Reject, with a message saying what to do, anything that is not a readable, non-empty data file."""
    if not path.exists():
        raise DataRejected(
            f"data file {path} does not exist; pass --data with a CSV or Parquet file, or a folder of images"
            " with one subfolder per class"
        )
    if path.is_dir():  # an image folder: tasks.data.image_folders reads and judges it
        if not os.access(path, os.R_OK | os.X_OK):
            raise DataRejected(f"data folder {path} is not readable (permission denied); check its permissions")
        return
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataRejected(
            f"data file {path} has unsupported extension '{path.suffix}'; use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not os.access(path, os.R_OK):
        raise DataRejected(f"data file {path} is not readable (permission denied); check its permissions")
    if path.stat().st_size == 0:
        raise DataRejected(f"data file {path} is empty (0 bytes)")


def sqlite_database(tracking_uri: str) -> Path | None:
    """The database file of a local `sqlite:///` MLflow store; None for any other store."""
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def git(*args: str) -> str | None:
    """A git command's output in the project, or None outside a checkout (an installed wheel, a container)."""
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> tuple[str, str]:
    """The commit and whether tracked files differ from it (untracked files, data and stores, do not count); in
    the pipeline image, which holds no .git, what its build recorded in CODE_VERSION ("<commit> <yes|no>")."""
    commit = git("rev-parse", "HEAD")
    if commit is None:
        recorded = PROJECT_ROOT / "CODE_VERSION"
        words = recorded.read_text().split() if recorded.is_file() else []
        return (words[0], words[1]) if len(words) == 2 else ("unknown", "unknown")
    changes = git("status", "--porcelain", "--untracked-files=no")
    return commit, "unknown" if changes is None else ("yes" if changes else "no")
