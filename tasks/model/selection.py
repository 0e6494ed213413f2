"""model.family auto: train the candidate families within the run's time budget, serve the best on validation rows.

Trees first, then the MLP (or the one family that reads an image or a text); a skewed non-negative target is also
fitted on log(1 + y); a weighted average of the two best is kept when it measures better. Test rows are not used.
"""

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from prefect import task

from tasks.core.config import TrainingConfig
from tasks.core.errors import GreenlightError
from tasks.core.plotting import one_plot_at_a_time
from tasks.core.records import Note, Record, RunLinks
from tasks.core.spec import ModelSpec, Spec
from tasks.data.parts import DataSplits
from tasks.model.evaluation import pyplot
from tasks.model.families import AUTO_FAMILY
from tasks.model.families.ensemble import ensemble_spec
from tasks.model.metrics import MAIN_METRIC, score_outputs
from tasks.model.network import GreenlightModel, load_checkpoint, predict_outputs, save_checkpoint
from tasks.model.training import TrainedModel, train_model

# A candidate is not started with less than this left of the budget: it could not learn anything useful.
MIN_CANDIDATE_SECONDS = 3.0
# A non-negative regression target this skewed (a long right tail) gets the trees fitted on log(1 + y) too; the
# better of the two on the validation rows sets the target every candidate learns (seconds: a second tree fit).
# 1.0: prices and counts (ames' sale price 1.7, diamonds' 1.6, hotel_rates' 1.2); symmetric targets (diabetes'
# 0.4) are left alone.
MIN_LOG_SKEW = 1.0
# Weights tried for the second member of a two-member ensemble (the first gets the rest).
ENSEMBLE_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's validation scores, or why it was not trained."""

    name: str  # a family, or "ensemble: gradient_boosting 0.6 + tabular_mlp 0.4"
    metric: float | None  # the task's main metric on the validation rows (accuracy or R^2)
    loss: float | None  # log loss or mean squared error (in the target's units) on the validation rows
    seconds: float
    note: str = ""  # "served", "skipped: ...", "stopped by the time budget at epoch 40"


@dataclass(frozen=True)
class FamilySelection:
    """The served model of an auto run, the spec it stands for, every candidate's scores, as a table and a plot."""

    trained: TrainedModel
    spec: Spec
    candidates: tuple[CandidateScore, ...]
    metric_name: str  # "accuracy" or "r2"
    table: Path  # candidates.md
    plot: Path  # candidates.png

    @property
    def served(self) -> str:
        return next((c.name for c in self.candidates if c.note == "served"), self.spec.model.family)

    def record(self, links: RunLinks) -> Record:
        """Metrics candidate.<name>.validation_<metric> and .seconds, tag model_family_served, and the table and
        plot (artifacts selection/), also as a Prefect artifact."""
        metrics = {}
        for candidate in self.candidates:
            # "ensemble: gradient_boosting 0.6 + tabular_mlp 0.4" -> candidate.ensemble (MLflow names allow no "+"),
            # "gradient_boosting, log target" -> candidate.gradient_boosting.log_target (nor ",")
            key = "candidate." + candidate.name.split(":")[0].replace(", ", ".").replace(" ", "_")
            if candidate.metric is not None:
                metrics[f"{key}.validation_{self.metric_name}"] = candidate.metric
                metrics[f"{key}.seconds"] = candidate.seconds
        return Record(
            metrics=metrics,
            tags={"model_family_served": self.served, "model_family_requested": "auto"},
            files={"selection": (self.table, self.plot)},
            notes=(Note("family-selection", self.table.read_text(), "model.family auto: candidates"),),
        )

    def table_markdown(self) -> str:
        lines = [
            f"| candidate | validation {self.metric_name} | validation loss | seconds | note |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in self.candidates:
            metric = "-" if c.metric is None else f"{c.metric:.4f}"
            loss = "-" if c.loss is None else f"{c.loss:.4f}"
            lines.append(f"| {c.name} | {metric} | {loss} | {c.seconds:.1f} | {c.note} |")
        return "\n".join(lines)


def candidate_families(spec: Spec) -> list[str]:
    """The families auto trains for this spec's features, in order (the cheapest and likeliest first)."""
    named = {feature.type: feature.proposed_family() for feature in spec.dataset.model_features}
    if "text" in named:  # text as features of the model (beside a table's columns, or alone): n-grams in seconds
        return ["text_ngram"]
    return [family for family in named.values() if family][:1] or ["gradient_boosting", "tabular_mlp"]


def validation_loss(spec: Spec, outputs: np.ndarray, targets: np.ndarray) -> float:
    """Log loss of logits, or mean squared error of predictions, on the validation rows."""
    if spec.dataset.task == "regression":
        return float(np.mean((outputs.reshape(-1) - targets) ** 2))
    logits = torch.from_numpy(outputs.astype(np.float32))
    return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(targets.astype(np.int64))))


def score(spec: Spec, outputs: np.ndarray, splits: DataSplits) -> tuple[float, float]:
    targets = splits.targets("validation")
    metric = score_outputs(splits.spec, outputs, targets).value(MAIN_METRIC[spec.dataset.task])
    return metric, validation_loss(spec, outputs, targets)


def better(a: tuple[float, float], b: tuple[float, float] | None) -> bool:
    """Higher main metric first, lower loss on a tie (validation sets are small: accuracy ties are common)."""
    return b is None or a[0] > b[0] + 1e-9 or (abs(a[0] - b[0]) <= 1e-9 and a[1] < b[1])


@dataclass(frozen=True)
class Trained:
    spec: Spec
    trained: TrainedModel
    outputs: np.ndarray  # validation outputs, in the target's units
    scores: tuple[float, float]


def train_candidate(
    family: str, splits: DataSplits, spec: Spec, config: TrainingConfig, work_dir: Path, seconds_left: float
) -> Trained:
    candidate = spec.model_copy(update={"model": ModelSpec(family=family)})
    budgeted = config.model_copy(update={"time_budget_s": seconds_left})
    folder = work_dir / (family + ("-log" if spec.dataset.target.transform == "log" else ""))
    trained = train_model.fn(splits=splits, spec=candidate, config=budgeted, work_dir=folder)
    outputs = predict_outputs(load_checkpoint(trained.checkpoint_path), splits.feeds("validation"))
    return Trained(candidate, trained, outputs, score(spec, outputs, splits))


def with_log_target(spec: Spec) -> Spec:
    """The spec with its regression target learned as log(1 + y) (TargetSpec.transform)."""
    target = spec.dataset.target.model_copy(update={"transform": "log"})
    return spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"target": target})})


def log_target_worth_trying(spec: Spec, splits: DataSplits) -> bool:
    """A regression target that the spec does not transform already, >= 0 in every training row and skewed to
    the right (a long tail of large values: prices, counts, durations), where fitting log(1 + y) often pays."""
    if spec.dataset.task != "regression" or spec.dataset.target.transform is not None:
        return False
    targets = np.asarray(splits.targets("train"), dtype=np.float64)
    if len(targets) < 3 or float(targets.min()) < 0 or float(targets.std()) == 0:
        return False
    return float(pd.Series(targets).skew()) > MIN_LOG_SKEW


def blend(spec: Spec, first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """The ensemble's outputs from its members' (what WeightedEnsemble computes in the graph)."""
    if spec.dataset.task == "regression":
        return (1 - weight) * first + weight * second
    probabilities = (1 - weight) * softmax(first) + weight * softmax(second)
    return np.log(np.clip(probabilities, 1e-12, None))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def best_blend(spec: Spec, splits: DataSplits, first: Trained, second: Trained) -> tuple[float, tuple[float, float]]:
    """The second member's weight whose blend scores best on the validation rows, and that score."""
    scored = [(w, score(spec, blend(spec, first.outputs, second.outputs, w), splits)) for w in ENSEMBLE_WEIGHTS]
    best = scored[0]
    for weight, scores in scored[1:]:
        if better(scores, best[1]):
            best = (weight, scores)
    return best


def blend_spec(spec: Spec, first: Trained, second: Trained, weight: float) -> Spec:
    """The spec of the blend: the dataset as it is, the ensemble of the two members as its model."""
    return spec.model_copy(
        update={"model": ensemble_spec([(first.spec.model, 1 - weight), (second.spec.model, weight)])}
    )


def save_ensemble(spec: Spec, first: Trained, second: Trained, weight: float, path: Path) -> Path:
    """One checkpoint holding both members' networks over their shared preprocessing."""
    members = [load_checkpoint(first.trained.checkpoint_path), load_checkpoint(second.trained.checkpoint_path)]
    ensemble = GreenlightModel(blend_spec(spec, first, second, weight), members[0].preprocessing)
    for slot, member in enumerate(members):  # the trained networks themselves (a tree ensemble's sizes come along)
        ensemble.network.members[slot] = member.network
    return save_checkpoint(ensemble, ensemble.state_dict(), path)


@task(name="select_family")
def select_family(splits: DataSplits, spec: Spec, config: TrainingConfig, work_dir: Path) -> FamilySelection:
    """Train each candidate family within the time budget; serve the best on validation, or their blend."""
    started = time.monotonic()
    budget = config.time_budget_s or float("inf")
    done: list[Trained] = []
    scores: list[CandidateScore] = []
    families = candidate_families(spec)
    if families[0] == "gradient_boosting" and log_target_worth_trying(spec, splits):
        raw, logged, seconds = compare_log_target(splits, spec, config, work_dir, budget)
        best = logged if better(logged.scores, raw.scores) else raw
        spec = best.spec.model_copy(update={"model": spec.model})  # every later candidate learns this target
        for trained, label in ((raw, "gradient_boosting"), (logged, "gradient_boosting, log target")):
            note = "" if trained is best else "not kept: the other target scored better on validation"
            scores.append(CandidateScore(label, *trained.scores, seconds[trained is logged], note))
        done.append(best)
        families = families[1:]
        print(
            f"model.family auto: the target is learned as {'log(1 + y)' if best is logged else 'it is'}"
            f" (validation {score_label(spec)} {logged.scores[0]:.4f} with log(1 + y), {raw.scores[0]:.4f} without)"
        )
    for family in families:
        left = budget - (time.monotonic() - started)
        if done and left < MIN_CANDIDATE_SECONDS:
            scores.append(
                CandidateScore(
                    family, None, None, 0.0, f"skipped: {max(left, 0):.0f} s of the {budget:.0f} s budget left"
                )
            )
            continue
        began = time.monotonic()
        result = train_candidate(family, splits, spec, config, work_dir, max(left, MIN_CANDIDATE_SECONDS))
        done.append(result)
        scores.append(CandidateScore(family, *result.scores, time.monotonic() - began))
    if not done:
        raise GreenlightError(f"model.family auto trained no candidate family for {candidate_families(spec)}")
    ranked = sorted(done, key=lambda t: (-t.scores[0], t.scores[1]))
    chosen, chosen_scores, name = ranked[0], ranked[0].scores, candidate_name(ranked[0])
    if len(ranked) >= 2:
        weight, blended = best_blend(spec, splits, ranked[0], ranked[1])
        label = f"ensemble: {candidate_name(ranked[0])} {1 - weight:.1f} + {candidate_name(ranked[1])} {weight:.1f}"
        if better(blended, chosen_scores):
            path = save_ensemble(spec, ranked[0], ranked[1], weight, work_dir / "ensemble" / "best.pt")
            spec_of = blend_spec(spec, ranked[0], ranked[1], weight)
            trained = replace(chosen.trained, checkpoint_path=path, family="ensemble")
            chosen, chosen_scores, name = Trained(spec_of, trained, np.empty(0), blended), blended, label
        scores.append(CandidateScore(label, *blended, 0.0))
    scores = [replace(s, note="served") if s.name == name else s for s in scores]
    print(f"model.family auto: serving {name} (validation {score_label(spec)} {chosen_scores[0]:.4f})")
    if chosen.spec.model.family == "gradient_boosting":
        chosen = refit_trees(chosen, splits, config, work_dir / "refit")
        scores = [
            replace(s, note="served (refit on train + validation rows)") if s.note == "served" else s for s in scores
        ]
    return record_selection(chosen, tuple(scores), score_label(spec), work_dir)


def candidate_name(trained: Trained) -> str:
    """The family, and the target's transform when it has one (as the candidates table names it)."""
    log = trained.spec.dataset.target.transform == "log"
    return trained.spec.model.family + (", log target" if log else "")


def compare_log_target(
    splits: DataSplits, spec: Spec, config: TrainingConfig, work_dir: Path, budget: float
) -> tuple[Trained, Trained, tuple[float, float]]:
    """The trees fitted on the target as it is and on log(1 + y), and each fit's seconds."""
    began = time.monotonic()
    raw = train_candidate("gradient_boosting", splits, spec, config, work_dir, budget)
    middle = time.monotonic()
    left = max(budget - (middle - began), MIN_CANDIDATE_SECONDS)
    logged = train_candidate("gradient_boosting", splits, with_log_target(spec), config, work_dir, left)
    return raw, logged, (middle - began, time.monotonic() - middle)


def refit_trees(chosen: "Trained", splits: DataSplits, config: TrainingConfig, work_dir: Path) -> "Trained":
    """The chosen trees grown again on the training and validation rows together, for as many rounds as early
    stopping kept, scaled to the larger set: validation has chosen the family and the rounds, and its rows then
    teach the served model too (a quarter more rows to learn from). The test rows stay unseen for the gate."""
    rows = len(splits.train) + len(splits.validation)
    rounds = max(1, round(chosen.trained.best_epoch * rows / max(len(splits.train), 1)))
    merged = replace(splits, train=pd.concat([splits.train, splits.validation]))
    options = {**chosen.spec.model.options, "max_rounds": rounds, "early_stopping_rounds": rounds}
    spec = chosen.spec.model_copy(update={"model": chosen.spec.model.model_copy(update={"options": options})})
    print(f"gradient_boosting: growing {rounds} rounds again on the {rows:,} training + validation rows")
    refit = train_model.fn(splits=merged, spec=spec, config=config, work_dir=work_dir)
    # The curves shown stay the early-stopped fit's: the refit has no validation rows of its own to plot.
    trained = replace(
        refit,
        history=chosen.trained.history,
        best_epoch=chosen.trained.best_epoch,
        held_out_checkpoint=chosen.trained.checkpoint_path,
    )
    return replace(chosen, spec=spec, trained=trained)


def record_selection(
    chosen: Trained, scores: tuple[CandidateScore, ...], metric_name: str, out_dir: Path
) -> FamilySelection:
    out_dir.mkdir(parents=True, exist_ok=True)
    selection = FamilySelection(
        chosen.trained, chosen.spec, scores, metric_name, out_dir / "candidates.md", out_dir / "candidates.png"
    )
    selection.table.write_text(selection.table_markdown() + "\n")
    plot_candidates(selection, selection.plot)
    return selection


@one_plot_at_a_time
def plot_candidates(selection: FamilySelection, path: Path) -> Path:
    """Each trained candidate's validation score as a bar, the served one highlighted, seconds on each bar."""
    plt = pyplot()
    scored = [c for c in selection.candidates if c.metric is not None]
    figure, axis = plt.subplots(figsize=(7, 0.6 * len(scored) + 1.4))
    colours = ["tab:green" if c.note == "served" else "tab:gray" for c in scored]
    axis.barh([c.name for c in scored], [c.metric for c in scored], color=colours)
    for row, c in enumerate(scored):
        axis.text(c.metric, row, f" {c.metric:.4f} ({c.seconds:.0f} s)", va="center", fontsize=8)
    low = min(c.metric for c in scored)
    axis.set_xlim(max(0.0, low - 0.1) if low > 0 else low - 0.1, 1.05 * max(c.metric for c in scored) + 0.02)
    axis.set_xlabel(f"validation {selection.metric_name} (green: served)")
    axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def score_label(spec: Spec) -> str:
    return MAIN_METRIC[spec.dataset.task].removeprefix("test_")


def is_auto(spec: Spec) -> bool:
    return spec.model.family == AUTO_FAMILY
