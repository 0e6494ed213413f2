"""What a run trains on: a reviewed spec file, a spec inferred from the user's table, or the bundled digits."""

from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import RunConfig
from tasks.core.errors import ConfigRejected, DataRejected
from tasks.core.spec import Spec, digits_spec, read_spec_file, safe_name
from tasks.data.files import LoadedDataset, load_dataset
from tasks.data.image_folders import LABEL_COLUMN
from tasks.data.infer import infer_spec, render_column_table

DIGITS_MODEL_NAME = "digits-classifier"


@dataclass(frozen=True)
class ResolvedDataset:
    """The rows a run reads, the spec it trains with, where the spec came from, and the model's name."""

    dataset: LoadedDataset
    spec: Spec
    origin: str  # "spec file greenlight.yaml", "inferred from churn.csv", "bundled digits"
    model_name: str


@task(name="resolve_dataset", cache_policy=NO_CACHE)
def resolve_dataset(config: RunConfig, default_dir: Path) -> ResolvedDataset:
    """Read the data the way its spec says: a spec file's columns, any columns (then infer), or the digits."""
    if config.spec_path:
        spec, _ = read_spec_file(Path(config.spec_path).expanduser())
        check_target_agrees(spec, config)
        dataset = load_dataset(config.data_path, default_dir, [*spec.dataset.input_columns, spec.dataset.target.name])
        return ResolvedDataset(dataset, spec, f"spec file {config.spec_path}", model_name(config, dataset, spec))
    target = config.target or (LABEL_COLUMN if is_folder(config.data_path) else None)
    if target:
        dataset = load_dataset(config.data_path, default_dir, None)
        spec, columns = infer_spec(dataset.frame, target, config.task, name=safe_name(config.data_path))
        # Zero-config runs still show what was decided; `greenlight init` writes it for review instead.
        print(f"inferred spec ({spec.dataset.task} of '{target}'):\n{render_column_table(columns)}")
        return ResolvedDataset(dataset, spec, f"inferred from {config.data_path}", model_name(config, dataset, spec))
    spec = digits_spec()
    try:
        dataset = load_dataset(config.data_path, default_dir, spec.dataset.file_columns)
    except DataRejected as error:
        hint = "" if not config.data_path else " (without --target or --spec a file is read as the bundled digits:"
        hint += " to train on your own table, pass --target COLUMN, or --spec FILE from `greenlight init`)"
        raise DataRejected(f"{error}{hint if config.data_path else ''}") from error
    return ResolvedDataset(dataset, spec, "bundled digits", config.model_name or DIGITS_MODEL_NAME)


def is_folder(data_path: str | None) -> bool:
    """A folder of class subfolders of images: its target is the subfolder name, no --target needed."""
    return bool(data_path) and Path(data_path).expanduser().is_dir()


def check_target_agrees(spec: Spec, config: RunConfig) -> None:
    target = spec.dataset.target
    if config.target and config.target != target.name:
        raise ConfigRejected(f"--target {config.target} disagrees with the spec's target '{target.name}'")
    if config.task != "auto" and config.task != target.task:
        raise ConfigRejected(f"--task {config.task} disagrees with the spec's task '{target.task}'")


def model_name(config: RunConfig, dataset: LoadedDataset, spec: Spec) -> str:
    """The configured name, else one made from the data file's name (churn.csv -> churn)."""
    return config.model_name or safe_name(dataset.source) or safe_name(spec.dataset.name)
