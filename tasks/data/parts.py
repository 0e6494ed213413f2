"""The three parts of a dataset (train / validation / test) as raw frames; imports no Prefect, so the
processes torchrun starts and GPU machines without the pipeline's stack can read them."""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from tasks.core.errors import DataRejected
from tasks.core.spec import DatasetSpec, value_text

Part = Literal["train", "validation", "test"]


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
