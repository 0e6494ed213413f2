"""The monitor's findings kept and told: the page and drift.json, a run of the "monitoring" experiment (its figures
also on the version's logged model, its verdict in the version's tags), Prefect artifacts inside a flow run, and
`greenlight.drift.detected` past a threshold, carrying the configuration that trained the version so an automation
can retrain on the same spec and data (deployments/prefect.yaml, on-drift). The check itself: drift_watch.py.
"""

import ast
import io
import json
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, TypeAdapter, ValidationError

from tasks.core.config import DriftConfig, RunConfig
from tasks.core.errors import GreenlightError
from tasks.core.locations import resolve_locations
from tasks.core.plotting import one_plot_at_a_time
from tasks.core.records import Link, Note, Record
from tasks.data.drift import drift_json
from tasks.monitoring.drift_watch import DRIFT_EVENT, MONITORING_EXPERIMENT, LiveDrift
from tasks.monitoring.events import send_version_event
from tasks.registry.client import (
    ModelVersionRef,
    TrackingRun,
    finish_tracking_run,
    log_metric_series,
    run_artifact_link,
    start_tracking_run,
    tag_model_version,
    version_run_params,
)
from tasks.registry.tracking import log_record

REPORT_FOLDER = "monitoring"
PAGE, JSON = "report.html", "drift.json"
# The chart shows the most drifted features; the table below it lists them all.
CHART_FEATURES = 20
NOT_PARSED = object()
# The page's colours (tasks/data/data_report.html's) for each level.
LEVEL_COLOURS = {"blocking": "#b3261e", "warning": "#f9a825", "ok": "#2e7d32"}


@dataclass(frozen=True)
class MonitoringRun:
    """The MLflow run a check is recorded in, its local folder, and where its page will be opened."""

    tracking: TrackingRun
    folder: Path
    report_link: str


@dataclass(frozen=True)
class DriftAlert:
    """Whether `greenlight.drift.detected` went out, and the line that says so (or why not)."""

    line: str
    sent: bool


@dataclass(frozen=True)
class RecordedCheck:
    """A recorded check: the version's verdict, the lines to print and where the page is."""

    check: LiveDrift
    alert: DriftAlert
    run_id: str
    report_link: str
    page: Path

    def lines(self) -> list[str]:
        return [*self.check.lines(), f"  report       {self.report_link}", f"  event        {self.alert.line}"]


# --- the run configuration that trained the version ---


def section_of(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (its type, or the model inside `X | None`), else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def leaf_value(text: str, annotation: Any) -> Any:
    """A parameter's text as its field's value: the Python literal it was written from (2e-3, None, (0.3, 0.6),
    [..]) where the field takes that, else the text itself (a model name that looks like a number stays text)."""
    try:
        literal = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        literal = NOT_PARSED
    adapter = TypeAdapter(annotation)
    for candidate in (literal, text):
        if candidate is NOT_PARSED:
            continue
        try:
            return adapter.validate_python(candidate)
        except ValidationError:
            continue
    return text


def nested_settings(params: dict[str, str], model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """The nested settings a run's flattened parameters were made from (tasks/registry/tracking.py flatten)."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        below = {k.removeprefix(f"{key}."): v for k, v in params.items() if k.startswith(f"{key}.")}
        section = section_of(field.annotation)
        if key in params:
            found[name] = leaf_value(params[key], field.annotation)
        elif section is not None and below:
            found[name] = nested_settings(params, section, f"{key}.")
        elif below:  # a mapping: sweep.space's entries (training.learning_rate.low ...) or a family's options
            found[name] = mapping_settings(below, holds_models(field.annotation))
    return found


def holds_models(annotation: Any) -> bool:
    """Whether a type is, or holds, a settings model (dict[str, Distribution] does; dict[str, Any] does not)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(holds_models(inner) for inner in typing.get_args(annotation))


def mapping_settings(below: dict[str, str], of_models: bool) -> dict[str, Any]:
    """A mapping's entries; a mapping of settings models by the last dot (an entry's name may hold dots:
    'training.learning_rate.low' is entry 'training.learning_rate', setting 'low')."""
    entries: dict[str, Any] = {}
    for rest, text in below.items():
        entry, _, setting = rest.rpartition(".")
        if of_models and entry:
            entries.setdefault(entry, {})[setting] = leaf_value(text, Any)
        else:
            entries[rest] = leaf_value(text, Any)
    return entries


def training_config(ref: ModelVersionRef) -> tuple[dict | None, str]:
    """The RunConfig that trained the version, as JSON, rebuilt from its run's parameters (the pipeline logs the
    configuration only as those: flattened, each value as text), and a note; None with why when it does not rebuild."""
    params = version_run_params(ref)
    if not params:
        return None, f"v{ref.version} has no training run parameters to rebuild its configuration from"
    try:
        config = RunConfig.model_validate(nested_settings(params, RunConfig))
    except ValidationError as error:
        return None, f"the configuration of v{ref.version}'s run does not rebuild: {error.errors()[0]['msg']}"
    return config.model_dump(mode="json"), f"rebuilt from run {ref.run_id}'s parameters"


# --- the event ---


def prefect_api() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def drift_payload(check: LiveDrift, report_link: str, config: dict | None, config_note: str) -> dict:
    """What the event carries beside the model and version: enough to act on without opening the report."""
    return {
        "status": check.status,
        "worst_features": [{"name": f.name, "psi": round(f.psi, 4)} for f in check.worst()],
        "label_psi": check.drift.label_psi,
        "rows": check.rows,
        "window": {"since": check.since.isoformat(), "until": check.until.isoformat()},
        "report": report_link,
        "config": config,
        "config_note": config_note,
    }


@task(name="alert_drift", cache_policy=NO_CACHE)
def alert_drift(check: LiveDrift, ref: ModelVersionRef, report_link: str) -> DriftAlert:
    """Send greenlight.drift.detected when the check warns or blocks; a refusal is reported, never raised."""
    if not check.drifted:
        return DriftAlert(f"none (drift {check.status})", False)
    config, note = training_config(ref)
    try:
        send_version_event(DRIFT_EVENT, check.model, check.version, drift_payload(check, report_link, config, note))
    except GreenlightError as error:
        return DriftAlert(f"{DRIFT_EVENT} NOT sent: {error}", False)
    api = prefect_api()
    where = f"the Prefect server at {api}" if api else "the local Prefect only (PREFECT_API_URL is not set)"
    return DriftAlert(f"{DRIFT_EVENT} sent to {where}", True)


# --- the page ---


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend: workers have no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def svg_of(figure: Any) -> str:
    """A figure as inline SVG markup (the page stays one file, with no image beside it)."""
    import matplotlib

    buffer = io.StringIO()
    # Text as text (no glyph outlines: a third of the size, and selectable); no date: the same check, the same page.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    pyplot().close(figure)
    return buffer.getvalue()[buffer.getvalue().index("<svg") :]


def psi_level(value: float, config: DriftConfig) -> str:
    return "blocking" if value >= config.feature_block_psi else "warning" if value >= config.feature_warn_psi else "ok"


@one_plot_at_a_time
def psi_chart(check: LiveDrift) -> str:
    """PSI per feature, most drifted on top, with the warn and block thresholds as lines."""
    plt, config = pyplot(), check.drift.config
    shown = check.drift.features[:CHART_FEATURES][::-1]
    figure, axes = plt.subplots(figsize=(7, 0.8 + 0.28 * len(shown)))
    colours = [LEVEL_COLOURS[psi_level(f.psi, config)] for f in shown]
    axes.barh([f.name for f in shown], [f.psi for f in shown], color=colours)
    axes.axvline(config.feature_warn_psi, color="#f9a825", linestyle="--", label="warn")
    axes.axvline(config.feature_block_psi, color="#b3261e", linestyle="--", label="block")
    axes.set(xlabel="PSI against the training data", title="Drift per feature")
    axes.legend(loc="lower right")
    return svg_of(figure)


@one_plot_at_a_time
def shares_chart(check: LiveDrift) -> str:
    """The answers' share of each label beside the label's share in the training data."""
    plt, shares = pyplot(), check.drift.label_shares
    labels = list(shares)
    figure, axes = plt.subplots(figsize=(max(4, 0.9 * len(labels) + 2), 3.2))
    positions = range(len(labels))
    axes.bar([p - 0.2 for p in positions], [shares[k][0] for k in labels], 0.4, label="answers", color="#1565c0")
    axes.bar([p + 0.2 for p in positions], [shares[k][1] for k in labels], 0.4, label="training", color="#9e9e9e")
    axes.set_xticks(list(positions), labels, rotation=45 if max(map(len, labels)) > 4 else 0)
    axes.set(ylabel="share of rows", title="Answers against training labels")
    axes.legend()
    return svg_of(figure)


@cache
def page_template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent),
        autoescape=True,  # feature names and labels come from a user's data
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("drift_page.html")


def render_page(check: LiveDrift, alert: DriftAlert) -> str:
    """The offline page: verdict, window, what was read, the charts, every feature, what could not be compared."""
    drift, scored = check.drift, check.status != "skipped"
    config = drift.config
    return page_template().render(
        check=check,
        alert=alert,
        scored=scored,
        psi_svg=psi_chart(check) if scored and drift.features else "",
        shares_svg=shares_chart(check) if scored and drift.label_shares else "",
        features=[
            (f.name, f"{f.psi:.4g}", f.share_text().strip(" ()"), psi_level(f.psi, config)) for f in drift.features
        ],
        shares=[(k, f"{a:.1%}", f"{b:.1%}") for k, (a, b) in drift.label_shares.items()],
        checked_at=f"{check.until:%Y-%m-%d %H:%M}",
    )


def page_json(check: LiveDrift, alert: DriftAlert) -> dict:
    """drift.json: the data checks' drift JSON, with the window, what was read and the event."""
    return {
        "model": check.model,
        "version": check.version,
        "window": {"since": check.since.isoformat(), "until": check.until.isoformat()},
        "rows": check.rows,
        "files": check.files,
        "unfinished_files": check.unfinished,
        "unreadable_files": list(check.unreadable),
        "capture": check.location,
        "not_comparable": check.not_comparable,
        "event": alert.line,
        **drift_json(check.drift),
    }


def markdown(check: LiveDrift, alert: DriftAlert, link: str) -> str:
    """The Prefect artifact: verdict, window, the worst features and the answers, and the page's link."""
    lines = [
        f"## Live drift of {check.model} v{check.version}: {check.status}",
        "",
        f"{check.window_text()}; {check.read_text()}",
        "",
        check.drift.note.replace("|", "\\|"),
        "",
    ]
    if check.worst():
        lines += ["| feature | PSI | share |", "|---|---|---|"]
        lines += [f"| {f.name} | {f.psi:.3g} | {f.share_text().strip(' ()')} |" for f in check.worst()]
        lines += ["", f"Answers: {check.answers_text()}", ""]
    return "\n".join([*lines, f"Event: {alert.line}", "", f"Full report: [{PAGE}]({link})"])


# --- the record ---


@task(name="open_monitoring_run", cache_policy=NO_CACHE)
def open_monitoring_run(check: LiveDrift) -> MonitoringRun:
    """A run of the monitoring experiment for this check, tagged with the model, version, window and status; its
    files are written under <home>/runs/monitor-<time>-<model>-v<version> first."""
    locations = resolve_locations()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tags = {
        "pipeline": "model_monitoring",
        "kind": "drift",
        "model_name": check.model,
        "model_version": check.version,
        "window": check.window_text(),
        "drift_status": check.status,
        "prefect_flow_run_id": str(flow_run.get_id() or "none"),
    }
    params = {
        "model_name": check.model,
        "model_version": check.version,
        "since": check.since.isoformat(),
        "until": check.until.isoformat(),
        "capture": check.location,
        **{f"drift.{k}": str(v) for k, v in check.drift.config.model_dump().items()},
    }
    tracking = start_tracking_run(
        locations.tracking_uri, MONITORING_EXPERIMENT, f"monitor-{check.model}-v{check.version}-{stamp}", params, tags
    )
    folder = locations.runs_dir / f"monitor-{stamp}-{check.model}-v{check.version}"
    folder.mkdir(parents=True, exist_ok=True)
    return MonitoringRun(tracking, folder, run_artifact_link(tracking, f"{REPORT_FOLDER}/{PAGE}"))


def version_tags(check: LiveDrift, link: str) -> dict[str, str]:
    """The latest check on the version: what `greenlight show` and the registry UI show."""
    worst = ", ".join(f"{f.name} {f.psi:.3g}" for f in check.worst()) or "none"
    return {
        "monitor.drift_status": check.status,
        "monitor.checked_at": check.until.isoformat(timespec="seconds"),
        "monitor.worst_features": worst if check.status != "skipped" else check.drift.note[:500],
        "monitor.rows": str(check.rows),
        "monitor.report": link,
    }


@task(name="record_live_drift", cache_policy=NO_CACHE)
def record_live_drift(check: LiveDrift, run: MonitoringRun, alert: DriftAlert) -> RecordedCheck:
    """Write the page and drift.json, log them with the figures (on the version's logged model too), set the
    version's monitor.* tags, and inside a flow run add the Prefect artifacts; the run ends FINISHED."""
    page = run.folder / PAGE
    page.write_text(render_page(check, alert), encoding="utf-8")
    (run.folder / JSON).write_text(json.dumps(page_json(check, alert), indent=2))
    in_flow = flow_run.get_id() is not None  # outside one (the CLI) there is no flow run to attach artifacts to
    record = Record(
        tags={"event": alert.line[:500]},
        files={REPORT_FOLDER: (page, run.folder / JSON)},
        links=(Link("live-drift-report", f"{REPORT_FOLDER}/{PAGE}", PAGE, "Live drift report"),) if in_flow else (),
        notes=(Note("live-drift", markdown(check, alert, run.report_link), "Live drift"),) if in_flow else (),
    )
    log_record.fn(run=run.tracking, record=record, kind="live_drift")
    log_metric_series(run.tracking, [(name, value, 0) for name, value in check.metrics().items()], check.model_id)
    ref = ModelVersionRef(run.tracking.tracking_uri, check.model, check.version, check.run_id, {})
    tag_model_version(ref, version_tags(check, run.report_link))
    finish_tracking_run(run.tracking, succeeded=True)
    return RecordedCheck(check, alert, run.tracking.run_id, run.report_link, page)
