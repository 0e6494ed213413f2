"""The one run configuration: the training flow's parameter, rendered as a form in the Prefect UI."""

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tasks.core.spec import ModelSpec


class _Section(BaseModel):
    # Unknown keys are typos ("learnig_rate"); refusing them beats silently training with defaults.
    # An infinite or NaN setting (weight_decay: .inf) has no meaning: refused here, not found as a NaN loss.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_no_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """`max_epochs: true` is not 1 epoch: a yes/no where a number belongs is a mistake, not a value."""
        if isinstance(value, bool) and not accepts_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(value).lower()} is a yes/no value; this setting takes a number")
        return value


def accepts_bool(annotation: Any) -> bool:
    """Whether a field's type admits a bool (bool itself, or a union or Literal holding one)."""
    if annotation is bool:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(accepts_bool(arg) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(arg, bool) for arg in typing.get_args(annotation))
    return annotation is Any


class SplitConfig(_Section):
    """How the data is split into train / validation / test (stratified by label for classification)."""

    validation_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    seed: int = 42


class DistributedConfig(_Section):
    """Data-parallel training (torch DistributedDataParallel) launched by torchrun: one process per GPU, or per
    group of CPU cores; each sees its own shard of every epoch and the gradients are averaged."""

    # 1 = train in the flow's own process. Above 1: gloo on CPU, NCCL on GPU (one GPU per process).
    nproc_per_node: int = Field(1, ge=1, le=64)


class TrainingConfig(_Section):
    """Hyper-parameters of the optimiser; the network itself is the spec's model family."""

    # Empty = the family's own default (tabular networks on small tables need more passes than the CNN).
    max_epochs: int | None = Field(None, ge=1, le=5000)
    batch_size: int = Field(64, ge=1, le=4096)
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    # Stop after this many epochs without a lower validation loss; the best checkpoint is kept.
    patience: int | None = Field(None, ge=1, description="empty = the family's default")
    seed: int = 42
    # Train on a random permutation of the labels: a deliberately useless model, for gate drills.
    shuffle_labels: bool = False
    distributed: DistributedConfig = DistributedConfig()
    # On a GPU, batch_size x this rows per step (a 64-row step leaves a GPU mostly idle), with the learning rate
    # scaled by its square root (the usual rule for Adam-type optimisers), but only when an epoch keeps at least
    # 16 such steps: a small table learns from the number of steps, not their width. 1 = the CPU recipe.
    gpu_batch_multiplier: int = Field(4, ge=1, le=64)
    # torch.compile the network for training. auto: on a GPU, for networks of 1M+ trainable parameters in one
    # process (benchmarks/training_throughput.py measures what it pays); smaller ones wait on kernel launches,
    # and the compile's tracing (tens of seconds) would not pay back. Never on CPU in auto.
    compile: Literal["auto", "on", "off"] = "auto"
    # Seconds a run's training may take: model.family auto's candidates share it (trees first, in seconds; the
    # MLP then stops at its best epoch so far when the rest is spent), and every fit (a sweep's trial, a
    # fine-tune, a distillation) stops there too, measuring its epochs' pace and saying what the budget affords.
    # A minute: a table's answer in about a minute on a 2-core laptop; raise it for a larger search, or for a
    # pretrained encoder fine-tuned on a CPU.
    time_budget_s: float | None = Field(60.0, ge=1.0, description="seconds of training; empty = no limit")


class PruningConfig(_Section):
    """Structured pruning with torch-pruning: whole neurons, convolution channels and attention heads removed
    (the network gets narrower, so it is smaller and faster, unlike masking), then a short fine-tune."""

    # auto: as the model family says (Family.compression): the digits CNN and the pretrained encoder always; a
    # table's network only when its fp32 file misses a goal (compression.goals); a tree ensemble never.
    # always / never: regardless of the goals (a family with nothing to prune is still never pruned).
    when: Literal["auto", "always", "never"] = "auto"
    # Share of each prunable layer's neurons / channels / heads removed, one candidate per level; empty = none.
    # The output layer, embeddings and frozen parts are never pruned.
    levels: tuple[float, ...] = Field((0.3, 0.6), max_length=6)
    # Epochs of fine-tuning after pruning (the best on validation loss kept); empty = a tenth of the family's
    # training epochs, at least 2 (tables 30, CNN 4, text transformer 4, pretrained encoder 2).
    fine_tune_epochs: int | None = Field(None, ge=0, le=1000)

    @field_validator("levels")
    @classmethod
    def _levels_are_shares(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < level < 1.0 for level in levels):
            raise ValueError(f"pruning levels are shares of each layer removed, each above 0 and below 1: {levels}")
        if len(set(levels)) != len(levels):
            raise ValueError(f"pruning levels repeat a level: {levels}")
        return levels


class DistillationConfig(_Section):
    """Knowledge distillation: a smaller student of the same task trained on the trained model's (the
    teacher's) softened outputs and the labels (Hinton et al. 2015)."""

    # auto: as the model family says (Family.compression), like compression.pruning.when; always / never: regardless
    # of the goals (a family with no student is still never distilled).
    when: Literal["auto", "always", "never"] = "auto"
    enabled: bool = Field(True, description="false = when: never (the older switch, still read)")
    # Both models' logits are divided by this before the softmax: above 1 the teacher's near-misses (which
    # wrong label it found plausible) carry signal; 2-5 is the usual range.
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    # Weight of the teacher's soft targets in the loss; 1 - alpha goes to the labels. Regression: the student
    # fits alpha of the teacher's predictions and 1 - alpha of the targets (squared error on both).
    alpha: float = Field(0.7, ge=0.0, le=1.0)
    # Text only: this many altered copies of each training text join the student's training rows, labelled by
    # the teacher (15% of tokens replaced by others from the corpus; Tang et al. 2019): a few thousand texts
    # teach a student little, the teacher's answers on variations of them much more.
    text_copies: int = Field(4, ge=0, le=32)
    # Empty = the student family's own training epochs (tables 300, CNN 40, text 40), early-stopped.
    max_epochs: int | None = Field(None, ge=1, le=5000)
    # Empty = the teacher family's own student (a narrower MLP or CNN; a small text transformer for the
    # pretrained encoder). A custom family names no student: set one here to distil it.
    student: ModelSpec | None = Field(None, description="empty = the family's own smaller student")


class CompressionGoals(_Section):
    """What the served file must meet. In auto (compression.pruning.when / distillation.when), a table's network
    is pruned and distilled only when its fp32 file misses one of these: a smaller model that nobody needs costs
    minutes of fine-tuning and risks answers. INT8 files are made either way (seconds) and served only within
    the budgets below."""

    # Empty = the gate's size bar (gate.max_model_size_bytes, else the model family's: 10 MB for tables and
    # images): a file under it already passes the gate, and a smaller one gains nothing a deployment asked for.
    max_bytes: int | None = Field(None, ge=1, description="empty = the gate's size bar")
    # The fp32 file's median time for one row (batch 1) on the validation rows. BentoML itself takes ~2-5 ms a
    # request here (gate.serving): a model faster than that cannot make a request noticeably faster by shrinking.
    max_latency_ms: float = Field(5.0, gt=0.0)


class CompressionConfig(_Section):
    """Smaller candidates of the trained model (pruned, distilled, INT8 from ONNX Runtime), and the choice
    among them on the validation rows."""

    goals: CompressionGoals = CompressionGoals()

    # A candidate may lose at most this many points of the task's main metric (accuracy, or R^2 x 100)
    # against the fp32 model.
    accuracy_budget_points: float = Field(0.5, ge=0.0, le=100.0)
    # ...and may be at most this many times slower per batch than fp32: ORT's dynamic INT8 Conv
    # (ConvInteger) is ~10x slower than fp32 on CPU, which no size saving pays for. 1.1, not 1.0: medians of
    # files timed turn about still differ by a few percent run to run, and a tie must not serve fp32.
    max_latency_ratio: float = Field(1.1, gt=0.0)
    calibration_rows: int = Field(512, ge=16)
    latency_batch_size: int = Field(64, ge=1)
    # What the served candidate is the best of, among those within the budgets: the smallest file (size), or
    # the fastest single request (latency, batch 1).
    objective: Literal["size", "latency"] = "size"
    pruning: PruningConfig = PruningConfig()
    distillation: DistillationConfig = DistillationConfig()


Metric = Literal["test_accuracy", "test_macro_f1", "test_min_class_recall", "test_r2", "test_rmse", "test_mae"]
LOWER_IS_BETTER = frozenset({"test_rmse", "test_mae"})


class ChangeThreshold(_Section):
    """A candidate-vs-production rule on one metric, both scored on the same test rows (like MLflow's
    MetricThreshold): candidate - production >= min_absolute_change, and
    (candidate - production) / production >= min_relative_change; signs flip when lower is better."""

    metric: Metric
    greater_is_better: bool | None = Field(None, description="empty = from the metric (rmse, mae: lower)")
    # Negative = a tolerated regression: -0.005 lets a nightly retrain on fresher data replace
    # production unless it is more than 0.5 accuracy points worse.
    min_absolute_change: float | None = -0.005
    min_relative_change: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER if self.greater_is_better is None else self.greater_is_better


class ServingCheckConfig(_Section):
    """The built bento, started on 127.0.0.1 before promotion: ready, correct, and fast enough."""

    enabled: bool = True
    known_batch_rows: int = Field(64, ge=1, le=4096)
    load_requests: int = Field(200, ge=10, le=100_000)
    load_concurrency: int = Field(4, ge=1, le=256)
    # BentoML 1.4 answers a 1-row request in ~2-5 ms here; 100 ms catches a broken or swapping server.
    max_p99_latency_ms: float = Field(100.0, gt=0.0)
    startup_timeout_s: float = Field(120.0, gt=0.0)


class ShadowGateConfig(_Section):
    """Shadow evidence a candidate must show before promotion: its answers to live requests beside production's
    (`greenlight shadow VERSION` on a running service; tasks/monitoring/shadow_evidence.py)."""

    # 0: not required. A training run has no live traffic yet, so a version judged with min_requests > 0 is
    # registered but not promoted; `greenlight promote VERSION` re-judges it once enough requests were shadowed.
    min_requests: int = Field(0, ge=0)
    # Share of shadowed rows where the candidate answered as production did (same label; regression: within
    # bentos/shadow.py's tolerance). 0.0: any agreement, the requests alone are the bar.
    min_agreement: float = Field(0.0, ge=0.0, le=1.0)


class GateConfig(_Section):
    """What a candidate must reach before the `production` alias moves to it. All comparisons inclusive."""

    # Absolute thresholds: off by default, because "accuracy >= 0.95" means nothing for a table nobody
    # calibrated. Set the ones that your problem has a known bar for.
    min_test_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    min_test_macro_f1: float | None = Field(None, ge=0.0, le=1.0)
    min_class_recall: float | None = Field(None, ge=0.0, le=1.0)
    min_test_r2: float | None = Field(None, le=1.0)
    max_test_rmse: float | None = Field(None, gt=0.0)
    max_test_mae: float | None = Field(None, gt=0.0)
    # The default bar for any table: remove at least this share of the trivial baseline's error on the
    # same test rows (majority class: 1 - its baseline_metric; mean prediction: its RMSE). 0.1 = 10% fewer errors.
    min_gain_over_baseline: float = Field(0.1, ge=0.0, lt=1.0)
    # What classification is judged on against the majority class; every choice but accuracy is one the
    # majority model cannot pass, however rare the other classes are.
    # auto: roc_auc for two classes, balanced_accuracy for more.
    # roc_auc: how well the scores rank the classes, whatever the decision threshold; constant scores rank
    #   nothing (0.50, bar 0.55). On a table a model ranks usefully but not sharply (lending_club: 5 % bad
    #   loans, ROC AUC 0.73), no threshold within half a point of argmax's accuracy lifts balanced accuracy past
    #   0.52: balanced accuracy would refuse every model there, gradient boosting's included.
    # balanced_accuracy (mean recall over the classes): the majority model scores 1 / n_classes (binary: 0.50,
    #   bar 0.55); judges the decisions the service answers.
    # accuracy lets the majority model reach 0.97 on a 3 % minority, and refuses a model that catches the
    #   minority at the cost of a few majority rows; choose it only where every error costs the same.
    baseline_metric: Literal["auto", "roc_auc", "balanced_accuracy", "accuracy"] = "auto"
    # fp32 ONNX vs PyTorch on the test set, on logits (classification) or on predictions divided by the
    # target's standard deviation (regression): float32 round-off is ~1e-6, a real export bug is >> 1e-4.
    max_parity_diff: float = Field(1e-4, gt=0.0)
    min_parity_agreement: float = Field(1.0, ge=0.0, le=1.0)
    # The served candidate may lose at most this many points of the main metric against its own fp32 model.
    max_compression_loss_points: float = Field(0.5, ge=0.0, le=100.0)
    # None: the model family's own bar, far above what it exports, so only something other than the model trips
    # it (10 MB for tables and images, whose networks are < 1 MB; 60 MB text_transformer; 150 MB
    # pretrained_encoder, 91 MB fp32). Set it to your deployment's limit.
    max_model_size_bytes: int | None = Field(None, ge=1)
    # Empty = the task's default: accuracy may drop at most 0.5 points, R^2 at most 0.01, vs production.
    change_thresholds: list[ChangeThreshold] | None = None
    first_run_policy: Literal["promote_if_thresholds_pass", "never_promote"] = "promote_if_thresholds_pass"
    # Production answers another spec that cannot score this run's test rows (labels it never learned, a column it
    # reads gone or ignored): the candidate cannot be compared with it, and is refused unless this says the new
    # spec is meant (`greenlight run --accept-new-spec`); it is then judged on the other checks alone.
    accept_new_spec: bool = False
    serving: ServingCheckConfig = ServingCheckConfig()
    # Pause before promotion until a person approves or rejects in the Prefect UI (typed input form). A run can only
    # add this: a model whose approval policy (`greenlight policy`) requires approval pauses whatever this says, for
    # the policy's timeout.
    require_approval: bool = False
    approval_timeout_s: int = Field(3600, ge=10)
    shadow: ShadowGateConfig = ShadowGateConfig()


class ValidationConfig(_Section):
    """The expectation suite the input file must pass before anything is trained."""

    suite_path: str | None = Field(
        None, description="expectation suite JSON; empty = the suite generated from the spec (tasks.data.suite)"
    )
    # Exact repeats beyond this share of the rows reject the file: they leak between the train and test
    # splits and inflate the accuracy the gate trusts. The bundled digits have none.
    max_duplicate_share: float = Field(0.1, ge=0.0, le=1.0)


class DriftConfig(_Section):
    """Drift of the input against the production version's training data: PSI per column and on the target.

    PSI per column over the reference's bins (numeric: deciles + missing; categorical/binary: categories +
    unseen + missing; pixel grid: each integer value; target: labels or deciles), counts smoothed by +0.5.
    Chance alone (benchmarks/drift_chance.py, 95th percentile of 200 resamples): largest feature PSI 0.24
    wine / 0.22 penguins / 0.35 digits at 100 rows, 0.08 / 0.08 / 0.13 at 300; target <= 0.06 / 0.08 / 0.18
    at 100 rows. Real changes: a 1-SD shift ~1.0, 10% of rows in an unseen category ~0.4, a class removed
    ~2, inverted digits 10+. The defaults warn above chance and block only far drift.
    """

    enabled: bool = True
    feature_warn_psi: float = Field(0.4, gt=0.0)
    feature_block_psi: float = Field(1.0, gt=0.0)
    label_warn_psi: float = Field(0.15, gt=0.0)
    # Dropping half of the digits scores ~2.9; one digit down to a fifth of its rows ~0.2 (a warning).
    label_block_psi: float = Field(0.5, gt=0.0)
    # How many of the most drifted features the console message lists (the report lists them all).
    top_features: int = Field(5, ge=1, le=64)

    @model_validator(mode="after")
    def _warn_below_block(self) -> "DriftConfig":
        for name in ("feature", "label"):
            warn, block = getattr(self, f"{name}_warn_psi"), getattr(self, f"{name}_block_psi")
            if warn > block:
                raise ValueError(f"{name}_warn_psi ({warn}) must not exceed {name}_block_psi ({block})")
        return self


class FloatRange(_Section):
    """A number from low to high; log: spread evenly over the orders of magnitude (steps, decays)."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _a_range(self) -> "FloatRange":
        check_range(self.low, self.high, self.log)
        return self


class IntRange(_Section):
    """A whole number from low to high, every `step`; log: spread evenly over the orders of magnitude."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _a_range(self) -> "IntRange":
        check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("an int range is either log or stepped (step > 1), not both")
        return self


class Choice(_Section):
    """One of the listed values: numbers, text, yes/no, or lists of numbers (a network's layer widths)."""

    type: Literal["choice"]
    choices: list[Any] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _plain_values(cls, choices: list[Any]) -> list[Any]:
        plain = (type(None), bool, int, float, str)
        for choice in choices:
            if not isinstance(choice, plain) and not (
                isinstance(choice, list) and all(isinstance(item, plain) for item in choice)
            ):
                raise ValueError(f"choice {choice!r} is not a number, text, yes/no, or a list of those")
        if len({repr(choice) for choice in choices}) != len(choices):
            raise ValueError(f"choices list a value twice: {choices}")
        return choices


def check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low {low} is above high {high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low above 0 (got {low})")


# Picked by the entry's own type (a callable discriminator: the sections' before-validator rules out a plain one).
Distribution = Annotated[
    Annotated[FloatRange, Tag("float")] | Annotated[IntRange, Tag("int")] | Annotated[Choice, Tag("choice")],
    Discriminator(lambda entry: entry.get("type") if isinstance(entry, dict) else getattr(entry, "type", None)),
]
DISTRIBUTIONS = {"float": FloatRange, "int": IntRange, "choice": Choice}
# The training settings a sweep may vary; the model family's options go under "model.options.<option>".
TUNABLE_TRAINING = ("learning_rate", "weight_decay", "batch_size", "patience", "max_epochs")
MODEL_OPTION = "model.options."


def check_space_entry(name: str, distribution: FloatRange | IntRange | Choice) -> None:
    """A space entry names a tunable training setting (every value it can draw valid there) or a model option (the
    family checks those when the sweep starts: the family is known only once the spec is)."""
    if name.startswith(MODEL_OPTION) and name.removeprefix(MODEL_OPTION).isidentifier():
        return
    setting = name.removeprefix("training.")
    if not name.startswith("training.") or setting not in TUNABLE_TRAINING:
        known = ", ".join(f"training.{s}" for s in TUNABLE_TRAINING)
        raise ValueError(f"'{name}' is not a setting a sweep can vary; use {known}, or model.options.<option>")
    if isinstance(distribution, FloatRange) and TrainingConfig.model_fields[setting].annotation is not float:
        raise ValueError(f"'{name}' takes whole numbers: give it type int or choice, not float")
    values = distribution.choices if isinstance(distribution, Choice) else [distribution.low, distribution.high]
    for value in values:
        try:
            TrainingConfig.model_validate({setting: value})
        except ValidationError as error:
            raise ValueError(f"'{name}' can draw {value!r}: {error.errors()[0]['msg']}") from None


class SweepConfig(_Section):
    """A hyper-parameter sweep: an Optuna study of `trials` trainings, each with settings drawn from `space`, bad
    ones pruned early; the best trial's model (lowest validation loss) goes on through the pipeline."""

    # 0 = no sweep: one training with the settings above. On a study that already has trials (the same name and
    # storage: a resumed sweep, or another worker's), the total of trials it should end with.
    trials: int = Field(0, ge=0, le=10_000)
    # Setting -> distribution: training.<setting> or model.options.<option of the family>. The default is not
    # tuned to any dataset: AdamW's usual decades around the 2e-3 default, decay from negligible to strong, and
    # batch sizes around the default 64. A space written here replaces it whole.
    space: dict[str, Distribution] = Field(
        default_factory=lambda: {
            "training.learning_rate": FloatRange(type="float", low=1e-4, high=1e-2, log=True),
            "training.weight_decay": FloatRange(type="float", low=1e-6, high=1e-2, log=True),
            "training.batch_size": Choice(type="choice", choices=[32, 64, 128]),
        },
        min_length=1,
    )
    # Trials trained at once, in threads of the flow's process. 1 on a 2-core CPU: a small network's step is
    # mostly Python and the GIL, so two trials at once take about as long as one after the other.
    concurrency: int = Field(1, ge=1, le=64)
    # median: stop a trial whose validation loss is worse than the median of earlier trials at the same epoch;
    # hyperband: successive halving over epochs; none: every trial trains until early stopping.
    pruner: Literal["median", "hyperband", "none"] = "median"
    # Trials that finish before the median pruner judges any, and epochs every trial trains before it can be
    # pruned (the first epochs' validation loss says little about the last's).
    startup_trials: int = Field(5, ge=0, le=1000)
    warmup_epochs: int = Field(10, ge=0, le=5000)
    # After the warm-up, a trial asks the pruner every this many epochs. Each ask reads the trial back from the
    # study's database (~6 ms on SQLite): asked every epoch, it took a third of a sweep of 2-20 ms table epochs.
    prune_interval_epochs: int = Field(5, ge=1, le=1000)
    seed: int = Field(42, description="the sampler's seed (TPE)")
    study_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="empty = the model name and a fingerprint of the data and settings",
    )
    timeout_s: float | None = Field(None, gt=0, description="start no trial after this many seconds; empty = none")

    @field_validator("space", mode="before")
    @classmethod
    def _typed_entries(cls, space: Any) -> Any:
        """Each entry says its type: {low: 0, high: 1} could mean the whole numbers 0 and 1 or anything between."""
        for name, entry in space.items() if isinstance(space, dict) else ():
            kind = entry.get("type") if isinstance(entry, dict) else None
            if isinstance(entry, dict) and kind not in DISTRIBUTIONS:
                raise ValueError(
                    f"'{name}' needs type: float (low, high, log), int (low, high, step, log) or choice (choices);"
                    f" got {entry}"
                )
        return space

    @field_validator("space")
    @classmethod
    def _known_settings(cls, space: dict[str, Any]) -> dict[str, Any]:
        for name, distribution in space.items():
            check_space_entry(name, distribution)
        return space


class RunConfig(_Section):
    """Everything one training run needs; where things live comes from the environment instead."""

    data_path: str | None = Field(None, description="CSV or Parquet file, any columns; empty = the bundled digits")
    target: str | None = Field(None, description="the column to predict (with data_path, unless spec_path names it)")
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: classification unless the target is numeric with many distinct values"
    )
    spec_path: str | None = Field(None, description="a reviewed spec YAML (`greenlight init`); empty = inferred")
    model_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="registered model name; empty = digits-classifier, or the data file's name",
    )
    model_family: str | None = Field(
        None,
        min_length=1,
        description="train this model family instead of the spec's (auto, gradient_boosting, tabular_mlp, ...)",
    )
    experiment_name: str = Field("greenlight", min_length=1)
    split: SplitConfig = SplitConfig()
    training: TrainingConfig = TrainingConfig()
    compression: CompressionConfig = CompressionConfig()
    gate: GateConfig = GateConfig()
    validation: ValidationConfig = ValidationConfig()
    drift: DriftConfig = DriftConfig()
    sweep: SweepConfig = SweepConfig()

    @model_validator(mode="after")
    def _target_names_a_column_of_the_data(self) -> "RunConfig":
        # Refused here, before a flow run starts, rather than seconds later inside it.
        if self.target and not self.data_path and not self.spec_path:
            raise ValueError("target needs data_path: the table whose column it names")
        if self.sweep.trials and self.training.distributed.nproc_per_node > 1:
            # A trial reports each epoch to its pruner from the flow's process; torchrun's processes cannot (yet).
            raise ValueError("sweep.trials and training.distributed.nproc_per_node > 1 do not go together (yet)")
        return self
