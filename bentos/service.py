"""BentoML service answering POST /predict with the ONNX digits model its bento was built for.

The model is pinned per bento by the bento argument `model_tag`: `python -m bentos.build` passes it at
build time, BentoML stores it in the bento's bento.yaml and restores it before importing this module
when the bento is served, so `bentoml serve digits_classifier:v3-...` always answers with version 3
(a `--arg model_tag=...` given to it is ignored). Serving the source tree instead needs the argument:
`bentoml serve bentos.service:DigitsClassifier --arg model_tag=digits-classifier:v3-5e6f7a8b`.
"""

from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
import onnxruntime as ort
import yaml
from pydantic import BaseModel, Field

from tasks.schema import LABELS, N_FEATURES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, PIXEL_MAX, PIXEL_MIN

# Larger batches belong to a batch job, not a synchronous HTTP call; the cap bounds request memory.
MAX_ROWS = 4096

# strict: "3" or true is a client bug, not a pixel; NaN/inf would silently poison the logits.
Pixel = Annotated[float, Field(strict=True, ge=PIXEL_MIN, le=PIXEL_MAX, allow_inf_nan=False)]
Row = Annotated[list[Pixel], Field(min_length=N_FEATURES, max_length=N_FEATURES)]
Rows = Annotated[
    list[Row],
    Field(min_length=1, max_length=MAX_ROWS, description="rows of 64 pixel values 0..16, pixel_0_0..pixel_7_7"),
]


class PinnedModel(BaseModel):
    """Bento argument fixed at build time: the BentoML model tag this bento serves."""

    model_tag: str


class Prediction(BaseModel):
    """One label and one probability vector per input row, with the model version that made them."""

    labels: list[int]
    probabilities: list[list[float]]
    model_version: str
    model_name: str


def onnx_file(mlflow_model_dir: Path) -> Path:
    """The .onnx file that MLflow's onnx flavor recorded in the MLmodel file."""
    mlmodel = yaml.safe_load((mlflow_model_dir / "MLmodel").read_text())
    return mlflow_model_dir / mlmodel["flavors"]["onnx"]["data"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting the row max keeps exp() from overflowing."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@bentoml.service(traffic={"timeout": 30})
class DigitsClassifier:
    """Digits classifier backed by one registered MLflow model version, run with onnxruntime."""

    bento_model = bentoml.models.BentoModel(bentoml.use_arguments(PinnedModel).model_tag)

    def __init__(self) -> None:
        # bentoml.mlflow.import_model stores the MLflow model directory under "mlflow_model".
        path = onnx_file(Path(self.bento_model.path_of("mlflow_model")))
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.model_name = self.bento_model.info.labels["model_name"]
        self.model_version = self.bento_model.info.labels["model_version"]

    @bentoml.api
    def predict(self, rows: Rows) -> Prediction:
        """Classify each row of raw 0..16 pixel values."""
        pixels = np.asarray(rows, dtype=np.float32)
        (logits,) = self.session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: pixels})
        probabilities = softmax(logits.astype(np.float64))
        return Prediction(
            labels=[LABELS[i] for i in probabilities.argmax(axis=1)],
            probabilities=probabilities.tolist(),
            model_version=self.model_version,
            model_name=self.model_name,
        )
