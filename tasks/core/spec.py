"""The spec: a dataset and a model as one typed value that a run is given, reviewed by a person, stored with
every model version and read back by the service that serves it.

Feature types (tasks.core.features) drive every stage; the ONNX hand-off every family ends in: docs/pipeline.md.
No Prefect, no torch, no pandas at import: bentos import this module.
"""

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.core.errors import ConfigRejected
from tasks.core.features import FEATURE_TYPES, AnyFeature, FeatureSpec
from tasks.core.features.categorical import Label

# `X as X`: re-exported, the ONNX hand-off's names and the values' helpers, where the modules that read a
# spec have always imported them from.
from tasks.core.features.contract import CATEGORICAL_INPUT as CATEGORICAL_INPUT
from tasks.core.features.contract import MODEL_INPUTS, PIXELS_INPUT, value_text
from tasks.core.features.contract import NUMERIC_INPUT as NUMERIC_INPUT
from tasks.core.features.contract import TEXT_INPUT as TEXT_INPUT
from tasks.core.features.contract import as_float32 as as_float32
from tasks.core.features.contract import is_missing as is_missing
from tasks.core.features.image import ResizePolicy as ResizePolicy
from tasks.core.features.text import TokenizerKind as TokenizerKind

if TYPE_CHECKING:
    import pandas as pd

FeatureType = Literal[tuple(FEATURE_TYPES)]  # type: ignore[valid-type]
TaskKind = Literal["classification", "regression"]
LOGITS_OUTPUT, PREDICTION_OUTPUT = "logits", "prediction"
# Types the model reads; id and ignore columns are named in the spec (so a reviewer sees the decision) and dropped.
MODEL_TYPES = tuple(name for name, kind in FEATURE_TYPES.items() if kind.model_input is not None)
# Types whose model input is an image (a grid of columns, or a file): the model reads that one feature alone.
IMAGE_TYPES = tuple(name for name, kind in FEATURE_TYPES.items() if kind.model_input == PIXELS_INPUT)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Where a registered model carries its spec: the MLmodel file's metadata (tasks.registry.client writes it,
# bentos read it without importing MLflow).
SPEC_METADATA_KEY = "greenlight_spec"


class _Strict(BaseModel):
    # A typo in a reviewed spec ("nulable") must be refused, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class TargetSpec(_Strict):
    """The column to predict and the task."""

    name: str = Field(min_length=1)
    task: TaskKind
    why: str = ""
    labels: list[Label] | None = Field(None, description="classification: every label, in output order")
    # Regression only: log, the model learns log(1 + y) and answers exp(output) - 1 (inside the graph), so a
    # skewed non-negative target (prices, counts) is fitted on relative errors. model.family auto tries it for
    # a non-negative target and keeps it when it scores better on the validation rows (tasks.model.selection).
    transform: Literal["log"] | None = None

    @model_validator(mode="after")
    def _classification_has_labels(self) -> "TargetSpec":
        if self.transform is not None and self.task != "regression":
            raise ValueError(f"target '{self.name}': transform {self.transform!r} is for a regression target")
        if self.task == "classification":
            if not self.labels or len(self.labels) < 2:
                raise ValueError(f"classification target '{self.name}' needs at least 2 labels")
            texts = [value_text(label) for label in self.labels]
            if len(set(texts)) != len(texts):
                raise ValueError(f"target '{self.name}' lists a label twice: {self.labels}")
        elif self.labels:
            raise ValueError(f"regression target '{self.name}' has no labels; remove 'labels' or use classification")
        return self


class DatasetSpec(_Strict):
    """A table's columns, their types and the target: what a run reads and a version answers."""

    name: str = Field("dataset", min_length=1)
    target: TargetSpec
    features: list[AnyFeature] = Field(min_length=1)

    @model_validator(mode="after")
    def _columns_are_consistent(self) -> "DatasetSpec":
        names = [column for feature in self.features for column in feature.source_columns]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"columns named by more than one feature: {repeated}")
        if self.target.name in names:
            raise ValueError(f"target '{self.target.name}' is also listed as a feature")
        if not self.model_features:
            raise ValueError("no feature the model can read: every feature is id or ignore")
        alone = [f for f in self.features if f.sole_input]
        if alone and len(alone) != len(self.model_features):
            kind = alone[0].type
            raise ValueError(f"an {kind} feature cannot be mixed with other model features (yet): mark them ignore")
        for kind in dict.fromkeys(f.type for f in self.features if f.one_per_spec):
            if len(self.of_type(kind)) > 1:
                raise ValueError(f"at most one {kind} feature per spec (yet): mark the others ignore, or join them")
        return self

    @property
    def task(self) -> TaskKind:
        return self.target.task

    @property
    def model_features(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.model_input is not None]

    def of_type(self, *types: str) -> list[FeatureSpec]:
        return [f for f in self.features if f.type in types]

    def input_features(self) -> dict[str, list[FeatureSpec]]:
        """ONNX input name -> the features whose values it carries, in spec order (inputs in hand-off order)."""
        found = {name: [f for f in self.features if f.model_input == name] for name in MODEL_INPUTS}
        return {name: features for name, features in found.items() if features}

    @property
    def input_columns(self) -> list[str]:
        """Every file column the model reads, in spec order (id / ignore columns excluded)."""
        return [column for f in self.model_features for column in f.source_columns]

    @property
    def file_columns(self) -> list[str]:
        """Every column the spec names, target last: what a file for this spec holds."""
        return [column for f in self.features for column in f.source_columns] + [self.target.name]

    def onnx_inputs(self) -> dict[str, list[str]]:
        """ONNX input name -> the columns it carries, in order (see the module docstring)."""
        return {
            name: [c for f in features for c in f.input_columns] for name, features in self.input_features().items()
        }

    def onnx_input_width(self, name: str) -> int:
        """Values per row of an ONNX input: its columns, or height x width x channels of an image file."""
        return sum(f.input_width for f in self.input_features()[name])

    @property
    def onnx_output(self) -> str:
        return LOGITS_OUTPUT if self.task == "classification" else PREDICTION_OUTPUT

    def feeds(self, columns: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        """ONNX Runtime feeds from column -> values (a DataFrame's columns, or parsed request records).

        The same code on both sides, so training, parity checks and serving cannot disagree on encoding: each
        feature's type turns its raw values into its block of the input (FeatureSpec.feed).
        """
        feeds = {}
        for name, features in self.input_features().items():
            blocks = [feature.feed(columns) for feature in features]
            feeds[name] = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
        return feeds

    def label_texts(self) -> list[str]:
        return [value_text(label) for label in self.target.labels or []]


class ModelSpec(_Strict):
    """Which family builds the network, and its options (each family documents and checks its own)."""

    family: str = Field(
        "auto",
        min_length=1,
        description=(
            "auto (train the candidate families for these features, serve the best on validation rows), "
            "gradient_boosting, tabular_mlp, image_cnn, text_ngram, text_transformer, pretrained_encoder, or custom"
        ),
    )
    custom: str | None = Field(
        None,
        description="custom family: 'package.module:function' returning a torch.nn.Module",
        pattern=r"^[\w.]+:\w+$",
    )
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _custom_names_its_builder(self) -> "ModelSpec":
        if (self.family == "custom") != (self.custom is not None):
            raise ValueError("family 'custom' needs custom: 'module:function' (and only it takes one)")
        return self


class Spec(_Strict):
    """The reviewed value a run is given: the dataset and the model family."""

    dataset: DatasetSpec
    model: ModelSpec = ModelSpec()

    def to_yaml(self, header: str = "") -> str:
        import yaml

        body = yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False, width=110)
        return header + body

    @classmethod
    def from_mapping(cls, raw: object, where: str) -> "Spec":
        """Validate a parsed spec; errors name the field and the file."""
        if not isinstance(raw, dict):
            raise ConfigRejected(
                f"spec {where} must be a mapping with 'dataset' (and 'model'), got {type(raw).__name__}"
            )
        try:
            return cls.model_validate({k: raw[k] for k in ("dataset", "model") if k in raw})
        except ValidationError as error:
            raise ConfigRejected(f"invalid spec {where}: {validation_problems(error)}") from error


SPEC_FILE_KEYS = ("dataset", "model")


def read_spec_file(path: Path) -> tuple[Spec, dict[str, Any]]:
    """A spec YAML (or JSON) file: the Spec, and the run settings it also holds (data, model_name, gate, ...)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigRejected(f"spec file {path} could not be read: {error}") from error
    spec = Spec.from_mapping(raw, str(path))
    return spec, {k: v for k, v in raw.items() if k not in SPEC_FILE_KEYS}


def spec_file_settings(path: Path) -> dict[str, Any]:
    """The run settings a spec file holds beside its spec (data, model_name, training, gate, ...): RunConfig fields."""
    _, settings = read_spec_file(path)
    if "data" in settings:
        data = Path(str(settings.pop("data"))).expanduser()
        # A relative data path in a committed spec is relative to the spec file, not to where you stand.
        settings["data_path"] = str(data if data.is_absolute() else (path.parent / data).resolve())
    return {**settings, "spec_path": str(path)}


def validation_problems(error: ValidationError) -> str:
    """Each problem as `where: what`; a feature's problems say its type's words (tasks.core.features)."""
    return "; ".join(problem_text(problem) for problem in error.errors())


def problem_text(problem: Mapping[str, Any]) -> str:
    """One pydantic error as `dataset.features.2.tokenizer: ...`: the union's tag left out of the place, and a
    misplaced setting or an unknown type said in the spec's own words."""
    loc, kind = list(problem["loc"]), problem["type"]
    # Inside the features union, pydantic puts the type's tag after the feature's index: features.2.numeric.min
    at = next((i for i, p in enumerate(loc) if i and isinstance(loc[i - 1], int) and p in FEATURE_TYPES), None)
    tag = loc.pop(at) if at is not None else None
    where = ".".join(map(str, loc)) or "(top)"
    if kind in ("union_tag_invalid", "union_tag_not_found") and "'type'" in str(problem.get("ctx")):
        found = problem["ctx"].get("tag")
        what = f"unknown feature type {found!r}" if found is not None else "missing"
        return f"{where}.type: {what}; choose one of: {', '.join(FEATURE_TYPES)}"
    if kind == "extra_forbidden" and tag is not None:
        setting, article = loc[-1], "an" if tag[0] in "aeiou" else "a"
        owners = [name for name, cls in FEATURE_TYPES.items() if setting in cls.model_fields]
        if owners:
            takers = " and ".join([", ".join(owners[:-1]), owners[-1]] if len(owners) > 1 else owners)
            return (
                f"{where}: '{setting}' is not a setting of {article} {tag} feature ({takers} features take it):"
                " remove it, or change the type"
            )
        known = ", ".join(FEATURE_TYPES[tag].model_fields)
        return f"{where}: '{setting}' is not a setting of {article} {tag} feature (its settings: {known})"
    return f"{where}: {problem['msg']}"


def safe_name(text: str) -> str:
    """A model / file name from free text: 'My churn.csv' -> 'my-churn'."""
    return re.sub(r"[^a-z0-9_.-]+", "-", Path(text).stem.lower()).strip("-._") or "model"


# The bundled demo: scikit-learn's 8x8 digits, 4x4-pixel block counts of a 32x32 bitmap (each 0..16).
DIGITS_SIDE = 8
DIGITS_COLUMNS = [f"pixel_{row}_{col}" for row in range(DIGITS_SIDE) for col in range(DIGITS_SIDE)]


def digits_spec() -> Spec:
    """The spec of the bundled digits: one 8x8 image grid, ten labels, the CNN family."""
    grid = FeatureSpec(
        name="pixels",
        type="image_grid",
        why="the bundled digits: an 8x8 grid of 0..16 block counts, row-major",
        min=0,
        max=16,
        columns=DIGITS_COLUMNS,
        height=DIGITS_SIDE,
        width=DIGITS_SIDE,
        channels=1,
    )
    target = TargetSpec(name="target", task="classification", why="the digit drawn", labels=list(range(10)))
    return Spec(dataset=DatasetSpec(name="digits", target=target, features=[grid]), model=ModelSpec(family="image_cnn"))


def digits_frame() -> "pd.DataFrame":
    """scikit-learn's bundled digits as the digits spec reads them (no download: it ships with sklearn)."""
    import pandas as pd
    from sklearn.datasets import load_digits

    bunch = load_digits()
    frame = pd.DataFrame(bunch.data.astype("int64"), columns=DIGITS_COLUMNS)
    frame[digits_spec().dataset.target.name] = bunch.target.astype("int64")
    return frame
