"""Preprocessing learned from the training split only, as plain values that travel inside the checkpoint.

One value per ONNX input kind (numeric, categorical, pixels, text) and the regression target, fitted on the
training rows' feeds, so what the model learns from is what serving sends (docs/pipeline.md). Torch-free.
"""

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tasks.core.errors import GreenlightError
from tasks.core.spec import CATEGORICAL_INPUT, NUMERIC_INPUT, PIXELS_INPUT, TEXT_INPUT, DatasetSpec
from tasks.core.text import TEXT_IDS, TEXT_MASK, TextEncoder, pretrained_tokenizer_json, train_tokenizer_json

OOV_CODE, MISSING_CODE, FIRST_CATEGORY_CODE = 0, 1, 2
MISSING_TEXT = ""


@dataclass(frozen=True)
class Vocabulary:
    """One categorical column's training categories (as value_text); category i has code i + 2."""

    column: str
    categories: tuple[str, ...]

    @property
    def cardinality(self) -> int:
        """How many codes an embedding for this column needs (out-of-vocabulary and missing included)."""
        return len(self.categories) + FIRST_CATEGORY_CODE

    def mapping(self) -> dict[str, int]:
        """Text -> code for every known text, the missing one included; anything else is OOV_CODE."""
        known = {text: code for code, text in enumerate(self.categories, start=FIRST_CATEGORY_CODE)}
        return {MISSING_TEXT: MISSING_CODE, **known}

    def codes(self, texts: np.ndarray) -> np.ndarray:
        """int64 codes of a column of texts."""
        mapping = self.mapping()
        return np.fromiter((mapping.get(text, OOV_CODE) for text in texts), dtype=np.int64, count=len(texts))


@dataclass(frozen=True)
class NumericStats:
    """Per numeric column: the training median (imputation), mean and std after imputation (scaling)."""

    columns: tuple[str, ...]
    median: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Only nullable features get an indicator: a column that is never missing would add a constant input.
    nullable: tuple[bool, ...]

    @property
    def width(self) -> int:
        """Columns the network sees: the scaled values, then one indicator per nullable feature."""
        return len(self.columns) + sum(self.nullable)


@dataclass(frozen=True)
class ImageScale:
    """An image grid's value domain and shape; its columns are row-major (height, width, channels)."""

    low: float
    high: float
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class TextTokens:
    """A text feature's tokenizer (its JSON document) and how texts are cut; the exporter stores the same JSON
    in the .onnx file, so serving tokenizes with the very file training used."""

    column: str
    kind: str  # pretrained, wordpiece or bpe
    tokenizer_json: str
    max_length: int
    truncation: str
    vocab_size: int

    @cached_property
    def encoder(self) -> TextEncoder:
        return TextEncoder(self.tokenizer_json, self.max_length, self.truncation)


@dataclass(frozen=True)
class TargetScale:
    """A regression target's training mean and std: the network predicts (y - mean) / std; with log, of
    log(1 + y) (TargetSpec.transform), and raw_std is the std of y itself (what parity is measured against)."""

    mean: float
    std: float
    log: bool = False
    raw_std: float = 0.0

    def learned(self, raw: np.ndarray) -> np.ndarray:
        """The target as the network learns it: standardised, of log(1 + y) under log."""
        values = np.log1p(raw) if self.log else raw
        return (values - self.mean) / self.std

    @property
    def units_std(self) -> float:
        """The std of the target in its own units (1 when unknown)."""
        return (self.raw_std or 1.0) if self.log else self.std


@dataclass(frozen=True)
class Preprocessing:
    """Everything learned from the training split that the model applies before its network."""

    numeric: NumericStats | None = None
    vocabularies: tuple[Vocabulary, ...] = ()
    image: ImageScale | None = None
    target: TargetScale | None = None
    text: TextTokens | None = None
    rows: int = 0  # training rows it was fitted on (a family may size its work by them); 0: unknown

    def codes(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """int64 codes [n, m] of a categorical feed, as the ONNX graph's LabelEncoders compute them."""
        texts = feeds[CATEGORICAL_INPUT]
        columns = [vocabulary.codes(texts[:, i]) for i, vocabulary in enumerate(self.vocabularies)]
        return np.stack(columns, axis=1)

    def model_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The torch model's inputs: the ONNX feeds with categorical texts replaced by their codes."""
        inputs = dict(feeds)
        if self.vocabularies:
            inputs[CATEGORICAL_INPUT] = self.codes(feeds)
        if self.text is not None:
            inputs[TEXT_IDS], inputs[TEXT_MASK] = self.text.encoder.encode(inputs.pop(TEXT_INPUT))
        return inputs

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint (torch.load(weights_only=True) reads them back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Preprocessing":
        def tupled(value: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}

        return cls(
            numeric=NumericStats(**tupled(raw["numeric"])) if raw.get("numeric") else None,
            vocabularies=tuple(Vocabulary(v["column"], tuple(v["categories"])) for v in raw.get("vocabularies", ())),
            image=ImageScale(**raw["image"]) if raw.get("image") else None,
            target=TargetScale(**raw["target"]) if raw.get("target") else None,
            text=TextTokens(**raw["text"]) if raw.get("text") else None,
            rows=int(raw.get("rows", 0)),
        )


def fit_numeric(spec: DatasetSpec, values: np.ndarray) -> NumericStats:
    """Medians, then mean and std of the imputed training values; a constant column gets std 1 (not 0). A feature
    that puts several columns in the numeric input gives each its missing indicator when it is nullable."""
    values = values.astype(np.float64)
    missing = np.isnan(values)
    # A column missing in every training row has no median: 0 keeps it a constant the network ignores.
    median = np.array([np.median(c[~np.isnan(c)]) if (~np.isnan(c)).any() else 0.0 for c in values.T])
    filled = np.where(missing, median, values)
    std = filled.std(axis=0)
    features = spec.input_features()[NUMERIC_INPUT]
    return NumericStats(
        columns=tuple(column for f in features for column in f.input_columns),
        median=tuple(float(v) for v in median),
        mean=tuple(float(v) for v in filled.mean(axis=0)),
        std=tuple(float(v) if v > 0 else 1.0 for v in std),
        nullable=tuple(bool(f.nullable) for f in features for _ in f.input_columns),
    )


def fit_vocabularies(spec: DatasetSpec, texts: np.ndarray) -> tuple[Vocabulary, ...]:
    """Each categorical column's sorted training categories (missing "" is its own code, not a category)."""
    features = spec.input_features()[CATEGORICAL_INPUT]
    return tuple(
        Vocabulary(f.name, tuple(sorted({str(t) for t in texts[:, i]} - {MISSING_TEXT})))
        for i, f in enumerate(features)
    )


def fit_image(spec: DatasetSpec, pixels: np.ndarray) -> ImageScale:
    """The spec's declared domain; the training split's range where the spec leaves it open."""
    grid = spec.input_features()[PIXELS_INPUT][0]
    low = float(grid.min) if grid.min is not None else float(np.nanmin(pixels))
    high = float(grid.max) if grid.max is not None else float(np.nanmax(pixels))
    if high <= low:
        high = low + 1.0  # a blank grid: keep the division defined
    return ImageScale(low, high, grid.channels or 1, grid.height or 1, grid.width or 1)


def fit_target(spec: DatasetSpec, targets: np.ndarray) -> TargetScale | None:
    """Regression: the training targets' mean and std (std 0 -> 1), of log(1 + y) under transform log;
    classification needs none."""
    if spec.task != "regression":
        return None
    raw_std = float(np.std(targets))
    log = spec.target.transform == "log"
    if log:
        if len(targets) and float(np.min(targets)) < 0:
            raise GreenlightError(
                f"target '{spec.target.name}' has transform log, which needs values >= 0; the training rows hold"
                f" {float(np.min(targets)):g}: remove transform from the spec"
            )
        targets = np.log1p(targets)
    std = float(np.std(targets))
    return TargetScale(mean=float(np.mean(targets)), std=std if std > 0 else 1.0, log=log, raw_std=raw_std)


def fit_preprocessing(spec: DatasetSpec, feeds: dict[str, np.ndarray], targets: np.ndarray) -> Preprocessing:
    """Learn every input's preprocessing from the training split's feeds and targets."""
    return Preprocessing(
        numeric=fit_numeric(spec, feeds[NUMERIC_INPUT]) if NUMERIC_INPUT in feeds else None,
        vocabularies=fit_vocabularies(spec, feeds[CATEGORICAL_INPUT]) if CATEGORICAL_INPUT in feeds else (),
        image=fit_image(spec, feeds[PIXELS_INPUT]) if PIXELS_INPUT in feeds else None,
        target=fit_target(spec, targets),
        text=fit_text(spec, feeds[TEXT_INPUT]) if TEXT_INPUT in feeds else None,
        rows=len(targets),
    )


def fit_text(spec: DatasetSpec, texts: np.ndarray) -> TextTokens:
    """The pretrained tokenizer, or one trained on the training split's non-empty texts."""
    feature = spec.input_features()[TEXT_INPUT][0]
    if feature.tokenizer == "pretrained":
        document = pretrained_tokenizer_json()
    else:
        training = [str(t) for t in texts.reshape(-1) if str(t)]
        document = train_tokenizer_json(training, feature.tokenizer, feature.vocab_size)
    tokens = TextTokens(feature.name, feature.tokenizer, document, feature.max_length, feature.truncation or "right", 0)
    return TextTokens(**{**asdict(tokens), "vocab_size": tokens.encoder.vocab_size})
