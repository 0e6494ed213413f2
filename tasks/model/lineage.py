"""Where a model version came from, recorded on the version itself (not only on its run): the data, the spec,
the code, the training environment, the Prefect flow run, and the versions it was compared with."""

import hashlib
import json
import platform
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.core.locations import PROJECT_ROOT, code_version
from tasks.core.records import LINEAGE_TAG_PREFIX
from tasks.data.files import file_sha256
from tasks.model.resolve import ResolvedDataset
from tasks.model.training import TrainedModel


@dataclass(frozen=True)
class Lineage:
    """Everything needed to say what produced a version, as flat strings (registry tags)."""

    data_sha256: str
    data_source: str
    data_rows: str
    spec_sha256: str
    spec_origin: str
    code_commit: str
    code_dirty: str  # "yes", "no" or "unknown": a dirty tree means the commit alone does not reproduce it
    python: str
    torch: str
    onnxruntime: str
    platform: str
    device: str
    constraints_sha256: str  # the pinned dependency set the environment was installed from
    prefect_flow_run_id: str
    prefect_flow_run_name: str

    def tags(self) -> dict[str, str]:
        return {f"{LINEAGE_TAG_PREFIX}{key}": value[:5000] for key, value in asdict(self).items()}


def constraints_digest() -> str:
    path = PROJECT_ROOT / "constraints.txt"
    return file_sha256(path) if path.is_file() else "none"


def installed(package: str) -> str:
    try:
        return package_version(package)
    except PackageNotFoundError:
        return "not installed"


@task(name="describe_lineage", cache_policy=NO_CACHE)
def describe_lineage(data: ResolvedDataset, trained: TrainedModel) -> Lineage:
    """The lineage of the model this run trained, before it is registered."""
    commit, dirty = code_version()
    spec_json = json.dumps(data.spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return Lineage(
        data_sha256=data.dataset.sha256,
        data_source=data.dataset.source,
        data_rows=str(data.dataset.rows),
        spec_sha256=hashlib.sha256(spec_json.encode()).hexdigest(),
        spec_origin=data.origin,
        code_commit=commit,
        code_dirty=dirty,
        python=platform.python_version(),
        torch=installed("torch"),
        onnxruntime=installed("onnxruntime"),
        platform=f"{platform.system()} {platform.release()} {platform.machine()} ({sys.implementation.name})",
        device=trained.device,
        constraints_sha256=constraints_digest(),
        prefect_flow_run_id=str(flow_run.get_id() or "none"),
        prefect_flow_run_name=str(flow_run.get_name() or "none"),
    )
