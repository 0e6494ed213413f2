"""The spec: a dataset and a model as one typed value that a run is given, reviewed by a person, stored with
every model version and read back by the service that serves it.

Feature types drive everything downstream: the expectations a file must pass, the preprocessing learned on
the training split, the model's input tensors, drift, and the HTTP request contract. Inference
(tasks.data.infer) only proposes a spec; `greenlight init` writes it as YAML for review.

The ONNX hand-off every model family ends in (tasks.onnx.export) takes raw values, preprocessing inside:
  numeric      float32 [batch, n]  numeric features in spec order; NaN = missing (imputed in the graph)
  categorical  string  [batch, m]  categorical and binary features in spec order, each value as its text
                                   (value_text); "" = missing; unseen values go to an out-of-vocabulary code
  pixels       float32 [batch, h*w*c]  an image grid's columns, row-major (the bundled digits), or an image
                                   file decoded and resized to the spec's input size (tasks.core.images)
  text         string  [batch, 1]  a text feature's raw string ("" = missing); the runtime tokenizes it with
                                   the tokenizer stored in the .onnx file (tasks.core.text) into the graph's
                                   int64 "text_ids" / "text_mask" [batch, sequence] inputs
and answers `logits` float32 [batch, n_labels] (classification, index i = target.labels[i]) or
`prediction` float32 [batch] (regression, in the target's own units).

No Prefect, no torch, no pandas at import: bentos import this module.
"""

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.core.errors import ConfigRejected

if TYPE_CHECKING:
    import pandas as pd

FeatureType = Literal["numeric", "categorical", "binary", "id", "ignore", "image_grid", "text", "image"]
TaskKind = Literal["classification", "regression"]
Label = str | int | float | bool
NUMERIC_INPUT, CATEGORICAL_INPUT, PIXELS_INPUT, TEXT_INPUT = "numeric", "categorical", "pixels", "text"
TokenizerKind = Literal["pretrained", "wordpiece", "bpe"]
ResizePolicy = Literal["stretch", "pad", "crop"]
LOGITS_OUTPUT, PREDICTION_OUTPUT = "logits", "prediction"
# Types the model reads; id and ignore columns are named in the spec (so a reviewer sees the decision) and dropped.
MODEL_TYPES = ("numeric", "categorical", "binary", "image_grid", "text", "image")
# Types whose model input is an image (a grid of columns, or a file): the model reads that one feature alone.
IMAGE_TYPES = ("image_grid", "image")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Where a registered model carries its spec: the MLmodel file's metadata (tasks.registry.client writes it,
# bentos read it without importing MLflow).
SPEC_METADATA_KEY = "greenlight_spec"


class _Strict(BaseModel):
    # A typo in a reviewed spec ("nulable") must be refused, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class FeatureSpec(_Strict):
    """One input column (or, for image_grid, one group of pixel columns) and what it is."""

    name: str = Field(min_length=1)
    type: FeatureType
    why: str = Field("", description="why inference chose this type; for the reviewer")
    nullable: bool = Field(False, description="missing values are data: imputed (numeric) or their own category")
    # The domain seen when the spec was made: validation allows a margin around it (tasks.data.suite).
    min: float | None = None
    max: float | None = None
    values: list[Label] | None = Field(None, description="categories seen (categorical, binary)")
    # image_grid only: the pixel columns, row-major, and the grid's shape.
    columns: list[str] | None = None
    height: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    channels: int | None = Field(None, ge=1, le=4)
    # image only: how a file of another size reaches height x width (stretch: resize; pad: keep the aspect
    # ratio and pad with black; crop: keep the aspect ratio and cut the centre).
    resize: ResizePolicy | None = None
    # text only: how the text becomes tokens. pretrained = the pretrained encoder's own tokenizer; wordpiece /
    # bpe = a tokenizer trained on the training split (tokenizers library) with up to vocab_size tokens.
    tokenizer: TokenizerKind | None = None
    vocab_size: int | None = Field(None, ge=100, le=250_000)
    max_length: int | None = Field(None, ge=8, le=4096, description="tokens per text, [CLS] and [SEP] included")
    truncation: Literal["right", "left"] | None = Field(None, description="which end of a long text is cut")
    max_chars: int | None = Field(None, ge=1, description="longer texts are refused (validation, requests)")

    @model_validator(mode="after")
    def _type_has_its_settings(self) -> "FeatureSpec":
        if self.type == "text" and (self.tokenizer is None or self.max_length is None):
            raise ValueError(
                f"text feature '{self.name}' needs tokenizer (pretrained, wordpiece or bpe) and max_length"
            )
        if self.type == "text" and self.tokenizer != "pretrained" and self.vocab_size is None:
            raise ValueError(f"text feature '{self.name}' with a trained {self.tokenizer} tokenizer needs vocab_size")
        if self.type == "image" and not (self.height and self.width and self.channels in (1, 3)):
            raise ValueError(f"image feature '{self.name}' needs the input size: height, width and channels (1 or 3)")
        if self.type == "image_grid":
            cells = (self.height or 0) * (self.width or 0) * (self.channels or 1)
            if not self.columns or len(self.columns) != cells:
                raise ValueError(
                    f"image_grid '{self.name}' needs height x width x channels = {cells} columns, "
                    f"got {len(self.columns or [])}"
                )
        return self

    @property
    def source_columns(self) -> list[str]:
        """The file's columns this feature reads."""
        return list(self.columns) if self.type == "image_grid" and self.columns else [self.name]


class TargetSpec(_Strict):
    """The column to predict and the task."""

    name: str = Field(min_length=1)
    task: TaskKind
    why: str = ""
    labels: list[Label] | None = Field(None, description="classification: every label, in output order")

    @model_validator(mode="after")
    def _classification_has_labels(self) -> "TargetSpec":
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
    features: list[FeatureSpec] = Field(min_length=1)

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
        images = [f for f in self.features if f.type in IMAGE_TYPES]
        if images and len(images) != len(self.model_features):
            kind = images[0].type
            raise ValueError(f"an {kind} feature cannot be mixed with other model features (yet): mark them ignore")
        if len(self.of_type("text")) > 1:
            raise ValueError("at most one text feature per spec (yet): mark the others ignore, or join them")
        return self

    @property
    def task(self) -> TaskKind:
        return self.target.task

    @property
    def model_features(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.type in MODEL_TYPES]

    def of_type(self, *types: str) -> list[FeatureSpec]:
        return [f for f in self.features if f.type in types]

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
        groups = {
            NUMERIC_INPUT: [f.name for f in self.of_type("numeric")],
            CATEGORICAL_INPUT: [f.name for f in self.of_type("categorical", "binary")],
            PIXELS_INPUT: [c for f in self.of_type(*IMAGE_TYPES) for c in f.source_columns],
            TEXT_INPUT: [f.name for f in self.of_type("text")],
        }
        return {name: columns for name, columns in groups.items() if columns}

    def onnx_input_width(self, name: str) -> int:
        """Values per row of an ONNX input: its columns, or height x width x channels of an image file."""
        images = self.of_type("image")
        if name == PIXELS_INPUT and images:
            return (images[0].height or 1) * (images[0].width or 1) * (images[0].channels or 1)
        return len(self.onnx_inputs()[name])

    @property
    def onnx_output(self) -> str:
        return LOGITS_OUTPUT if self.task == "classification" else PREDICTION_OUTPUT

    def feeds(self, columns: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        """ONNX Runtime feeds from column -> values (a DataFrame's columns, or parsed request records).

        The same code on both sides, so training, parity checks and serving cannot disagree on encoding.
        """
        feeds = {}
        for name, names in self.onnx_inputs().items():
            if name == TEXT_INPUT:
                feeds[name] = np.array([[value_text(v)] for v in columns[names[0]]], dtype=object).reshape(-1, 1)
            elif name == PIXELS_INPUT and self.of_type("image"):
                from tasks.core.images import image_pixels  # Pillow only where images are read

                image = self.of_type("image")[0]
                pixels = [image_pixels(v, image).reshape(-1) for v in columns[names[0]]]
                feeds[name] = np.stack(pixels).astype(np.float32) if pixels else np.zeros((0, 1), np.float32)
            elif name == CATEGORICAL_INPUT:
                feeds[name] = np.array([[value_text(v) for v in columns[c]] for c in names], dtype=object).T
                feeds[name] = np.ascontiguousarray(feeds[name]).reshape(-1, len(names))
            else:
                feeds[name] = np.column_stack([as_float32(columns[c]) for c in names]).astype(np.float32)
        return feeds

    def label_texts(self) -> list[str]:
        return [value_text(label) for label in self.target.labels or []]


class ModelSpec(_Strict):
    """Which family builds the network, and its options (each family documents and checks its own)."""

    family: str = Field(
        "tabular_mlp",
        min_length=1,
        description="tabular_mlp, image_cnn, text_transformer, pretrained_encoder, or custom",
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
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in error.errors())


def value_text(value: Any) -> str:
    """A category as the text the vocabulary keys it by: 3, 3.0, np.int64(3) and '3' are all '3';
    True is 'true'; None, NaN and '' are '' (missing)."""
    # Exact-type fast paths first: the service encodes every categorical field of every request here.
    kind = type(value)
    if kind is str:
        return value.strip()
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    # pandas' NA / NaT arrive here from a frame's object columns: missing, like None.
    return "" if type(value).__name__ in ("NAType", "NaTType") else str(value).strip()


def as_float32(values: Sequence[Any]) -> np.ndarray:
    """Numbers as float32 with NaN for None / missing (pandas' NA included)."""
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype(np.float32)
    # Blank text is missing, as validation and inference read it (a CSV cell of spaces).
    return np.array([np.nan if is_missing(v) else v for v in values], dtype=np.float32)


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA, or blank text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return value != value or type(value).__name__ in ("NAType", "NaTType")


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
