"""Drift stage: compare the input's distributions with the training data of the production version.

The method is the Population Stability Index, PSI = sum_i (p_i - q_i) * ln(p_i / q_i), over one bin per
pixel value 0..16 for each of the 64 pixels and one bin per digit for the labels, with counts smoothed by
+0.5 so an empty bin costs a bounded amount. The reference is the summary stored with the production
version when it was registered (registry: reference/data_summary.json).
"""

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import DriftConfig
from tasks.core.schema import FEATURE_COLUMNS, PIXEL_MAX, PIXEL_MIN, TARGET_COLUMN
from tasks.data.gx_expectations import value_key
from tasks.data.validation import ValidationReport
from tasks.registry.client import RegistryError, download_data_summary, find_version

SUMMARY_FORMAT = 1
# Jeffreys-style smoothing: half a row per bin keeps ln(p/q) finite without swamping real counts.
SMOOTHING = 0.5


@dataclass(frozen=True)
class DataSummary:
    """A dataset's fingerprint and distributions: per pixel, rows holding each value 0..16; per label, rows."""

    sha256: str
    rows: int
    feature_counts: dict[str, list[int]]
    label_counts: dict[str, int]

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps({"format": SUMMARY_FORMAT, **asdict(self)}))
        return path

    @classmethod
    def read(cls, path: Path) -> "DataSummary":
        raw = json.loads(path.read_text())
        if raw.pop("format", None) != SUMMARY_FORMAT:
            raise ValueError(f"{path} is not a data summary of format {SUMMARY_FORMAT}")
        summary = cls(**raw)
        if set(summary.feature_counts) != set(FEATURE_COLUMNS):
            raise ValueError(f"{path} summarises other columns than tasks/core/schema.py's pixels")
        return summary


@dataclass(frozen=True)
class DriftReference:
    """What this run's data is compared with: the production version's summary, or why there is none."""

    version: str | None
    summary: DataSummary | None
    note: str


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float


@dataclass(frozen=True)
class DriftReport:
    """PSI per pixel (most drifted first) and on the labels, the verdict, and this data's own summary."""

    status: str  # "skipped", "ok", "warning" or "blocking"
    note: str
    reference_version: str | None
    features: tuple[FeatureDrift, ...]
    label_psi: float | None
    label_shares: dict[str, tuple[float, float]]  # label -> (share here, share in the reference)
    config: DriftConfig
    report_json: Path | None
    summary_json: Path | None  # stored with the version this run registers, as the next runs' reference

    @property
    def max_feature_psi(self) -> float | None:
        return self.features[0].psi if self.features else None

    def top_text(self) -> str:
        """'pixel_3_4 PSI 16.3, pixel_4_4 PSI 16.2, ...' for the configured number of features."""
        return ", ".join(f"{f.name} PSI {f.psi:.3g}" for f in self.features[: self.config.top_features])


def summarize(frame: pd.DataFrame, sha256: str) -> DataSummary:
    """Count each pixel value and each label; values outside 0..16 (a relaxed suite) go to the end bins."""
    labels = frame[TARGET_COLUMN].dropna().value_counts()
    return DataSummary(
        sha256=sha256,
        rows=len(frame),
        feature_counts={name: value_counts(frame[name]) for name in FEATURE_COLUMNS},
        label_counts={value_key(value): int(count) for value, count in labels.items()},
    )


def value_counts(series: pd.Series) -> list[int]:
    """Rows per pixel value PIXEL_MIN..PIXEL_MAX; an integer column costs two numpy passes."""
    bins = PIXEL_MAX - PIXEL_MIN + 1
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        values = series.to_numpy()
    else:
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        values = np.rint(numbers[np.isfinite(numbers)]).astype(np.int64)
    return np.bincount(np.clip(values - PIXEL_MIN, 0, bins - 1), minlength=bins).tolist()


def psi(current: np.ndarray, reference: np.ndarray) -> float:
    """Population Stability Index of two count vectors over the same bins, each count smoothed by +0.5."""
    p = (current + SMOOTHING) / (current.sum() + SMOOTHING * len(current))
    q = (reference + SMOOTHING) / (reference.sum() + SMOOTHING * len(reference))
    return float(np.sum((p - q) * np.log(p / q)))


def label_drift(current: dict[str, int], reference: dict[str, int]) -> tuple[float, dict[str, tuple[float, float]]]:
    """PSI over the union of labels, and each label's share here and in the reference."""
    labels = sorted(set(current) | set(reference), key=lambda text: (len(text), text))
    here = np.array([current.get(label, 0) for label in labels], dtype=float)
    there = np.array([reference.get(label, 0) for label in labels], dtype=float)
    shares = {
        label: (float(a / max(here.sum(), 1)), float(b / max(there.sum(), 1)))
        for label, a, b in zip(labels, here, there, strict=True)
    }
    return psi(here, there), shares


def verdict(features: tuple[FeatureDrift, ...], label_psi: float, config: DriftConfig) -> str:
    """'blocking' past either block threshold, 'warning' past either warn threshold, else 'ok'."""
    top = features[0].psi if features else 0.0
    if top >= config.feature_block_psi or label_psi >= config.label_block_psi:
        return "blocking"
    if top >= config.feature_warn_psi or label_psi >= config.label_warn_psi:
        return "warning"
    return "ok"


@task(name="load_drift_reference", cache_policy=NO_CACHE)
def load_drift_reference(tracking_uri: str, model_name: str, dst_dir: Path) -> DriftReference:
    """The production version's data summary; a missing or unreadable one skips drift, it never fails the run."""
    production = find_version(tracking_uri, model_name)
    if production is None:
        return DriftReference(None, None, f"no production version of '{model_name}' yet: nothing to compare with")
    try:
        path = download_data_summary(production, dst_dir)
        summary = DataSummary.read(path) if path is not None else None
    except (RegistryError, OSError, ValueError, TypeError) as error:
        return DriftReference(production.version, None, f"production v{production.version}'s data summary: {error}")
    if summary is None:
        note = f"production v{production.version} has no stored data summary (registered before drift checks)"
        return DriftReference(production.version, None, note)
    note = f"production v{production.version}'s training data ({summary.rows} rows, sha256 {summary.sha256[:12]})"
    return DriftReference(production.version, summary, note)


@task(name="measure_drift", cache_policy=NO_CACHE)
def measure_drift(
    frame: pd.DataFrame,
    sha256: str,
    validation: ValidationReport,
    reference: DriftReference,
    config: DriftConfig,
    out_dir: Path,
) -> DriftReport:
    """Summarise this data (for the version it may become) and score its drift from the reference."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(frame, sha256) if validation.passed else None
    report = replace(
        score_drift(summary, reference, config),
        summary_json=summary.write(out_dir / "data_summary.json") if summary else None,
        report_json=out_dir / "drift.json",
    )
    report.report_json.write_text(json.dumps(drift_json(report), indent=2))
    return report


def score_drift(summary: DataSummary | None, reference: DriftReference, config: DriftConfig) -> DriftReport:
    """The verdict and scores, or 'skipped' with the reason when there is nothing valid to compare."""
    base = {"reference_version": reference.version, "config": config, "report_json": None, "summary_json": None}
    why = skip_reason(summary, reference, config)
    if why is not None:
        return DriftReport("skipped", f"not measured: {why}", features=(), label_psi=None, label_shares={}, **base)
    known = reference.summary.feature_counts
    scores = [FeatureDrift(name, psi(np.array(c), np.array(known[name]))) for name, c in summary.feature_counts.items()]
    features = tuple(sorted(scores, key=lambda feature: -feature.psi))
    label_psi, shares = label_drift(summary.label_counts, reference.summary.label_counts)
    return DriftReport(
        verdict(features, label_psi, config),
        f"against {reference.note}",
        features=features,
        label_psi=label_psi,
        label_shares=shares,
        **base,
    )


def skip_reason(summary: DataSummary | None, reference: DriftReference, config: DriftConfig) -> str | None:
    if summary is None:
        return "the file failed critical checks"
    if not config.enabled:
        return "drift.enabled is false"
    return reference.note if reference.summary is None else None


def drift_json(report: DriftReport) -> dict:
    """The drift report as the JSON attached to the MLflow run."""
    return {
        "status": report.status,
        "note": report.note,
        "method": "PSI, one bin per pixel value 0..16 / per label, counts smoothed by +0.5",
        "reference_version": report.reference_version,
        "thresholds": report.config.model_dump(),
        "label_psi": report.label_psi,
        "label_shares": {label: {"here": a, "reference": b} for label, (a, b) in report.label_shares.items()},
        "features": {feature.name: feature.psi for feature in report.features},
    }
