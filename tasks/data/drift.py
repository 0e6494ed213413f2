"""Drift stage: compare the input's distributions with the training data of the production version.

PSI per column over bins that follow each feature type (FeatureSpec.drift_kinds / drift_values), against the
summary stored with the production version when it was registered; a summary of another spec is not compared.
What each type compares, the thresholds and what chance alone scores: docs/data-checks.md.
"""

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import DriftConfig
from tasks.core.records import ProductionFile
from tasks.core.spec import DatasetSpec, FeatureSpec, value_text
from tasks.data.validation import ValidationReport

# Format 2 also holds text and image rows: they reuse its fields (new kinds, new keys), so a reader of format 2
# reads them, and an older reader meets keys its spec does not expect and skips drift as "another spec".
SUMMARY_FORMAT = 2
# Jeffreys-style smoothing: half a row per bin keeps ln(p/q) finite without swamping real counts.
SMOOTHING = 0.5
# Interior cut points of ten equally populated bins: fine enough to see a shift of a fraction of a
# standard deviation, coarse enough that 100 rows give each bin ~10.
DECILES = np.linspace(0.1, 0.9, 9)
SummaryKind = Literal["bins", "values", "integers", "vocabulary", "empty"]
# The reference keeps its 5,000 most common words: ~50 KB of JSON in every registered version, and in a
# language most (~85-90%) of running text; rarer words count as out of vocabulary on both sides, so the cap
# raises the reference's own rate, not the comparison.
VOCABULARY_SIZE = 5_000
# What is reported beside the PSI, by summary kind (report: the "unseen" column).
SHARE_WORDS = {"values": "unseen", "vocabulary": "out of vocabulary", "empty": "empty"}


@dataclass(frozen=True)
class ColumnSummary:
    """One column's distribution, in the bins later data is compared over."""

    kind: SummaryKind
    # per bin (bins), per value (values), per integer from `low` (integers); vocabulary: [words in it, words
    # outside it]; empty: [non-empty texts, empty texts]
    counts: list[int]
    missing: int = 0
    edges: list[float] | None = None  # bins: interior cut points (this data's deciles)
    values: list[str] | None = None  # values: each counted value as value_text; vocabulary: its words
    low: int | None = None  # integers: the value counts[0] stands for


@dataclass(frozen=True)
class DataSummary:
    """A dataset's fingerprint and its distributions per model column and target, keyed by column."""

    sha256: str
    rows: int
    target: str
    columns: dict[str, ColumnSummary]

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps({"format": SUMMARY_FORMAT, **asdict(self)}))
        return path

    @classmethod
    def read(cls, path: Path) -> "DataSummary":
        raw = json.loads(path.read_text())
        found = raw.pop("format", None)
        if found == 1:
            return from_digits_summary(raw)
        if found != SUMMARY_FORMAT:
            raise ValueError(f"{path} is not a data summary of format {SUMMARY_FORMAT} (found {found})")
        columns = {name: ColumnSummary(**column) for name, column in raw.pop("columns").items()}
        return cls(columns=columns, **raw)


def from_digits_summary(raw: dict) -> DataSummary:
    """A format-1 summary (digits only, before specs): 0..16 counts per pixel and counts per label."""
    columns = {name: ColumnSummary("integers", counts, low=0) for name, counts in raw["feature_counts"].items()}
    labels = sorted(raw["label_counts"], key=lambda text: (len(text), text))
    columns["target"] = ColumnSummary("values", [raw["label_counts"][k] for k in labels], values=labels)
    return DataSummary(sha256=raw["sha256"], rows=raw["rows"], target="target", columns=columns)


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
    kind: str = ""  # the summary kind: bins, values, integers, vocabulary or empty
    # The share reported beside the PSI: of present values the reference never saw (values), of words outside
    # its vocabulary (vocabulary), of empty texts (empty); None for the binned kinds.
    unseen_share: float | None = None
    reference_share: float | None = None  # the same share in the reference (vocabulary, empty)

    def share_text(self) -> str:
        """' (12% unseen)', ' (40% empty, reference 5%)', or '' when there is no share worth a word."""
        if not self.unseen_share and not self.reference_share:
            return ""
        against = f", reference {self.reference_share:.0%}" if self.reference_share is not None else ""
        return f" ({self.unseen_share or 0:.0%} {SHARE_WORDS.get(self.kind, 'unseen')}{against})"


@dataclass(frozen=True)
class DriftReport:
    """PSI per feature column (most drifted first) and on the target, the verdict, and this data's summary."""

    status: str  # "skipped", "ok", "warning" or "blocking"
    note: str
    reference_version: str | None
    features: tuple[FeatureDrift, ...]
    label_psi: float | None  # the target's PSI (classification labels or regression deciles)
    label_shares: dict[str, tuple[float, float]]  # classification: label -> (share here, share in the reference)
    config: DriftConfig
    report_json: Path | None
    summary_json: Path | None  # stored with the version this run registers, as the next runs' reference

    @property
    def max_feature_psi(self) -> float | None:
        return self.features[0].psi if self.features else None

    def top_text(self) -> str:
        """ "income PSI 1.3, contract PSI 0.52 (12% unseen), ..." for the configured number of features."""
        return ", ".join(f"{f.name} PSI {f.psi:.3g}{f.share_text()}" for f in self.features[: self.config.top_features])


@dataclass(frozen=True)
class Measured:
    """One quantity drift compares (a column, or a text's / image's measure): its kind and values here."""

    kind: SummaryKind
    values: pd.Series  # what its summary counts: the column itself, word lists, flags or per-file figures
    feature: FeatureSpec | None  # None for the target


def expected_kinds(spec: DatasetSpec) -> dict[str, SummaryKind]:
    """Summary key -> kind for everything drift compares of the model's features (each type says what it
    compares: its columns, or `<name>.<measure>` for a text or an image), and the target."""
    kinds = {key: kind for feature in spec.model_features for key, kind in feature.drift_kinds().items()}
    return kinds | {spec.target.name: "values" if spec.task == "classification" else "bins"}


def measure(frame: pd.DataFrame, spec: DatasetSpec) -> dict[str, Measured]:
    """Every quantity drift compares, keyed as expected_kinds; taken once, since decoding images is slow."""
    measured = {}
    for feature in spec.model_features:
        values = feature.drift_values(frame)
        measured |= {key: Measured(kind, values[key], feature) for key, kind in feature.drift_kinds().items()}
    target_kind = expected_kinds(spec)[spec.target.name]
    return measured | {spec.target.name: Measured(target_kind, frame[spec.target.name], None)}


def as_numbers(series: pd.Series) -> np.ndarray:
    """Float values with NaN for missing, text that is not a number, and infinities."""
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(numbers), numbers, np.nan)


def decile_edges(present: np.ndarray) -> list[float]:
    """The deciles as interior cut points; a value two deciles fall on (10%+ of the rows, a constant column, an
    image size) also gets a cut just above it, so data moving off it to either side lands in another bin."""
    if not len(present):
        return []
    deciles, repeats = np.unique(np.quantile(present, DECILES), return_counts=True)
    above = np.nextafter(deciles[repeats > 1], np.inf)
    return np.unique(np.concatenate([deciles, above])).tolist()


def bins_summary(series: pd.Series) -> ColumnSummary:
    """Counts over this column's own decile edges, plus the missing count."""
    numbers = as_numbers(series)
    present = numbers[~np.isnan(numbers)]
    edges = decile_edges(present)
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return ColumnSummary("bins", counts.tolist(), missing=int(len(numbers) - len(present)), edges=edges)


def text_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """Rows per value (as value_text, so 3 and 3.0 are one) and the missing count."""
    counts: dict[str, int] = {}
    for value, n in series.value_counts(dropna=True).items():
        key = value_text(value)
        counts[key] = counts.get(key, 0) + int(n)
    blank = counts.pop("", 0)
    return counts, int(series.isna().sum()) + blank


def values_summary(series: pd.Series) -> ColumnSummary:
    counts, absent = text_counts(series)
    values = sorted(counts, key=lambda text: (len(text), text))
    return ColumnSummary("values", [counts[v] for v in values], missing=absent, values=values)


def integer_counts(series: pd.Series, low: int, bins: int) -> np.ndarray:
    """Rows per integer low..low+bins-1; values outside (a relaxed suite) go to the end bins."""
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        values = series.to_numpy()
    else:
        numbers = as_numbers(series)
        values = np.rint(numbers[~np.isnan(numbers)]).astype(np.int64)
    return np.bincount(np.clip(values - low, 0, bins - 1), minlength=bins)


def integers_summary(series: pd.Series, feature: FeatureSpec) -> ColumnSummary:
    low, high = int(feature.min or 0), int(feature.max if feature.max is not None else 0)
    return ColumnSummary("integers", integer_counts(series, low, high - low + 1).tolist(), low=low)


def word_coverage(words: pd.Series, vocabulary: set[str]) -> list[int]:
    """[words in the vocabulary, words outside it] over these texts' word lists."""
    found = Counter(word in vocabulary for word in chain.from_iterable(words))
    return [found[True], found[False]]


def vocabulary_summary(words: pd.Series) -> ColumnSummary:
    """The most common words of the even-numbered texts, and how many words of the odd-numbered ones it covers.

    Measured on texts it was not built from, the reference's out-of-vocabulary rate is the one new text from
    the same source scores. Measured on its own texts, a reference with fewer distinct words than the cap
    would score 0%, and every rare word of a new file would count as drift.
    """
    counts = Counter(chain.from_iterable(words.iloc[::2]))
    vocabulary = sorted(counts, key=lambda word: (-counts[word], word))[:VOCABULARY_SIZE]
    return ColumnSummary("vocabulary", word_coverage(words.iloc[1::2], set(vocabulary)), values=vocabulary)


def empty_summary(empty: pd.Series) -> ColumnSummary:
    return ColumnSummary("empty", [int((~empty).sum()), int(empty.sum())])


def column_summary(measured: Measured) -> ColumnSummary:
    """The summary of one measured quantity, in the bins its kind calls for."""
    if measured.kind == "integers":
        return integers_summary(measured.values, measured.feature)
    by_kind = {"bins": bins_summary, "values": values_summary, "vocabulary": vocabulary_summary, "empty": empty_summary}
    return by_kind[measured.kind](measured.values)


def summarize(
    frame: pd.DataFrame, sha256: str, spec: DatasetSpec, measured: dict[str, Measured] | None = None
) -> DataSummary:
    """Summarise every quantity drift compares of the model's features, and the target.

    measured: this frame's measures when already taken (measure_drift also scores them).
    """
    measured = measured if measured is not None else measure(frame, spec)
    columns = {key: column_summary(quantity) for key, quantity in measured.items()}
    return DataSummary(sha256=sha256, rows=len(frame), target=spec.target.name, columns=columns)


def two_bin_share(counts: np.ndarray | list[int]) -> float | None:
    """The second bin's share (out-of-vocabulary words, empty texts), or None with nothing counted."""
    total = sum(counts)
    return float(counts[1]) / total if total else None


def compared_counts(series: pd.Series, reference: ColumnSummary) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(counts here, counts in the reference) over the reference's bins, and the share reported beside the PSI."""
    there = np.array(reference.counts, dtype=float)
    if reference.kind == "integers":
        return integer_counts(series, reference.low or 0, len(there)).astype(float), there, None
    if reference.kind == "bins":
        numbers = as_numbers(series)
        present = numbers[~np.isnan(numbers)]
        here = np.bincount(np.searchsorted(reference.edges or [], present, side="right"), minlength=len(there))
        absent = len(numbers) - len(present)
        return np.append(here, absent).astype(float), np.append(there, reference.missing), None
    if reference.kind == "vocabulary":
        here = np.array(word_coverage(series, set(reference.values or [])), dtype=float)
        return here, there, two_bin_share(here)
    if reference.kind == "empty":
        here = np.array(empty_summary(series).counts, dtype=float)
        return here, there, two_bin_share(here)
    counts, absent = text_counts(series)
    known = reference.values or []
    unseen = sum(n for value, n in counts.items() if value not in set(known))
    here = np.array([counts.get(value, 0) for value in known] + [unseen, absent], dtype=float)
    present = sum(counts.values())
    return here, np.append(there, [0, reference.missing]), unseen / present if present else 0.0


def psi(current: np.ndarray, reference: np.ndarray) -> float:
    """Population Stability Index of two count vectors over the same bins, each count smoothed by +0.5."""
    p = (current + SMOOTHING) / (current.sum() + SMOOTHING * len(current))
    q = (reference + SMOOTHING) / (reference.sum() + SMOOTHING * len(reference))
    return float(np.sum((p - q) * np.log(p / q)))


def label_shares(series: pd.Series, reference: ColumnSummary) -> dict[str, tuple[float, float]]:
    """Each label's share here and in the reference, over the union of labels."""
    counts, _ = text_counts(series)
    known = dict(zip(reference.values or [], reference.counts, strict=True))
    labels = sorted(set(counts) | set(known), key=lambda text: (len(text), text))
    here, there = max(sum(counts.values()), 1), max(sum(known.values()), 1)
    return {label: (counts.get(label, 0) / here, known.get(label, 0) / there) for label in labels}


def verdict(features: tuple[FeatureDrift, ...], label_psi: float, config: DriftConfig) -> str:
    """'blocking' past either block threshold, 'warning' past either warn threshold, else 'ok'."""
    top = features[0].psi if features else 0.0
    if top >= config.feature_block_psi or label_psi >= config.label_block_psi:
        return "blocking"
    if top >= config.feature_warn_psi or label_psi >= config.label_warn_psi:
        return "warning"
    return "ok"


@task(name="read_drift_reference", cache_policy=NO_CACHE)
def read_drift_reference(stored: ProductionFile) -> DriftReference:
    """The production version's data summary; a missing or unreadable one skips drift, it never fails the run."""
    version = stored.version
    if version is None:
        note = f"no production version of '{stored.model_name}' yet: nothing to compare with"
        return DriftReference(None, None, note)
    try:
        if stored.error is not None:
            raise OSError(stored.error)
        summary = DataSummary.read(stored.path) if stored.path is not None else None
    except (OSError, ValueError, TypeError, KeyError) as error:
        return DriftReference(version, None, f"production v{version}'s data summary: {error}")
    if summary is None:
        note = f"production v{version} has no stored data summary (registered before drift checks)"
        return DriftReference(version, None, note)
    note = f"production v{version}'s training data ({summary.rows} rows, sha256 {summary.sha256[:12]})"
    return DriftReference(version, summary, note)


@task(name="measure_drift", cache_policy=NO_CACHE)
def measure_drift(
    frame: pd.DataFrame,
    sha256: str,
    validation: ValidationReport,
    reference: DriftReference,
    config: DriftConfig,
    out_dir: Path,
    spec: DatasetSpec,
) -> DriftReport:
    """Summarise this data (for the version it may become) and score its drift from the reference."""
    out_dir.mkdir(parents=True, exist_ok=True)
    valid = frame if validation.passed else None
    measured = measure(valid, spec) if valid is not None else None
    summary = summarize(valid, sha256, spec, measured) if valid is not None else None
    report = replace(
        score_drift(valid, spec, reference, config, measured),
        summary_json=summary.write(out_dir / "data_summary.json") if summary else None,
        report_json=out_dir / "drift.json",
    )
    report.report_json.write_text(json.dumps(drift_json(report), indent=2))
    return report


def score_drift(
    frame: pd.DataFrame | None,
    spec: DatasetSpec,
    reference: DriftReference,
    config: DriftConfig,
    measured: dict[str, Measured] | None = None,
) -> DriftReport:
    """The verdict and scores, or 'skipped' with the reason when there is nothing valid to compare.

    measured: this frame's measures when already taken (measure_drift also summarises them).
    """
    base = {"reference_version": reference.version, "config": config, "report_json": None, "summary_json": None}
    why = skip_reason(frame, spec, reference, config)
    if why is None:
        measured = measured if measured is not None else measure(frame, spec)
        features, idle = feature_scores(measured, spec, reference.summary)
        why = None if features else f"nothing comparable, {not_comparable_text(idle)}"
    if why is not None:
        return DriftReport("skipped", f"not measured: {why}", features=(), label_psi=None, label_shares={}, **base)
    known, target = reference.summary.columns[spec.target.name], measured[spec.target.name].values
    label_psi = psi(*compared_counts(target, known)[:2])
    shares = label_shares(target, known) if spec.task == "classification" else {}
    note = f"against {reference.note}" + (f"; not comparable, {not_comparable_text(idle)}" if idle else "")
    return DriftReport(
        verdict(features, label_psi, config),
        note,
        features=features,
        label_psi=label_psi,
        label_shares=shares,
        **base,
    )


def feature_scores(
    measured: dict[str, Measured], spec: DatasetSpec, reference: DataSummary
) -> tuple[tuple[FeatureDrift, ...], list[str]]:
    """PSI per compared quantity (most drifted first), and the quantities with nothing measured on one side."""
    scores, idle = [], []
    for key, quantity in measured.items():
        if key == spec.target.name:
            continue
        known = reference.columns[key]
        here, there, share = compared_counts(quantity.values, known)
        if not here.sum() or not there.sum():
            idle.append(key)
            continue
        there_share = two_bin_share(known.counts) if known.kind in ("vocabulary", "empty") else None
        scores.append(FeatureDrift(key, psi(here, there), known.kind, share, there_share))
    return tuple(sorted(scores, key=lambda feature: -feature.psi)), idle


def not_comparable_text(idle: list[str]) -> str:
    """Which quantities had nothing measured on one side: a column whose images all fail to decode, or whose
    texts are all empty, cannot be scored, and saying so beats a PSI of smoothing alone."""
    shown = ", ".join(idle[:8]) + (" ..." if len(idle) > 8 else "")
    return f"nothing measured here or in the reference (no image decodes, or no text has words): {shown}"


def skip_reason(
    frame: pd.DataFrame | None, spec: DatasetSpec, reference: DriftReference, config: DriftConfig
) -> str | None:
    if frame is None:
        return "the file failed critical checks"
    if not config.enabled:
        return "drift.enabled is false"
    if reference.summary is None:
        return reference.note
    return spec_mismatch(spec, reference)


def spec_mismatch(spec: DatasetSpec, reference: DriftReference) -> str | None:
    """Why the reference cannot be compared with data of this spec (other columns or types), or None."""
    wanted = expected_kinds(spec)
    found = {name: column.kind for name, column in reference.summary.columns.items()}
    if wanted == found and reference.summary.target == spec.target.name:
        return None
    missing = [name for name in wanted if name not in found]
    extra = [name for name in found if name not in wanted]
    retyped = [name for name in wanted if name in found and found[name] != wanted[name]]
    parts = [
        f"{label} {', '.join(repr(n) for n in names[:5])}{' ...' if len(names) > 5 else ''}"
        for label, names in (("new here:", missing), ("gone:", extra), ("other type:", retyped))
        if names
    ]
    target = f"target '{reference.summary.target}' -> '{spec.target.name}'"
    detail = "; ".join(parts) or target
    return f"{reference.note} was made for another spec ({detail}): nothing comparable"


def metric_name(column: str) -> str:
    """A column name MLflow accepts as part of a metric name (letters, digits, _ - . and spaces)."""
    return re.sub(r"[^\w.\- ]", "_", column)


def drift_json(report: DriftReport) -> dict:
    """The drift report as the JSON attached to the MLflow run."""
    return {
        "status": report.status,
        "note": report.note,
        "method": "PSI per column over the reference's bins (numeric: deciles + missing; categorical: each"
        " category + unseen + missing; pixel grid: each integer value; text: words per text over deciles, words"
        " in / outside the reference's vocabulary, empty / non-empty texts; image files: intensity mean and"
        " standard deviation, height and width over deciles; datetime: each part over deciles + missing; target:"
        " labels or deciles), counts smoothed by +0.5",
        "reference_version": report.reference_version,
        "thresholds": report.config.model_dump(),
        "label_psi": report.label_psi,
        "label_shares": {label: {"here": a, "reference": b} for label, (a, b) in report.label_shares.items()},
        "features": {f.name: feature_json(f) for f in report.features},
    }


def feature_json(feature: FeatureDrift) -> dict:
    """A feature row: PSI and kind, and the share beside it (here and, for text, in the reference) where one is."""
    shares = {"unseen_share": feature.unseen_share, "reference_share": feature.reference_share}
    return {"psi": feature.psi, "kind": feature.kind} | {key: v for key, v in shares.items() if v is not None}
