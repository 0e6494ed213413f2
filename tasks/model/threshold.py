"""A binary classifier's decision threshold, tuned on the validation rows and served inside the model.

The cut on the class-1 probability with the best minority F1, costing at most MAX_ACCURACY_COST of accuracy, is
kept when it beats argmax by MIN_F1_GAIN, as the model's logit offset [0, logit(t)]; multiclass models keep argmax.
"""

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data.parts import DataSplits
from tasks.model.metrics import minority_class, softmax
from tasks.model.network import GreenlightModel, load_checkpoint, predict_outputs, save_checkpoint
from tasks.model.training import TrainedModel

# Candidate thresholds, even on the logit scale: p from 0.0025 to 0.9975 (a 3 % minority's best cut can sit
# near 0.05, which an even grid in p would barely sample), steps of 0.1 in logit (~2.5 points of p near 0.5).
THRESHOLD_LOGITS = np.arange(-60, 61) / 10.0
# A tuned threshold is kept only when it raises the validation minority F1 by this much over argmax: a
# validation split of ~200 rows holds ~30 minority rows, where one more caught row moves F1 by ~0.02; less
# than that is a cut fitted to those rows, not a better model.
MIN_F1_GAIN = 0.02
# A cut may cost at most this much validation accuracy against argmax (half a point, the margin a served model
# may trail gradient boosting by in issue 21). Without it, on a table the model ranks poorly (ISLR Caravan, ROC
# AUC 0.73) the F1-best cut answers the minority so often that accuracy falls 12 points below argmax's: a trade
# of errors for recall that a user must choose (the costs of each error are theirs), not a default.
MAX_ACCURACY_COST = 0.005


@dataclass(frozen=True)
class ThresholdChoice:
    """The decision threshold a binary model serves and why: tuned on the validation rows, or argmax (0.5)."""

    threshold: float  # the class-1 probability above which class 1 is answered; 0.5 is argmax
    minority: str  # the minority class's label (least frequent in the training targets)
    f1_at_argmax: float  # the minority class's F1 on the validation rows at 0.5
    f1_at_best: float  # ... at the best threshold of the grid (kept or not)
    best: float  # that best threshold
    reason: str

    @property
    def tuned(self) -> bool:
        return self.threshold != 0.5


def minority_f1(class1: np.ndarray, targets: np.ndarray, cuts: np.ndarray, minority: int) -> np.ndarray:
    """The minority class's F1 at each cut, class 1 answered for class-1 probabilities above it (0 where the
    minority is neither answered nor present: sklearn's zero_division=0)."""
    answered = class1[None, :] > cuts[:, None]
    answered = answered if minority == 1 else ~answered
    actual = targets == minority
    hits = (answered & actual).sum(axis=1)
    errors = (answered & ~actual).sum(axis=1) + (~answered & actual).sum(axis=1)
    return np.where(2 * hits + errors > 0, 2 * hits / np.maximum(2 * hits + errors, 1), 0.0)


def tune_threshold(model: GreenlightModel, splits: DataSplits) -> ThresholdChoice:
    """The decision threshold of a binary model, from its outputs on the validation rows (see choose_threshold);
    argmax for any other task."""
    spec = splits.spec
    if spec.task != "classification" or len(spec.label_texts()) != 2:
        return ThresholdChoice(0.5, "", math.nan, math.nan, 0.5, "argmax: thresholds are tuned for two classes")
    offset = model.logit_offset.detach().cpu().numpy().astype(np.float64)
    logits = predict_outputs(model, splits.feeds("validation")).astype(np.float64) + offset  # before any offset
    minority = minority_class(splits.targets("train"), 2)
    return choose_threshold(softmax(logits)[:, 1], splits.targets("validation"), minority, spec.label_texts())


def choose_threshold(class1: np.ndarray, targets: np.ndarray, minority: int, labels: list[str]) -> ThresholdChoice:
    """The cut on the class-1 probabilities that maximises the minority class's F1 on these rows among those
    costing at most MAX_ACCURACY_COST of accuracy against 0.5; 0.5 unless it gains MIN_F1_GAIN over 0.5.

    Why the minority's F1 and not balanced accuracy: balanced accuracy's best cut sits near the minority's
    share, where a 3 % minority is answered for many majority rows and accuracy falls well below argmax's;
    the minority's F1 weighs its recall against its precision, so it catches more of the minority at a cost
    in accuracy of a few rows, not tens of points. Ties go to the cut nearest 0.5 (the least move from argmax).
    """
    cuts = 1.0 / (1.0 + np.exp(-THRESHOLD_LOGITS))
    accuracy = ((class1[None, :] > cuts[:, None]) == (targets == 1)).mean(axis=1)
    at_argmax_accuracy = float(np.mean((class1 > 0.5) == (targets == 1)))
    # Argmax itself is always eligible (a cut within round-off of 0.5 answers the same rows).
    eligible = accuracy >= at_argmax_accuracy - MAX_ACCURACY_COST - 1e-12
    scores = np.where(eligible, minority_f1(class1, targets, cuts, minority), -1.0)
    ties = np.flatnonzero(scores == scores.max())
    chosen = int(ties[np.argmin(np.abs(THRESHOLD_LOGITS[ties]))])
    best = float(cuts[chosen])
    at_argmax, at_best = float(minority_f1(class1, targets, np.array([0.5]), minority)[0]), float(scores.max())
    rows = f"{len(targets)} validation rows, {int(np.sum(targets == minority))} of minority class {labels[minority]!r}"
    if at_best - at_argmax < MIN_F1_GAIN:
        why = f"argmax: the best threshold {best:.3f} moves minority F1 {at_argmax:.3f} -> {at_best:.3f} on {rows}"
        return ThresholdChoice(0.5, labels[minority], at_argmax, at_best, best, f"{why}, under {MIN_F1_GAIN}")
    why = (
        f"threshold {best:.3f} on p({labels[1]}): minority F1 {at_argmax:.3f} -> {at_best:.3f}, accuracy"
        f" {at_argmax_accuracy:.4f} -> {accuracy[chosen]:.4f} on {rows}"
    )
    return ThresholdChoice(best, labels[minority], at_argmax, at_best, best, why)


def set_threshold(model: GreenlightModel, threshold: float) -> GreenlightModel:
    """Serve `threshold` on the class-1 probability: the logit offset [0, logit(t)] (0.5 -> zeros, argmax)."""
    offset = torch.zeros_like(model.logit_offset)
    if threshold != 0.5:
        offset[1] = math.log(threshold / (1.0 - threshold))
    model.logit_offset.copy_(offset)
    return model


@task(name="tune_decision_threshold", cache_policy=NO_CACHE)
def tune_decision_threshold(trained: TrainedModel, splits: DataSplits) -> tuple[TrainedModel, ThresholdChoice]:
    """After training (or the choice of a family), before evaluation and export: the served model's decision
    threshold tuned on the validation rows, from the outputs of a model that did not learn them (the trained one,
    or for a refit on train + validation its held-out twin: a refit's own outputs on rows it learned are surer
    than on new rows, and the cut tuned on them answers the minority far too often; ISLR Default: test accuracy
    0.969 -> 0.954 where the held-out twin's cut keeps 0.968). A tuned threshold is written into a new
    checkpoint beside the served one (thresholded.pt), which the returned TrainedModel names; evaluation, ONNX,
    compression and the gate then all judge the model that answers. Argmax keeps the checkpoint as it is."""
    choice = tune_threshold(load_checkpoint(trained.held_out_checkpoint or trained.checkpoint_path), splits)
    print(f"decision threshold: {choice.reason}")
    if not choice.tuned:
        return trained, choice
    model = load_checkpoint(trained.checkpoint_path)
    path = trained.checkpoint_path.with_name("thresholded.pt")
    save_checkpoint(set_threshold(model, choice.threshold), model.state_dict(), path)
    return replace(trained, checkpoint_path=path), choice
