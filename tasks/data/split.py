"""Splitting: train / validation / test frames of the spec's columns, seeded, stratified for classification."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import train_test_split

from tasks.core.config import SplitConfig
from tasks.core.errors import DataRejected
from tasks.core.spec import DatasetSpec
from tasks.data.parts import DataSplits, encode_targets
from tasks.data.report import DataVerdict

# A class needs a row in each of train, validation and test, plus a couple to learn from.
MIN_ROWS_PER_CLASS = 5


@dataclass(frozen=True)
class CheckedData:
    """The data stage's result: rows that passed the checks, split; the verdict the gate report repeats; the data
    summary stored with the version (the reference later runs measure drift against; None when not made)."""

    splits: DataSplits
    verdict: DataVerdict
    summary: Path | None


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
