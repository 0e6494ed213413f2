"""A run's working folder, under the data home, named so runs never overwrite each other."""

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run


@task(name="prepare_workspace", cache_policy=NO_CACHE)
def prepare_workspace(runs_dir: Path) -> Path:
    """runs_dir/<UTC time>-<flow run id prefix>, created empty."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_id = str(flow_run.get_id() or "local")[:8]
    path = runs_dir / f"{stamp}-{run_id}"
    path.mkdir(parents=True, exist_ok=False)
    return path
