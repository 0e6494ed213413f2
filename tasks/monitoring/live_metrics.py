"""Live accuracy from late labels: every label fed back (tasks/monitoring/labels.py) joined with the answers each
version gave to the captured requests, scored per UTC day of the request, recorded on the version (an MLflow run in
the `monitoring` experiment whose series belong to the version's logged model, and live.* tags), and a drop past
the thresholds sent as `greenlight.performance.dropped`. `greenlight feedback` (deployments/feedback.py) runs it;
the manual: docs/monitoring.md#late-labels.
"""

import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.capture_store import CaptureStore
from tasks.core.errors import GreenlightError
from tasks.core.plotting import one_plot_at_a_time
from tasks.monitoring.events import SentEvent, send_version_event
from tasks.monitoring.labels import ID_COLUMN, LABEL_COLUMN, ROW_COLUMN, SHOWN, LabelFile, LabelsRejected, LabelTarget
from tasks.registry.client import (
    ModelVersionRef,
    RegistryError,
    finish_tracking_run,
    get_version,
    log_files,
    log_metric_points,
    read_version_spec,
    run_artifact_link,
    start_tracking_run,
    tag_model_version,
    version_model_id,
)

MONITORING_EXPERIMENT = "monitoring"
DROP_EVENT = "greenlight.performance.dropped"
ANSWER_COLUMNS = [ID_COLUMN, ROW_COLUMN, "time", "prediction"]
PLOT_FOLDER = "feedback"


class FeedbackConfig(BaseModel):
    """Which model's labels, from which file, and when a day's live metric counts as a drop: what `greenlight
    feedback` builds from its flags, and the parameter a scheduled flow can take (the Prefect UI renders a form)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(min_length=1, description="registered model name")
    data_path: str = Field(min_length=1, description="CSV or Parquet file: request_id, optional row, the label")
    capture_location: str | None = Field(
        None,
        description="capture root (folder or s3://bucket/prefix); empty: GREENLIGHT_CAPTURE_DIR, else <home>/capture",
    )
    # A day's accuracy on 30 rows has a standard error of up to ~0.09: fewer rows are shown, not judged.
    min_labels_per_day: int = Field(30, ge=1, description="labelled rows a day needs to be judged")
    max_accuracy_drop: float = Field(
        0.05, ge=0.0, le=1.0, description="a drop: live accuracy below test accuracy by more than this (absolute)"
    )
    max_rmse_increase: float = Field(
        0.25, ge=0.0, description="a drop: live RMSE above test RMSE by more than this share of it (0.25: +25 %)"
    )


@dataclass(frozen=True)
class DayMetric:
    """One UTC day of labelled requests: how many rows, and the live metric (accuracy, or RMSE) on them."""

    day: date
    rows: int
    value: float  # accuracy (classification) or RMSE (regression)
    extra: float | None  # balanced accuracy (>= 2 classes among the labels) or MAE


@dataclass(frozen=True)
class Drop:
    """The judged day's live metric past its limit: what the event carries."""

    metric: str
    day: date
    live: float
    test: float
    rows: int
    limit: float  # the worst live value still fine

    def payload(self) -> dict:
        return {
            "metric": self.metric,
            "day": self.day.isoformat(),
            "live": round(self.live, 6),
            "test": round(self.test, 6),
            "labelled_rows": self.rows,
            "threshold": round(self.limit, 6),
        }

    def line(self) -> str:
        side = "below" if self.metric == "accuracy" else "above"
        return (
            f"live {self.metric} {self.live:.4f} on {self.day} ({self.rows:,} labelled rows) is {side} the limit"
            f" {self.limit:.4f} (test {self.test:.4f})"
        )


@dataclass(frozen=True)
class VersionLive:
    """One version's live metric per day, the day judged (the latest with enough rows) and whether it dropped."""

    ref: ModelVersionRef
    task: str
    test_value: float | None
    days: tuple[DayMetric, ...]
    judged: DayMetric | None
    drop: Drop | None

    @property
    def metric(self) -> str:
        return "rmse" if self.task == "regression" else "accuracy"

    @property
    def rows(self) -> int:
        return sum(day.rows for day in self.days)


@dataclass(frozen=True)
class LiveReport:
    """Every version's live metrics, and the labels no captured request matched (capture is a sample)."""

    versions: tuple[VersionLive, ...]
    labels: int
    matched: int
    unmatched_ids: tuple[str, ...]  # a few, for the output

    @property
    def unmatched(self) -> int:
        return self.labels - self.matched


# --- the versions and what they answered ---


def captured_versions(store: CaptureStore, tracking_uri: str, model: str) -> list[ModelVersionRef]:
    """The registered versions of the model with captured answers; a GreenlightError when there are none."""
    found = store.versions(model)
    if not found:
        raise GreenlightError(
            f"no captured answers of '{model}' under {store.location}: serve it with GREENLIGHT_CAPTURE_RATE > 0"
            " (and the same GREENLIGHT_CAPTURE_DIR) so that labels have requests to join"
        )
    refs = []
    for version in found:
        try:
            refs.append(get_version(tracking_uri, model, version))
        except RegistryError:
            continue  # captured, then deleted from the registry: nothing to record on
    if not refs:
        raise GreenlightError(f"'{model}' has captured answers for versions {', '.join(found)}, none registered now")
    return refs


def label_target(refs: list[ModelVersionRef]) -> LabelTarget:
    """What a label must be: the newest version's target and task, with every label any captured version knows."""
    specs = [spec for ref in refs if (spec := read_version_spec(ref)) is not None]
    if not specs:
        raise GreenlightError(f"'{refs[0].name}' versions {', '.join(r.version for r in refs)} have no spec recorded")
    labels = dict.fromkeys(text for spec in specs for text in spec.dataset.label_texts())
    target = specs[-1].dataset.target
    return LabelTarget(target.name, target.task, tuple(labels))


def captured_answers(store: CaptureStore, refs: list[ModelVersionRef]) -> dict[str, pd.DataFrame]:
    """Version -> its captured answers (request_id, row, time, prediction), every finished file."""
    answers = {}
    for ref in refs:
        read = store.read(store.answers_folder(ref.name, ref.version), columns=ANSWER_COLUMNS)
        if read.table is not None:
            answers[ref.version] = read.table.to_pandas()
    return answers


def check_single_records(labels: LabelFile, answers: dict[str, pd.DataFrame]) -> None:
    """A file without a row column labels whole requests: refused when a labelled request had several records."""
    if labels.has_rows or not answers:
        return
    captured = pd.concat(answers.values())
    labelled = captured[captured[ID_COLUMN].isin(labels.frame[ID_COLUMN])]
    several = labelled.groupby(ID_COLUMN)[ROW_COLUMN].nunique()
    ids = sorted(several.index[several > 1])
    if ids:
        more = f" and {len(ids) - SHOWN:,} more" if len(ids) > SHOWN else ""
        raise LabelsRejected(
            f"{labels.path}: no '{ROW_COLUMN}' column, but request(s) {', '.join(ids[:SHOWN])}{more} held several"
            f" records: add '{ROW_COLUMN}' (the record's index within its request, from 0) to say which each label is"
        )


# --- live metrics ---


def joined(labels: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """Labelled captured rows: the answer, the true label and the request's UTC day."""
    keyed = labels[[ID_COLUMN, ROW_COLUMN, LABEL_COLUMN]].astype({ROW_COLUMN: "int64"})
    rows = answers.astype({ROW_COLUMN: "int64"}).merge(keyed, on=[ID_COLUMN, ROW_COLUMN], how="inner")
    return rows.assign(day=pd.to_datetime(rows["time"], utc=True).dt.date)


def day_metric(day: date, rows: pd.DataFrame, task: str) -> DayMetric:
    """Accuracy (and balanced accuracy where the labels hold >= 2 classes), or RMSE and MAE, on one day's rows."""
    if task == "regression":
        error = rows["prediction"].astype("float64") - rows[LABEL_COLUMN].astype("float64")
        return DayMetric(day, len(rows), float(np.sqrt((error**2).mean())), float(error.abs().mean()))
    correct = rows["prediction"].astype(str).eq(rows[LABEL_COLUMN].astype(str))
    recall = correct.groupby(rows[LABEL_COLUMN].to_numpy()).mean()
    balanced = float(recall.mean()) if len(recall) >= 2 else None
    return DayMetric(day, len(rows), float(correct.mean()), balanced)


def daily_metrics(rows: pd.DataFrame, task: str) -> tuple[DayMetric, ...]:
    """One DayMetric per UTC day with labelled rows, oldest first."""
    return tuple(day_metric(day, group, task) for day, group in rows.groupby("day", sort=True))


def judged_day(days: tuple[DayMetric, ...], config: FeedbackConfig) -> DayMetric | None:
    """The latest day with at least min_labels_per_day rows: fewer rows say too little to judge."""
    return next((day for day in reversed(days) if day.rows >= config.min_labels_per_day), None)


def drop_limit(task: str, test: float, config: FeedbackConfig) -> float:
    """The worst live value still fine: test accuracy - max_accuracy_drop, or test RMSE * (1 + max_rmse_increase)."""
    return test * (1 + config.max_rmse_increase) if task == "regression" else test - config.max_accuracy_drop


def find_drop(day: DayMetric | None, task: str, test: float | None, config: FeedbackConfig) -> Drop | None:
    """The judged day past its limit (None when it is not, or there is no judged day or test metric)."""
    if day is None or test is None:
        return None
    limit = drop_limit(task, test, config)
    if task == "regression":
        return Drop("rmse", day.day, day.value, test, day.rows, limit) if day.value > limit else None
    return Drop("accuracy", day.day, day.value, test, day.rows, limit) if day.value < limit else None


def test_metric(ref: ModelVersionRef, task: str) -> float | None:
    """The version's test metric as the gate recorded it on its tags (None before the gate scored it)."""
    raw = ref.tags.get("test_rmse" if task == "regression" else "test_accuracy")
    try:
        return None if raw is None else float(raw)
    except ValueError:
        return None


def measure_live(
    labels: pd.DataFrame,
    answers: dict[str, pd.DataFrame],
    refs: list[ModelVersionRef],
    task: str,
    config: FeedbackConfig,
) -> LiveReport:
    """Every version's live metric per day from all labels; which labels matched no captured request."""
    keys = pd.MultiIndex.from_frame(labels[[ID_COLUMN, ROW_COLUMN]].astype({ROW_COLUMN: "int64"}))
    matched, found = np.zeros(len(labels), dtype=bool), []
    for ref in refs:
        if ref.version not in answers:
            continue
        rows = joined(labels, answers[ref.version])
        if rows.empty:
            continue
        matched |= keys.isin(pd.MultiIndex.from_frame(rows[[ID_COLUMN, ROW_COLUMN]].astype({ROW_COLUMN: "int64"})))
        days = daily_metrics(rows, task)
        judged, test = judged_day(days, config), test_metric(ref, task)
        found.append(VersionLive(ref, task, test, days, judged, find_drop(judged, task, test, config)))
    unmatched = labels[ID_COLUMN][~matched].head(SHOWN)
    return LiveReport(tuple(found), len(labels), int(matched.sum()), tuple(unmatched))


# --- recording and alerting ---


def day_ms(day: date) -> int:
    """Midnight UTC of the day, in ms: the metric point's timestamp, so the MLflow chart's time axis reads in days."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def series_points(live: VersionLive) -> list[tuple[str, float, int, int]]:
    """(name, value, timestamp ms, step = the day's ordinal) per day: live_accuracy or live_rmse, and the rows."""
    extra = "live_mae" if live.task == "regression" else "live_balanced_accuracy"
    points = []
    for day in live.days:
        stamp, step = day_ms(day.day), day.day.toordinal()
        points += [(f"live_{live.metric}", day.value, stamp, step), ("live_labels", float(day.rows), stamp, step)]
        if day.extra is not None:
            points.append((extra, day.extra, stamp, step))
    return points


@one_plot_at_a_time
def plot_live(live: VersionLive, config: FeedbackConfig, path: Path) -> Path:
    """The live metric per day (days too small to judge hollow) against the version's test metric and its limit."""
    import matplotlib

    matplotlib.use("Agg")  # servers and workers have no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    days, values = [d.day.isoformat() for d in live.days], [d.value for d in live.days]
    few = [d.rows < config.min_labels_per_day for d in live.days]
    ax.plot(days, values, color="tab:blue", marker="o", label=f"live {live.metric}")
    if any(few):
        hollow = [(day, value) for day, value, small in zip(days, values, few, strict=True) if small]
        ax.scatter(
            *zip(*hollow, strict=True),
            color="white",
            edgecolors="tab:blue",
            zorder=3,
            label=f"< {config.min_labels_per_day} rows: not judged",
        )
    if live.test_value is not None:
        ax.axhline(live.test_value, color="grey", label=f"test {live.metric} {live.test_value:.4f}")
        bound = drop_limit(live.task, live.test_value, config)
        ax.axhline(bound, color="tab:red", linestyle="--", label=f"drop limit {bound:.4f}")
    ax.set(title=f"{live.ref.name} v{live.ref.version}: live {live.metric} per UTC day", ylabel=live.metric)
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def record_live(live: VersionLive, config: FeedbackConfig) -> str:
    """An MLflow run (experiment monitoring) with the daily series logged against the version's logged model and
    the plot; live.* tags on the version; the link to the plot."""
    ref = live.ref
    tags = {"model": ref.name, "version": ref.version, "kind": "feedback"}
    params = {"labels_file": config.data_path, **config.model_dump(exclude={"model_name", "data_path"})}
    run = start_tracking_run(
        ref.tracking_uri, MONITORING_EXPERIMENT, f"feedback-{ref.name}-v{ref.version}", params, tags
    )
    log_metric_points(run, series_points(live), version_model_id(ref))
    with tempfile.TemporaryDirectory(prefix="greenlight-feedback-") as folder:
        plot = plot_live(live, config, Path(folder) / f"live_{live.metric}.png")
        log_files(run, [plot], PLOT_FOLDER)
    finish_tracking_run(run, succeeded=True)
    link = run_artifact_link(run, f"{PLOT_FOLDER}/live_{live.metric}.png")
    checked = {"live.labels": str(live.rows), "live.checked_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if live.judged is not None:
        checked[f"live.{live.metric}"] = f"{live.judged.value:.6f}"
    tag_model_version(ref, {**checked, "live.report": link})
    return link


def send_drop(live: VersionLive, config: FeedbackConfig) -> SentEvent | None:
    """greenlight.performance.dropped about the version when its judged day dropped; None when it did not."""
    if live.drop is None:
        return None
    allowed = "max_rmse_increase" if live.task == "regression" else "max_accuracy_drop"
    payload = {**live.drop.payload(), allowed: getattr(config, allowed)}
    return send_version_event(DROP_EVENT, live.ref.name, live.ref.version, payload)
