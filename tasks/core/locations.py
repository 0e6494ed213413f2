"""Where Greenlight keeps its state, resolved once from the standard variables at the edge."""

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Locations:
    """Stores used by a run. Defaults sit under one gitignored folder (GREENLIGHT_HOME, else ./data)."""

    home: Path
    tracking_uri: str
    bentoml_home: Path
    prefect_home: Path

    @property
    def runs_dir(self) -> Path:
        """Per-run working files (datasets, checkpoints, reports) before they are logged to MLflow."""
        return self.home / "runs"


def resolve_locations(environ: dict[str, str] | None = None) -> Locations:
    """Read GREENLIGHT_HOME, MLFLOW_TRACKING_URI, BENTOML_HOME and PREFECT_HOME, filling defaults."""
    env = os.environ if environ is None else environ
    home = Path(env.get("GREENLIGHT_HOME") or PROJECT_ROOT / "data").resolve()
    return Locations(
        home=home,
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
        bentoml_home=Path(env.get("BENTOML_HOME") or home / "bentoml").resolve(),
        prefect_home=Path(env.get("PREFECT_HOME") or home / "prefect").resolve(),
    )


def export_locations(locations: Locations) -> None:
    """Create the homes and publish them to child processes and to libraries that read them at import."""
    for folder in (locations.home, locations.bentoml_home, locations.prefect_home):
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
