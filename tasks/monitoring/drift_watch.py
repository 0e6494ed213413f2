"""The monitor: drift of a served version's live traffic from the data it was trained on.

`greenlight monitor` (deployments/monitor.py) and the model_monitoring flow (flows/monitoring.py) read what the
service captured for a window (tasks/core/capture_store.py), rebuild from the captured model-input columns the
quantities the data checks compare, put the answers where the target was, and score them with the data checks' own
drift code (tasks/data/drift.py: the same bins, PSI and thresholds) against the summary stored with the version.
The check is recorded in MLflow; past a threshold it sends `greenlight.drift.detected`. The page and drift.json:
tasks/monitoring/drift_record.py. The manual: docs/monitoring.md.
"""

import os
import re
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.core.capture_store import CapturedRows, CaptureStore
from tasks.core.config import DriftConfig
from tasks.core.errors import GreenlightError
from tasks.core.spec import DatasetSpec
from tasks.data.drift import (
    DataSummary,
    DriftReference,
    DriftReport,
    FeatureDrift,
    Measured,
    compared_counts,
    expected_kinds,
    label_shares,
    metric_name,
    psi,
    score_drift,
    verdict,
)
from tasks.registry.client import (
    ModelVersionRef,
    RegistryError,
    download_data_summary,
    find_version,
    get_version,
    list_versions,
    read_version_spec,
    registered_model_names,
    version_model_id,
    versions_with_alias,
)

MONITORING_EXPERIMENT = "monitoring"
DRIFT_EVENT = "greenlight.drift.detected"
# Hours per unit of a window: 24h, 90m, 7d (and 30s, for a test's or a demo's fresh window).
WINDOW_HOURS = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0}
WINDOW = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")


class MonitorRefused(GreenlightError):
    """The monitor was asked about a model, version or window that does not exist: nothing was checked."""


class MonitorConfig(BaseModel):
    """Which served versions to check over which window, and the thresholds: the model_monitoring flow's parameter
    (the Prefect UI renders it as a form) and what `greenlight monitor` builds from its flags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str | None = Field(None, description="registered model name; empty: every model with a production")
    version: str | None = Field(None, description="registered version number; empty: the production version")
    since_hours: float = Field(24.0, gt=0, description="the window: traffic captured in the last this many hours")
    capture_location: str | None = Field(
        None, description="capture folder or s3://bucket/prefix; empty: GREENLIGHT_CAPTURE_DIR, else <home>/capture"
    )
    # PSI over ten bins on a few dozen rows is mostly chance (docs/data-checks.md: chance alone reaches 0.24-0.35 at
    # 100 rows); below this many captured rows the check says how many it had instead of a verdict.
    min_rows: int = Field(100, ge=1, description="fewer captured rows: status skipped, with the count")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="the thresholds (the data checks' defaults)")

    @model_validator(mode="after")
    def _a_version_of_a_model(self) -> "MonitorConfig":
        if self.version is not None and self.model_name is None:
            raise ValueError("version names a version of one model: give model_name too")
        return self


def parse_window(text: str) -> float:
    """'24h', '90m', '7d' (or '30s') as hours; MonitorRefused for anything else."""
    found = WINDOW.fullmatch(text or "")
    hours = float(found.group(1)) * WINDOW_HOURS[found.group(2)] if found else 0.0
    if hours <= 0:
        raise MonitorRefused(f"--since {text!r}: give a window like 24h, 90m or 7d (a number, then s, m, h or d)")
    return hours


# --- the traffic, rebuilt as the drift code reads data ---


@dataclass(frozen=True)
class CapturedTraffic:
    """The quantities drift compares, measured on captured rows (keyed as tasks.data.drift.expected_kinds), and
    those that cannot be rebuilt from what was captured, each with why."""

    frame: pd.DataFrame
    measured: dict[str, Measured]
    not_comparable: dict[str, str]


def decimal_numbers(table: Any) -> pd.DataFrame:
    """The captured table as a frame, float32 numbers back at the decimals a client sent.

    The contract keeps numbers as float32, so 39.1 is captured as 39.099998; the training data's decile edges are
    float64 and often fall on such a value (a repeated measurement), and every captured 39.1 would land one bin
    below the training rows it equals: drift from rounding alone. The shortest text that reads back as the same
    float32 is the decimal the client sent (up to ~7 significant digits)."""
    import pyarrow as pa

    frame = table.to_pandas()
    for field in table.schema:
        if pa.types.is_float32(field.type):
            frame[field.name] = frame[field.name].to_numpy(np.float32).astype(str).astype(np.float64)
    return frame


def rebuild_traffic(table: Any, spec: DatasetSpec) -> CapturedTraffic:
    """Each model feature's drift quantities from the captured columns; the answers (`prediction`) as the target.

    A feature whose file columns were captured (numbers, categories, binary, text, an image grid) is measured by its
    own type's drift_values, as the data checks measure a file; a feature the contract turned into other columns (a
    datetime's parts) is compared on those, which are its drift quantities; one whose values were not captured (an
    image file's pixels) is not comparable, and says so."""
    frame = decimal_numbers(table)
    measured, missing = {}, {}
    for feature in spec.model_features:
        kinds = feature.drift_kinds()
        if all(column in frame.columns for column in feature.source_columns):
            values = feature.drift_values(frame)
            measured |= {key: Measured(kind, values[key], feature) for key, kind in kinds.items()}
        elif all(key in frame.columns for key in kinds):
            measured |= {key: Measured(kind, frame[key], feature) for key, kind in kinds.items()}
        else:
            why = f"the {feature.type} feature '{feature.name}' is not kept in the capture (its values are not stored)"
            missing |= dict.fromkeys(kinds, why)
    target = spec.target.name
    if "prediction" in frame.columns:
        measured[target] = Measured(expected_kinds(spec)[target], frame["prediction"], None)
    else:
        missing[target] = "the capture holds no `prediction` column"
    return CapturedTraffic(frame, measured, missing)


def answers_only(
    traffic: CapturedTraffic, spec: DatasetSpec, reference: DriftReference, config: DriftConfig
) -> DriftReport:
    """The answers' drift alone, when no input feature could be compared (an image-file model): the label PSI and
    shares by the data checks' functions, the verdict on them."""
    known, answers = reference.summary.columns[spec.target.name], traffic.measured[spec.target.name].values
    label_psi = psi(*compared_counts(answers, known)[:2])
    shares = label_shares(answers, known) if spec.task == "classification" else {}
    return DriftReport(
        verdict((), label_psi, config),
        f"against {reference.note}; only the answers compared",
        reference_version=reference.version,
        features=(),
        label_psi=label_psi,
        label_shares=shares,
        config=config,
        report_json=None,
        summary_json=None,
    )


def score_traffic(
    traffic: CapturedTraffic, spec: DatasetSpec, reference: DriftReference, config: DriftConfig
) -> DriftReport:
    """score_drift on the rebuilt quantities; the answers alone when they are all that could be rebuilt."""
    report = score_drift(traffic.frame, spec, reference, config, traffic.measured)
    features = [key for key in traffic.measured if key != spec.target.name]
    if report.status == "skipped" and not features and spec.target.name in traffic.measured:
        if reference.summary is not None and spec.target.name in reference.summary.columns:
            return answers_only(traffic, spec, reference, config)
    return report


# --- one check ---


@dataclass(frozen=True)
class LiveDrift:
    """One version's live traffic over a window against its training data: what was read, and the drift."""

    model: str
    version: str
    since: datetime
    until: datetime
    location: str  # where the capture was looked for: the version's folder under the capture root
    rows: int
    files: int
    unfinished: int  # files still being written: their rows come at the next check
    unreadable: tuple[str, ...]
    drift: DriftReport
    not_comparable: dict[str, str]  # drift quantity -> why it could not be rebuilt from the capture
    model_id: str | None  # the version's logged model: its metrics page shows the check's figures
    run_id: str | None  # the run that trained the version: its configuration rides on the event

    @property
    def status(self) -> str:
        return self.drift.status

    @property
    def drifted(self) -> bool:
        return self.status in ("warning", "blocking")

    def window_text(self) -> str:
        seconds = (self.until - self.since).total_seconds()
        span = next(
            f"{seconds / size:.3g} {unit}"
            for size, unit in ((3600, "h"), (60, "min"), (1, "s"))
            if seconds >= size or unit == "s"
        )
        return f"last {span} ({self.since:%Y-%m-%d %H:%M} .. {self.until:%Y-%m-%d %H:%M} UTC)"

    def read_text(self) -> str:
        """'1,204 rows from 3 files (1 still being written, 0 unreadable)'."""
        return (
            f"{self.rows:,} rows from {self.files} file{'s' * (self.files != 1)} ({self.unfinished} still being"
            f" written, {len(self.unreadable)} unreadable)"
        )

    def worst(self) -> tuple[FeatureDrift, ...]:
        """The most drifted features, as many as drift.top_features."""
        return self.drift.features[: self.drift.config.top_features]

    def worst_text(self) -> str:
        return ", ".join(f"{f.name} PSI {f.psi:.3g}{f.share_text()}" for f in self.worst()) or "none compared"

    def answers_text(self) -> str:
        """'Adelie 52% (training 44%), ...; PSI 0.031' or the regression answers' PSI alone."""
        if self.drift.label_psi is None:
            return "not compared"
        shares = ", ".join(f"{k} {a:.0%} (training {b:.0%})" for k, (a, b) in self.drift.label_shares.items())
        return f"{shares}; PSI {self.drift.label_psi:.3g}" if shares else f"PSI {self.drift.label_psi:.3g}"

    def lines(self) -> list[str]:
        """What `greenlight monitor` prints for this version (the event line and the report's place follow)."""
        lines = [
            f"{self.model} v{self.version}: drift {self.status.upper()}",
            f"  window       {self.window_text()}",
            f"  read         {self.read_text()} under {self.location}",
        ]
        lines += [f"  unreadable   {path}" for path in self.unreadable[:5]]
        if self.status == "skipped":
            return [*lines, f"  {self.drift.note}"]
        lines += [
            f"  features     {self.worst_text()} (warn {self.drift.config.feature_warn_psi},"
            f" block {self.drift.config.feature_block_psi})",
            f"  answers      {self.answers_text()} (warn {self.drift.config.label_warn_psi},"
            f" block {self.drift.config.label_block_psi})",
            f"  compared     {self.drift.note}",
        ]
        if self.not_comparable:
            lines.append(f"  not compared {', '.join(self.not_comparable)}: {next(iter(self.not_comparable.values()))}")
        return lines

    def metrics(self) -> dict[str, float]:
        """rows, and for a scored check max_feature_psi, label_psi and psi.<feature> (drift.py's metric names)."""
        found = {"rows": float(self.rows)}
        if self.status == "skipped":
            return found
        found |= {"label_psi": self.drift.label_psi}
        if self.drift.max_feature_psi is not None:
            found["max_feature_psi"] = self.drift.max_feature_psi
        return found | {f"psi.{metric_name(f.name)}": f.psi for f in self.drift.features}


def skipped(report: DriftReport | None, config: DriftConfig, note: str) -> DriftReport:
    """A check without a verdict, and why (too few rows, no capture, no summary): status skipped."""
    base = report or DriftReport("skipped", note, None, (), None, {}, config, None, None)
    return replace(base, status="skipped", note=f"not measured: {note}", features=(), label_psi=None, label_shares={})


def resolve_watched(tracking_uri: str, config: MonitorConfig) -> list[ModelVersionRef]:
    """The versions to check: the one named, a model's production, or every model's production.
    MonitorRefused names the models or versions that exist."""
    if config.model_name is None:
        return [get_version(tracking_uri, name, v) for name, v in sorted(versions_with_alias(tracking_uri).items())]
    versions = [ref.version for ref in list_versions(tracking_uri, config.model_name, limit=20)]
    if not versions:
        names = registered_model_names(tracking_uri)
        known = f"registered: {', '.join(names[:12])}" if names else "no model is registered yet"
        raise MonitorRefused(f"no registered model '{config.model_name}' in {tracking_uri} ({known})")
    if config.version is None:
        found = find_version(tracking_uri, config.model_name)
        if found is None:
            raise MonitorRefused(
                f"'{config.model_name}' has no production version in {tracking_uri}: name one with --version"
                f" (versions: {', '.join(versions)})"
            )
        return [found]
    try:
        return [get_version(tracking_uri, config.model_name, config.version)]
    except RegistryError as error:
        raise MonitorRefused(
            f"'{config.model_name}' has no version {config.version} in {tracking_uri} (versions: {', '.join(versions)})"
        ) from error


@task(name="watched_versions", cache_policy=NO_CACHE)
def watched_versions(config: MonitorConfig) -> list[ModelVersionRef]:
    """The versions this check looks at (config.model_name / version; empty: every production version)."""
    from tasks.core.locations import resolve_locations

    return resolve_watched(resolve_locations().tracking_uri, config)


def capture_location(config: MonitorConfig) -> str:
    """config.capture_location, else GREENLIGHT_CAPTURE_DIR, else <GREENLIGHT_HOME>/capture (what serve writes to)."""
    from tasks.core.locations import resolve_locations

    return config.capture_location or resolve_locations().capture


def training_reference(ref: ModelVersionRef) -> tuple[DatasetSpec | None, DriftReference]:
    """The version's spec and its training data's summary (or why there is none): what the traffic is compared with."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a kilobyte's download, not a bar
    spec = read_version_spec(ref)
    if spec is None:
        return None, DriftReference(ref.version, None, f"v{ref.version} was registered before specs were recorded")
    with tempfile.TemporaryDirectory(prefix="greenlight-monitor-") as folder:
        try:
            path = download_data_summary(ref, Path(folder))
            summary = DataSummary.read(path) if path is not None else None
        except (RegistryError, OSError, ValueError, TypeError, KeyError) as error:
            return spec.dataset, DriftReference(ref.version, None, f"v{ref.version}'s data summary: {error}")
    if summary is None:
        return spec.dataset, DriftReference(ref.version, None, f"v{ref.version} has no stored training-data summary")
    note = f"v{ref.version}'s training data ({summary.rows:,} rows, sha256 {summary.sha256[:12]})"
    return spec.dataset, DriftReference(ref.version, summary, note)


def drift_of(
    captured: CapturedRows, spec: DatasetSpec | None, reference: DriftReference, config: MonitorConfig, where: str
) -> tuple[DriftReport, dict[str, str]]:
    """The drift report of the captured rows, or a skipped one that says why there is no verdict."""
    if captured.rows == 0:
        return skipped(None, config.drift, f"nothing captured in the window (looked in {where})"), {}
    if spec is None or reference.summary is None:
        return skipped(None, config.drift, reference.note), {}
    if captured.rows < config.min_rows:
        note = f"{captured.rows} captured rows, fewer than min_rows {config.min_rows}: PSI on so few rows is chance"
        return skipped(None, config.drift, note), {}
    traffic = rebuild_traffic(captured.table, spec)
    return score_traffic(traffic, spec, reference, config.drift), traffic.not_comparable


@task(name="check_live_drift", cache_policy=NO_CACHE)
def check_live_drift(ref: ModelVersionRef, config: MonitorConfig) -> LiveDrift:
    """Read the version's captured traffic of the window and score its drift from the version's training data."""
    until = datetime.now(UTC)
    since = until - timedelta(hours=config.since_hours)
    store = CaptureStore.open(capture_location(config))
    folder = store.answers_folder(ref.name, ref.version)
    captured = store.read(folder, since=since)
    spec, reference = training_reference(ref)
    report, not_comparable = drift_of(captured, spec, reference, config, folder)
    return LiveDrift(
        model=ref.name,
        version=ref.version,
        since=since,
        until=until,
        location=folder,
        rows=captured.rows,
        files=captured.files,
        unfinished=captured.unfinished,
        unreadable=captured.unreadable,
        drift=report,
        not_comparable=not_comparable,
        model_id=version_model_id(ref),
        run_id=ref.run_id,
    )
