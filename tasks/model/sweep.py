"""Hyper-parameter sweeps: an Optuna study whose trials are Prefect tasks, each a training with settings drawn
from the search space (RunConfig.sweep), stopped early by Optuna's pruner when its validation loss lags.

The study lives in its own database (Locations.study_storage), so a sweep resumes and workers can share it;
run_trials asks for a trial only when a slot is free and trains at most `concurrency` at once (docs/scaling.md).
"""

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.core.config import MODEL_OPTION, Choice, FloatRange, IntRange, RunConfig, SweepConfig, TrainingConfig
from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.core.plotting import one_plot_at_a_time
from tasks.core.processes import current_owner, is_dead, read_owner
from tasks.core.records import ChildRecord, Link, Note, Record, RunLinks
from tasks.core.spec import ModelSpec, Spec
from tasks.data.parts import DataSplits
from tasks.model.evaluation import pyplot
from tasks.model.families import AUTO_FAMILY, get_family
from tasks.model.loop import EpochMetrics, epoch_curves, pick_device, train_on_device
from tasks.model.network import save_checkpoint
from tasks.model.resolve import ResolvedDataset
from tasks.model.training import TrainedModel, trained_model

Outcome = Literal["complete", "pruned", "failed"]
OPTUNA_STATES: dict[Outcome, TrialState] = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "failed": TrialState.FAIL,
}
SETTINGS_ATTR = "greenlight.settings"  # on the study: fingerprints of what its trials' values depend on
OWNER_ATTR = "greenlight.owner"  # on each trial: the process training it


@dataclass(frozen=True)
class StudyRef:
    """A study, named by its storage and name; `storage` may hold a password: show `shown_storage` instead."""

    storage: str
    name: str
    trials_before: int  # trials it had already ended with when this run opened it (a resumed sweep)

    @property
    def shown_storage(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.storage).render_as_string(hide_password=True)


@dataclass(frozen=True)
class TrialResult:
    """One trial's outcome: its settings, how it ended, its value (the lowest validation loss; a pruned trial's
    last reported one) and, when it completed, its best checkpoint."""

    number: int
    params: dict[str, Any]  # as the study holds them (a choice that is a list stands as its JSON text)
    state: Outcome
    value: float | None
    history: tuple[EpochMetrics, ...]
    trained: TrainedModel | None
    started: float  # wall clock, seconds
    finished: float
    error: str | None = None


@dataclass(frozen=True)
class SweepResult:
    """What a sweep found: the best trial of the whole study, and the spec and settings to go on with."""

    study: StudyRef
    trials: tuple[TrialResult, ...]  # this run's
    counts: dict[str, int]  # the study's trials by outcome
    best_number: int
    best_value: float
    best_params: dict[str, Any]
    importances: dict[str, float]  # fANOVA share of the value's variance per setting (empty below 2 complete)
    table: Path  # every trial of the study (CSV)
    plot: Path
    data: ResolvedDataset  # the run's data with the best trial's model options in its spec
    config: RunConfig  # the run's settings with the best trial's training settings
    trained: TrainedModel | None  # the best trial's model when this run trained it (else: train its settings)

    def markdown(self, plot_link: str) -> str:
        """This run's trials as a table, for the Prefect UI."""
        rows = [
            f"| {t.number} | {t.state} | {'' if t.value is None else f'{t.value:.5g}'} | {len(t.history)} "
            f"| {settings_text(t.params)} | {t.finished - t.started:.1f} |"
            for t in self.trials
        ]
        head = (
            f"**Study `{self.study.name}`** ({self.study.shown_storage}): {summary_counts(self.counts)}; best trial "
            f"{self.best_number}, validation loss {self.best_value:.5g}: {settings_text(self.best_params)}\n\n"
            f"[Optimisation history and setting importances]({plot_link})\n\n"
        )
        return head + "| trial | state | value | epochs | settings | s |\n|---|---|---|---|---|---|\n" + "\n".join(rows)

    def record(self, links: RunLinks) -> Record:
        """The study on the pipeline's run: the best trial's settings (params sweep.best.*), the trial counts,
        the trial table and plot (artifacts sweep/), and the same as a Prefect artifact."""
        counts = {f"sweep_trials_{outcome}": n for outcome, n in self.counts.items()}
        importances = {f"sweep_importance.{name}": share for name, share in self.importances.items()}
        plot = f"sweep/{self.plot.name}"
        return Record(
            metrics={
                "sweep_best_value": self.best_value,
                "sweep_trials_this_run": len(self.trials),
                **counts,
                **importances,
            },
            params={f"sweep.best.{name}": str(value) for name, value in self.best_params.items()},
            tags={
                "sweep.study": self.study.name,
                "sweep.storage": self.study.shown_storage,
                "sweep.best_trial": str(self.best_number),
            },
            files={"sweep": (self.table, self.plot)},
            notes=(Note("sweep", self.markdown(links.link(plot)), "Hyper-parameter sweep"),),
            images=(Link("sweep-plot", plot, self.plot.name, "Sweep: optimisation history"),),
        )


def trial_record(trial: TrialResult, study: StudyRef) -> ChildRecord:
    """One trial as a nested run: its settings, per-epoch curves, outcome (tag trial_state) and value. A pruned
    trial ends FINISHED (pruning is an outcome), a diverged one FAILED."""
    tags = {"optuna.study": study.name, "optuna.trial": str(trial.number), "trial_state": trial.state}
    tags |= {"error": trial.error[:4000]} if trial.error else {}
    summary = {"epochs": len(trial.history), "seconds": trial.finished - trial.started}
    if trial.trained is not None:
        summary["best_epoch"] = trial.trained.best_epoch
    record = Record(
        metrics=summary | ({} if trial.value is None else {"value": trial.value}),
        params={name: str(value) for name, value in trial.params.items()},
        tags=tags,
        series=epoch_curves(trial.history),
    )
    return ChildRecord(f"trial-{trial.number}", record, trial.started, trial.finished, trial.state != "failed")


def settings_text(params: dict[str, Any]) -> str:
    """'learning_rate=0.00312 batch_size=64' (the setting's last name; numbers to 3 significant digits)."""
    return " ".join(
        f"{name.rsplit('.', 1)[-1]}={value:.3g}" if isinstance(value, float) else f"{name.rsplit('.', 1)[-1]}={value}"
        for name, value in params.items()
    )


def summary_counts(counts: dict[str, int]) -> str:
    return f"{sum(counts.values())} trials ({', '.join(f'{n} {state}' for state, n in counts.items())})"


def candidate_values(entry: FloatRange | IntRange | Choice) -> list[Any]:
    """The values to check an entry by: each choice, or both ends of a range and, for a float range, a value
    inside it that is not whole (an option that takes whole numbers is refused here, not in trial 7)."""
    if isinstance(entry, Choice):
        return list(entry.choices)
    inside = (
        [entry.low + (entry.high - entry.low) * 0.37]
        if isinstance(entry, FloatRange) and entry.high > entry.low
        else []
    )
    return [entry.low, entry.high, *inside]


# A sweep varies one family's settings; a spec that leaves the family to auto sweeps the network (the trees of
# auto tune themselves by early stopping, and the default space is the network's).
SWEPT_FOR_AUTO = "tabular_mlp"


def swept_model(model: ModelSpec) -> ModelSpec:
    """The model a sweep varies: the spec's, or for model.family auto the network family."""
    return model.model_copy(update={"family": SWEPT_FOR_AUTO}) if model.family == AUTO_FAMILY else model


def check_model_options(sweep: SweepConfig, model: ModelSpec) -> None:
    """Every model option the space varies builds with the spec's family at every value checked; the training
    settings were checked with the run configuration."""
    model = swept_model(model)
    family = get_family(model.family)
    for name, entry in sweep.space.items():
        if not name.startswith(MODEL_OPTION):
            continue
        for value in candidate_values(entry):
            try:
                family.check_options({**model.options, name.removeprefix(MODEL_OPTION): value})
            except ConfigRejected as error:
                raise ConfigRejected(f"sweep.space '{name}' can draw {value!r}: {error}") from None


def study_settings(data: ResolvedDataset, config: RunConfig) -> dict[str, str]:
    """Fingerprints of what a trial's value depends on besides its drawn settings: the data, the spec, the split
    and the fixed training settings. Trials of a study must agree on all of them to be compared."""
    swept = set(config.sweep.space)
    training = {k: v for k, v in config.training.model_dump(mode="json").items() if f"training.{k}" not in swept}
    model = data.spec.model.model_dump(mode="json")
    model["options"] = {k: v for k, v in model["options"].items() if f"{MODEL_OPTION}{k}" not in swept}
    parts = {
        "dataset": data.spec.dataset.model_dump(mode="json"),
        "model": model,
        "split": config.split.model_dump(mode="json"),
        "training": training,
    }
    digest = {
        name: hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16] for name, part in parts.items()
    }
    return {"data": data.dataset.sha256[:16], **digest}


def check_same_settings(study: optuna.Study, settings: dict[str, str], shown_storage: str) -> None:
    """A study's first run records its settings; a later run with other data or settings is refused: its trials'
    values would not be comparable with the study's."""
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
        return
    differ = sorted(name for name in settings.keys() | recorded.keys() if settings.get(name) != recorded.get(name))
    if differ:
        raise ConfigRejected(
            f"study '{study.study_name}' in {shown_storage} holds trials of another {', '.join(differ)}: their values"
            " are not comparable with this run's. Resume it with the same data and settings, or name another study"
            " (sweep.study_name, greenlight sweep --study-name)"
        )


def fail_abandoned_trials(study: optuna.Study) -> None:
    """Trials left running by a process of this host that is gone (killed mid-trial) are failed, so they stop
    counting as running; another host's running trials are that host's to end."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_dead(read_owner(trial.user_attrs.get(OWNER_ATTR))):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def ended(study: optuna.Study) -> int:
    """Trials that ended, whatever their outcome."""
    return len(study.get_trials(deepcopy=False, states=tuple(OPTUNA_STATES.values())))


@task(name="open_study", cache_policy=NO_CACHE)
def open_study(storage: str, data: ResolvedDataset, config: RunConfig) -> StudyRef:
    """Create the sweep's study, or resume it (same name and storage). A model option the family refuses, or a
    study of other data or settings, is refused before any trial; a refused space creates no study."""
    check_model_options(config.sweep, data.spec.model)
    settings = study_settings(data, config)
    # The default name carries the fingerprint: the same data and settings resume, new data starts a new study.
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    name = config.sweep.study_name or f"{data.model_name}-{fingerprint}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # run_trials prints a line per trial instead
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)
    ref = StudyRef(storage, name, 0)
    check_same_settings(study, settings, ref.shown_storage)
    fail_abandoned_trials(study)
    return replace(ref, trials_before=ended(study))


def load_study(ref: StudyRef, sweep: SweepConfig, max_epochs: int) -> optuna.Study:
    """The study with this run's sampler and pruner (Optuna keeps neither in the storage)."""
    # Seeded by the trials already there too: a resumed study must not draw its first trials' settings again.
    sampler = optuna.samplers.TPESampler(seed=sweep.seed + ref.trials_before)
    pruners = {
        "median": optuna.pruners.MedianPruner(
            n_startup_trials=sweep.startup_trials,
            n_warmup_steps=sweep.warmup_epochs,
            interval_steps=sweep.prune_interval_epochs,
        ),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=max(1, sweep.warmup_epochs), max_resource=max_epochs),
        "none": optuna.pruners.NopPruner(),
    }
    return optuna.load_study(study_name=ref.name, storage=ref.storage, sampler=sampler, pruner=pruners[sweep.pruner])


def distributions(sweep: SweepConfig) -> dict[str, BaseDistribution]:
    """The space as Optuna's distributions; a choice that is a list (layer widths) stands as its JSON text, since
    Optuna's choices are plain numbers, text and yes/no."""
    found: dict[str, BaseDistribution] = {}
    for name, entry in sweep.space.items():
        if isinstance(entry, FloatRange):
            found[name] = FloatDistribution(entry.low, entry.high, log=entry.log)
        elif isinstance(entry, IntRange):
            found[name] = IntDistribution(entry.low, entry.high, log=entry.log, step=entry.step)
        else:
            found[name] = CategoricalDistribution([choice_key(choice) for choice in entry.choices])
    return found


def choice_key(choice: Any) -> Any:
    return json.dumps(choice) if isinstance(choice, list) else choice


def trial_settings(params: dict[str, Any], spec: Spec, config: RunConfig) -> tuple[Spec, TrainingConfig]:
    """The spec and training settings a trial's params stand for."""
    values = {}
    for name, value in params.items():
        entry = config.sweep.space.get(name)
        choices = {choice_key(c): c for c in entry.choices} if isinstance(entry, Choice) else {}
        values[name] = choices.get(value, value) if isinstance(value, str) else value
    training = {name.removeprefix("training."): v for name, v in values.items() if name.startswith("training.")}
    options = {name.removeprefix(MODEL_OPTION): v for name, v in values.items() if name.startswith(MODEL_OPTION)}
    model = swept_model(spec.model)
    model = model.model_copy(update={"options": {**model.options, **options}})
    return spec.model_copy(update={"model": model}), config.training.model_copy(update=training)


def asks_pruner(epoch: int, sweep: SweepConfig) -> bool:
    """Whether a trial asks the pruner after this epoch: from the warm-up's end, every prune_interval_epochs."""
    since = epoch - sweep.warmup_epochs
    return sweep.pruner != "none" and since >= 0 and since % sweep.prune_interval_epochs == 0


@task(name="train_trial", task_run_name="trial-{trial.number}", cache_policy=NO_CACHE)
def train_trial(trial: optuna.Trial, splits: DataSplits, spec: Spec, config: RunConfig, work_dir: Path) -> TrialResult:
    """Train with the trial's settings, reporting each epoch's validation loss to the pruner, which may stop it.
    A pruned or diverged trial is an outcome, not an error: only a bug fails the task (and the sweep)."""
    spec, training = trial_settings(trial.params, spec, config)
    history: list[EpochMetrics] = []

    def report(epoch: EpochMetrics) -> None:
        history.append(epoch)
        trial.report(epoch.val_loss, epoch.epoch)
        if asks_pruner(epoch.epoch, config.sweep) and trial.should_prune():
            raise optuna.TrialPruned(f"validation loss {epoch.val_loss:.4g} at epoch {epoch.epoch}")

    started, device = time.time(), pick_device()
    result = TrialResult(trial.number, trial.params, "failed", None, (), None, started, started)
    try:
        model, fit = train_on_device(splits, spec, training, device, on_epoch=report)
    except optuna.TrialPruned:
        return replace(result, state="pruned", value=history[-1].val_loss, history=tuple(history), finished=time.time())
    except GreenlightError as error:  # diverged: these settings do not train
        return replace(result, history=tuple(history), finished=time.time(), error=str(error))
    checkpoint = save_checkpoint(model, fit.best_state, work_dir / f"trial-{trial.number}" / "best.pt")
    trained = trained_model(checkpoint, spec, splits, fit, device.type)
    value = min(epoch.val_loss for epoch in fit.history)
    return replace(result, state="complete", value=value, history=fit.history, trained=trained, finished=time.time())


@contextmanager
def threads_per_trial(concurrency: int) -> Iterator[None]:
    """torch's CPU threads shared among the trials trained at once (one pool for the process), then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before // concurrency))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def wants_trials(study: optuna.Study, total: int) -> bool:
    """Whether the study should start another trial: the ended and running ones (any worker's) fall short."""
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return ended(study) + running < total


def run_trials(
    study: StudyRef,
    splits: DataSplits,
    spec: Spec,
    config: RunConfig,
    work_dir: Path,
    on_trial: Callable[[TrialResult], Any],
) -> tuple[TrialResult, ...]:
    """Ask, train and tell until the study holds sweep.trials trials (or sweep.timeout_s passes): at most
    `concurrency` at once; `on_trial` sees each outcome as it comes (the flow logs it)."""
    sweep = config.sweep
    live = load_study(study, sweep, config.training.max_epochs or get_family(swept_model(spec.model).family).max_epochs)
    space, deadline = distributions(sweep), time.monotonic() + (sweep.timeout_s or math.inf)
    running: dict[Any, optuna.Trial] = {}
    results: list[TrialResult] = []
    with ThreadPoolTaskRunner(max_workers=sweep.concurrency) as runner, threads_per_trial(sweep.concurrency):
        try:
            while True:
                while (
                    len(running) < sweep.concurrency
                    and wants_trials(live, sweep.trials)
                    and time.monotonic() < deadline
                ):
                    trial = live.ask(space)
                    trial.set_user_attr(OWNER_ATTR, current_owner())
                    parameters = {
                        "trial": trial,
                        "splits": splits,
                        "spec": spec,
                        "config": config,
                        "work_dir": work_dir,
                    }
                    running[runner.submit(train_trial, parameters)] = trial
                if not running:
                    return tuple(results)
                done = next(as_completed(list(running)))
                trial, result = running.pop(done), done.result()
                live.tell(
                    trial, result.value if result.state == "complete" else None, state=OPTUNA_STATES[result.state]
                )
                results.append(result)
                on_trial(result)
                print(progress_line(result, live, sweep.trials))
        finally:  # a trial's bug, or Ctrl-C: the others end at their next epoch's report
            for trial in running.values():
                live.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def progress_line(result: TrialResult, study: optuna.Study, total: int) -> str:
    """'trial 7 complete  val_loss 0.0123  [8/20 ended; best 0.0101, trial 3]  learning_rate=... (4.1 s)'."""
    value = "" if result.value is None else f"val_loss {result.value:.5g}"
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = f"best {study.best_value:.5g}, trial {study.best_trial.number}" if complete else "none complete yet"
    return (
        f"trial {result.number:<3} {result.state:<8} {value:<20} [{ended(study)}/{total} ended; {best}]"
        f"  {settings_text(result.params)}  ({result.finished - result.started:.1f} s, {len(result.history)} epochs)"
        + (f"\n  {result.error}" if result.error else "")
    )


@task(name="summarize_sweep", cache_policy=NO_CACHE)
def summarize_sweep(
    study: StudyRef, trials: tuple[TrialResult, ...], data: ResolvedDataset, config: RunConfig, out_dir: Path
) -> SweepResult:
    """The study's best trial, the spec and settings it stands for, its trial table, setting importances and plot."""
    live = optuna.load_study(study_name=study.name, storage=study.storage)
    counts = {o: len(live.get_trials(deepcopy=False, states=(s,))) for o, s in OPTUNA_STATES.items()}
    if not counts["complete"]:
        first_error = next((f" The first failure: {t.error}" for t in trials if t.error), "")
        raise GreenlightError(
            f"no trial of study '{study.name}' completed: {summary_counts(counts)}; widen or move sweep.space"
            f" (a lower learning rate range, for one).{first_error}"
        )
    best = live.best_trial
    importances = setting_importances(live, config.sweep.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "trials.csv"
    live.trials_dataframe().to_csv(table, index=False)
    plot = plot_sweep(live, importances, out_dir / "sweep.png")
    spec, training = trial_settings(best.params, data.spec, config)
    origin = f"{data.origin}; settings of trial {best.number} of sweep study '{study.name}'"
    print(f"sweep '{study.name}': {summary_counts(counts)}; best trial {best.number}: {settings_text(best.params)}")
    return SweepResult(
        study=study,
        trials=trials,
        counts=counts,
        best_number=best.number,
        best_value=float(best.value),
        best_params=dict(best.params),
        importances=importances,
        table=table,
        plot=plot,
        data=replace(data, spec=spec, origin=origin),
        config=config.model_copy(update={"training": training}),
        trained=next((t.trained for t in trials if t.number == best.number), None),
    )


def setting_importances(study: optuna.Study, seed: int) -> dict[str, float]:
    """How much of the value's variance each setting explains (fANOVA); empty until two trials completed with
    different settings."""
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError):  # too few complete trials, or no setting that varied
        return {}


@one_plot_at_a_time
def plot_sweep(study: optuna.Study, importances: dict[str, float], path: Path) -> Path:
    """Each trial's value by trial number (pruned ones at their last report) with the best so far, and each
    setting's importance."""
    plt = pyplot()
    fig, (history, bars) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for outcome, marker, colour in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:grey")):
        shown = [t for t in study.get_trials(deepcopy=False, states=(OPTUNA_STATES[outcome],)) if t.value is not None]
        history.scatter([t.number for t in shown], [t.value for t in shown], marker=marker, color=colour, label=outcome)
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    best_so_far = [min(t.value for t in complete[: i + 1]) for i in range(len(complete))]
    history.step([t.number for t in complete], best_so_far, where="post", color="tab:red", label="best so far")
    history.set(xlabel="trial", ylabel="validation loss", yscale="log", title=f"Study {study.study_name}")
    history.legend()
    names = list(importances)[::-1]
    bars.barh([name.rsplit(".", 1)[-1] for name in names], [importances[name] for name in names], color="tab:blue")
    bars.set(
        xlabel="share of the variance (fANOVA)", title="Setting importance" if names else "Importance: too few trials"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
