"""The one run configuration: the training flow's parameter, rendered as a form in the Prefect UI."""

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    # Unknown keys are typos ("learnig_rate"); refusing them beats silently training with defaults.
    model_config = ConfigDict(extra="forbid")


class SplitConfig(_Section):
    """How the data is split into train / validation / test, stratified by label."""

    validation_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    seed: int = 42


class TrainingConfig(_Section):
    """Hyper-parameters of the CNN and its optimiser."""

    max_epochs: int = Field(40, ge=1, le=1000)
    batch_size: int = Field(64, ge=1, le=4096)
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    # Stop after this many epochs without a lower validation loss; the best checkpoint is kept.
    patience: int = Field(6, ge=1)
    seed: int = 42
    # Train on a random permutation of the labels: a deliberately useless model, for gate drills.
    shuffle_labels: bool = False


class CompressionConfig(_Section):
    """INT8 post-training quantization with ONNX Runtime."""

    # A candidate may lose at most this many accuracy points against the fp32 model.
    accuracy_budget_points: float = Field(0.5, ge=0.0, le=100.0)
    # ...and may be at most this many times slower per batch than fp32: ORT's dynamic INT8 Conv
    # (ConvInteger) is ~10x slower than fp32 on CPU, which no size saving pays for.
    max_latency_ratio: float = Field(1.0, gt=0.0)
    calibration_rows: int = Field(512, ge=16)
    latency_batch_size: int = Field(64, ge=1)


class GateConfig(_Section):
    """What a candidate must reach before the `production` alias moves to it."""

    min_test_accuracy: float = Field(0.95, ge=0.0, le=1.0)
    # fp32 ONNX vs PyTorch on the test set: float32 round-off is ~1e-6, a real export bug is >> 1e-4.
    max_parity_logit_diff: float = Field(1e-4, gt=0.0)
    min_parity_agreement: float = Field(1.0, ge=0.0, le=1.0)
    # The candidate may be at most this many accuracy points below production on the same test rows.
    max_regression_points: float = Field(0.5, ge=0.0, le=100.0)


class RunConfig(_Section):
    """Everything one training run needs; where things live comes from the environment instead."""

    data_path: str | None = Field(
        None, description="CSV or Parquet file with pixel_0_0..pixel_7_7 and target; empty = bundled digits"
    )
    model_name: str = Field("digits-classifier", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    experiment_name: str = Field("greenlight", min_length=1)
    split: SplitConfig = SplitConfig()
    training: TrainingConfig = TrainingConfig()
    compression: CompressionConfig = CompressionConfig()
    gate: GateConfig = GateConfig()
