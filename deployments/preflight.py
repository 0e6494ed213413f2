"""Checks before a command touches anything: the data file, the MLflow store, the Prefect API.

Each takes a second or less and fails with the address and what to do, where the libraries would retry for
minutes and end in pages of tracebacks, or quietly create an empty store at a mistyped location.
"""

import os
import sqlite3
from pathlib import Path
from urllib.parse import urlparse

from tasks.core.config import RunConfig
from tasks.core.errors import GreenlightError
from tasks.core.locations import check_readable_file, sqlite_database

PROBE_TIMEOUT_S = 3.0
# MLflow retries a failing HTTP call 7 times with a doubling back-off (minutes); a transient outage is
# still ridden out (1 + 2 + 4 + 8 s), a dead server is reported within seconds of the pre-flight probe.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class StoreUnavailable(GreenlightError):
    """A store the command needs is not there, not answering, or not writable."""


def check_data_file(config: RunConfig) -> None:
    """The --data file (or the spec's) exists and is a readable data file: refused before anything starts."""
    if config.data_path:
        check_readable_file(Path(config.data_path).expanduser())


def probe_http(url: str, what: str, variable: str) -> None:
    import httpx

    try:
        httpx.get(url, timeout=PROBE_TIMEOUT_S).raise_for_status()
    except httpx.HTTPError as error:
        raise StoreUnavailable(
            f"{what} at {url.rsplit('/', 1)[0]} does not answer ({type(error).__name__}: {error}): start it, or"
            f" point {variable} at the right address"
        ) from error


def check_tracking_store(tracking_uri: str, create: bool) -> None:
    """The MLflow store answers; a read-only command (create=False) never creates one where there is none."""
    for key, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    scheme = urlparse(tracking_uri).scheme
    if scheme in ("http", "https"):
        probe_http(f"{tracking_uri.rstrip('/')}/health", "the MLflow tracking server", "MLFLOW_TRACKING_URI")
        return
    database = sqlite_database(tracking_uri)
    if database is None:
        return  # postgresql://, mysql://, databricks: the client's own error names them
    if not create and not database.is_file():
        raise StoreUnavailable(
            f"nothing is registered at {tracking_uri}: {database} does not exist. Check MLFLOW_TRACKING_URI or"
            " GREENLIGHT_HOME (a typo?), or run `greenlight run` first; this command creates no store"
        )
    folder = next(p for p in [database.parent, *database.parent.parents] if p.exists())
    if create and not os.access(folder, os.W_OK):
        raise StoreUnavailable(f"cannot write the MLflow store {database}: {folder} is not writable")


def check_prefect_api() -> None:
    """A configured Prefect server answers (unset: Prefect starts a temporary one of its own)."""
    if api := os.environ.get("PREFECT_API_URL"):
        probe_http(f"{api.rstrip('/')}/health", "the Prefect API", "PREFECT_API_URL")


def recorded_artifact_root(tracking_uri: str) -> Path | None:
    """The mlartifacts folder a local SQLite store records for its experiments (Greenlight puts it beside the
    database, tasks/registry/client.default_artifact_location); None when there is none."""
    database = sqlite_database(tracking_uri)
    if database is None or not database.is_file():
        return None
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        try:
            rows = db.execute("select artifact_location from experiments").fetchall()
        except sqlite3.Error:
            return None
    roots = [Path(urlparse(row[0]).path) for row in rows if row[0] and row[0].startswith("file://")]
    return next((root for root in roots if root.name == "mlartifacts"), None)


def check_store_location(tracking_uri: str) -> None:
    """A store moved or restored elsewhere still points its artifacts at the old folder: stop before training."""
    recorded = recorded_artifact_root(tracking_uri)
    database = sqlite_database(tracking_uri)
    if recorded is None or database is None:
        return
    here = database.parent / "mlartifacts"
    if recorded.exists() or recorded.resolve() == here.resolve():
        return
    old_home = recorded.parent
    raise StoreUnavailable(
        f"the MLflow store {database} records its artifacts under {recorded}, which does not exist: the folder was"
        f" moved or restored from {old_home}. Run `greenlight relocate --from {old_home}` once to point the store"
        f" at {here}, or put the folder back where it was"
    )
