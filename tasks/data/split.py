"""Splitting: train / validation / test frames of the spec's columns, seeded, stratified for classification."""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import train_test_split

from tasks.core.config import SplitConfig
from tasks.core.errors import DataRejected
from tasks.core.spec import DatasetSpec, value_text

Part = Literal["train", "validation", "test"]
# A class needs a row in each of train, validation and test, plus a couple to learn from.
MIN_ROWS_PER_CLASS = 5


@dataclass(frozen=True)
class DataSplits:
    """Three frames holding the spec's input columns and its target, raw as read (encoding is the model's)."""

    spec: DatasetSpec
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def frame(self, part: Part) -> pd.DataFrame:
        return {"train": self.train, "validation": self.validation, "test": self.test}[part]

    def feeds(self, part: Part, rows: int | None = None) -> dict[str, np.ndarray]:
        """ONNX Runtime feeds of a part's raw inputs (tasks.core.spec.DatasetSpec.feeds)."""
        frame = self.frame(part) if rows is None else self.frame(part).iloc[:rows]
        return self.spec.feeds({column: frame[column].tolist() for column in self.spec.input_columns})

    def targets(self, part: Part) -> np.ndarray:
        """Classification: int64 label indices into spec.target.labels; regression: float64 values."""
        return encode_targets(self.spec, self.frame(part)[self.spec.target.name])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def encode_targets(spec: DatasetSpec, values: pd.Series) -> np.ndarray:
    """Target values as the model's training targets; a label outside the spec is refused by name."""
    if spec.task == "regression":
        return pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64)
    index = {text: i for i, text in enumerate(spec.label_texts())}
    texts = [value_text(value) for value in values]
    unknown = sorted({text for text in texts if text not in index})
    if unknown:
        raise DataRejected(
            f"target '{spec.target.name}' holds {unknown[:5]}, not among the spec's labels {spec.target.labels};"
            " add them to target.labels in the spec or fix the rows"
        )
    return np.array([index[text] for text in texts], dtype=np.int64)


def check_class_sizes(spec: DatasetSpec, labels: np.ndarray) -> None:
    counts = np.bincount(labels, minlength=len(spec.label_texts()))
    rare = [spec.target.labels[i] for i in np.flatnonzero(counts < MIN_ROWS_PER_CLASS)]
    if rare:
        raise DataRejected(
            f"target '{spec.target.name}': labels {rare} have fewer than {MIN_ROWS_PER_CLASS} rows each; a stratified"
            " split needs them in train, validation and test: add rows, merge rare labels, or drop them from the file"
        )


@task(name="split_dataset", cache_policy=NO_CACHE)
def split_dataset(frame: pd.DataFrame, spec: DatasetSpec, config: SplitConfig) -> DataSplits:
    """Seeded train / validation / test split of a frame that passed validation; rows keep their file index."""
    frame = frame[[*spec.input_columns, spec.target.name]]
    stratify = None
    if spec.task == "classification":
        stratify = encode_targets(spec, frame[spec.target.name])
        check_class_sizes(spec, stratify)
    rest, test = train_test_split(frame, test_size=config.test_fraction, stratify=stratify, random_state=config.seed)
    # validation_fraction is of the whole dataset, so rescale it to the remainder.
    share = config.validation_fraction / (1.0 - config.test_fraction)
    rest_stratify = None if stratify is None else encode_targets(spec, rest[spec.target.name])
    train, validation = train_test_split(rest, test_size=share, stratify=rest_stratify, random_state=config.seed)
    return DataSplits(spec, train, validation, test)
