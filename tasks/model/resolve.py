"""What a run trains on: a reviewed spec file, a spec inferred from the user's table, or the bundled digits."""

from dataclasses import dataclass, replace
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import RunConfig
from tasks.core.errors import ConfigRejected, DataRejected
from tasks.core.records import SPEC_ARTIFACT, Record, RunLinks
from tasks.core.spec import ModelSpec, Spec, digits_spec, read_spec_file, safe_name
from tasks.data.files import LoadedDataset, load_dataset
from tasks.data.image_folders import LABEL_COLUMN
from tasks.data.infer import infer_spec, refuse_numeric_keys, render_column_table
from tasks.model.families import AUTO_FAMILY, get_family
from tasks.model.selection import candidate_families

DIGITS_MODEL_NAME = "digits-classifier"


@dataclass(frozen=True)
class ResolvedDataset:
    """The rows a run reads, the spec it trains with, where the spec came from, and the model's name."""

    dataset: LoadedDataset
    spec: Spec
    origin: str  # "spec file greenlight.yaml", "inferred from churn.csv", "bundled digits"
    model_name: str

    def with_spec(self, spec: Spec, why: str) -> "ResolvedDataset":
        """The same rows under the spec a search settled on (model.family auto's choice, a sweep's best trial)."""
        return replace(self, spec=spec, origin=f"{self.origin}; {why}")

    def record(self, links: RunLinks) -> Record:
        """The data's fingerprint and the spec this run trains with, as the YAML a person reviews (spec/spec.yaml
        on the run; the version points at it)."""
        dataset, spec = self.dataset, self.spec.dataset
        tags = {
            "data_sha256": dataset.sha256,
            "data_source": dataset.source,
            "data_rows": str(dataset.rows),
            "spec_origin": self.origin,
            "task": spec.task,
            "target": spec.target.name,
            "model_family": self.spec.model.family,
            "features": ", ".join(f"{f.name}:{f.type}" for f in spec.features)[:5000],
        }
        header = f"# Greenlight spec used by this run ({self.origin})\n"
        return Record(tags=tags, texts={SPEC_ARTIFACT: self.spec.to_yaml(header=header)})


@task(name="resolve_dataset", cache_policy=NO_CACHE)
def resolve_dataset(config: RunConfig, default_dir: Path) -> ResolvedDataset:
    """Read the data the way its spec says (a spec file's columns, any columns, then inferred, or the digits), with
    the model family the run configuration names, if it names one."""
    resolved = read_dataset(config, default_dir)
    if not config.model_family or config.model_family == resolved.spec.model.family:
        return resolved
    get_family_or_auto(config.model_family)
    spec = resolved.spec.model_copy(update={"model": ModelSpec(family=config.model_family)})
    print(f"model family      {config.model_family} (model_family of the run configuration)")
    return replace(resolved, spec=spec, origin=f"{resolved.origin}; model_family {config.model_family}")


def get_family_or_auto(name: str) -> None:
    """An unknown family is refused before any data is read further (the known ones listed)."""
    if name != AUTO_FAMILY:
        get_family(name)


def read_dataset(config: RunConfig, default_dir: Path) -> ResolvedDataset:
    if config.spec_path:
        spec, _ = read_spec_file(Path(config.spec_path).expanduser())
        check_target_agrees(spec, config)
        dataset = load_dataset(config.data_path, default_dir, [*spec.dataset.input_columns, spec.dataset.target.name])
        refuse_numeric_keys(spec.dataset, dataset.frame, f"spec file {config.spec_path}")
        return ResolvedDataset(dataset, spec, f"spec file {config.spec_path}", model_name(config, dataset, spec))
    target = config.target or (LABEL_COLUMN if is_folder(config.data_path) else None)
    if target:
        dataset = load_dataset(config.data_path, default_dir, None)
        spec, columns = infer_spec(dataset.frame, target, config.task, name=safe_name(config.data_path))
        # Zero-config runs still show what was decided; `greenlight init` writes it for review instead.
        print(f"inferred spec ({spec.dataset.task} of '{target}'):\n{render_column_table(columns)}")
        print(model_line(spec, config))
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


def model_line(spec: Spec, config: RunConfig) -> str:
    """The model decision under the spec table: the family (auto: its candidates) and the training budget."""
    budget = config.training.time_budget_s
    family = spec.model.family
    if family == "auto":
        family = f"auto (candidates: {', '.join(candidate_families(spec))}; the best on validation rows is served)"
    return f"model family      {family}\ntraining budget   " + ("no limit" if budget is None else f"{budget:.0f} s")
