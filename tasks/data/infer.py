"""Inference: propose a spec for any table, with a reason per column, for a person to review.

Each feature type's module (tasks.core.features) holds its inference rules; they run in order on a column's values
and the first proposal wins. `greenlight init` prints the decisions and writes the spec (write_spec_file).
A near-unique whole-number column gets a warning line under the table (typed id, or left a feature), and a reviewed
spec that declares a key numeric is refused before a run trains on it (refuse_numeric_keys).
The order of the rules and the families proposed: docs/spec.md.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import ValidationError

from tasks.core.errors import DataRejected, GreenlightError
from tasks.core.features import FEATURE_TYPES, INFERENCE_RULES
from tasks.core.features.columns import ColumnValues, column_values, count, observed_values, plain
from tasks.core.features.identifier import key_evidence
from tasks.core.features.numeric import NumericFeature
from tasks.core.features.text import TRAINED_VOCABULARY as TRAINED_VOCABULARY  # benchmarks size tokenizers by it
from tasks.core.spec import DatasetSpec, FeatureSpec, ModelSpec, Spec, TargetSpec, validation_problems, value_text

# A numeric target with this many distinct whole values or fewer is read as classes (auto task).
MAX_CLASSIFICATION_LEVELS = 20
EXAMPLES = 3


@dataclass(frozen=True)
class ColumnReport:
    """One column as `greenlight init` shows it: what it holds and what inference made of it, and why."""

    name: str
    dtype: str
    distinct: int
    null_share: float
    examples: tuple[Any, ...]
    type: str
    why: str
    warning: str = ""  # one line a reviewer must not miss (unique_warning), printed under the table


def examples_of(series: pd.Series) -> tuple[Any, ...]:
    present = series[series.notna()]
    return tuple(plain(v) for v in present.drop_duplicates().head(EXAMPLES))


def infer_feature(name: str, series: pd.Series) -> FeatureSpec:
    """The proposed feature for one column, with the reason in `why`: the first type's rule that proposes one."""
    values = column_values(series, name)
    for rule in INFERENCE_RULES:
        feature = rule.propose(values)
        if feature is not None:
            return feature
    # The ignore type's last rule takes any text, and numbers always find one: this is a registry defect.
    raise GreenlightError(f"column '{name}': no feature type's inference rule took its {values.kind} values")


def infer_target(series: pd.Series, task: str) -> TargetSpec:
    """The target's task (auto: classification for text, booleans and few whole numbers) and its labels."""
    name = str(series.name)
    values = column_values(series)
    if values.kind in ("empty", "other"):
        what = "no value" if values.kind == "empty" else f"{series.dtype} values"
        raise DataRejected(f"target '{name}' holds {what}; choose a column with the values to predict (--target)")
    missing = ""
    if values.null_share:
        absent = count(len(series) - len(values.present))
        missing = f"; {absent} rows have no target value: validation refuses them, so fill or drop those rows"
    if task == "auto":
        task, reason = auto_task(values)
    else:
        reason = "as asked (--task)"
    if task == "regression":
        if values.kind != "number":
            raise DataRejected(
                f"target '{name}' holds {values.kind} values (e.g. {examples_of(series)}); regression needs"
                " numbers: use --task classification, or choose another --target"
            )
        return TargetSpec(name=name, task="regression", why=f"{reason}: regression{missing}")
    labels = observed_values(values)
    if len(labels) < 2:
        raise DataRejected(
            f"target '{name}' holds a single value ({labels[0]!r}): there is nothing to predict; choose another"
            " --target or add rows of the other classes"
        )
    why = f"{reason}: classification with {len(labels)} labels{missing}"
    return TargetSpec(name=name, task="classification", why=why, labels=labels)


def auto_task(values: ColumnValues) -> tuple[str, str]:
    """('classification' or 'regression', why) from a target's values."""
    if values.kind in ("text", "bool"):
        return "classification", f"{values.kind} values"
    if values.whole and values.distinct <= MAX_CLASSIFICATION_LEVELS:
        return (
            "classification",
            f"whole numbers with {values.distinct} distinct values (<= {MAX_CLASSIFICATION_LEVELS})",
        )
    kind = "whole numbers" if values.whole else "fractional numbers"
    return "regression", f"{kind} with {count(values.distinct)} distinct values"


def check_target(frame: pd.DataFrame, target: str) -> None:
    """Refuse a target that is not a column, naming the columns there are."""
    if target in frame.columns:
        return
    close = [c for c in map(str, frame.columns) if c.strip().lower() == target.strip().lower()]
    hint = f" (names are case- and space-sensitive: '{close[0]}'?)" if close else ""
    names = ", ".join(f"'{c}'" for c in list(frame.columns)[:12])
    raise DataRejected(f"target '{target}' is not a column of the data{hint}; the columns are {names}")


def column_report(series: pd.Series, feature_type: str, why: str, warning: str = "") -> ColumnReport:
    values = series[series.notna()]
    return ColumnReport(
        name=str(series.name),
        dtype=str(series.dtype),
        distinct=int(values.map(value_text).nunique()) if len(values) else 0,
        null_share=float(1 - len(values) / len(series)) if len(series) else 0.0,
        examples=examples_of(series),
        type=feature_type,
        why=why,
        warning=warning,
    )


def unique_warning(feature: FeatureSpec, series: pd.Series) -> str:
    """A line on near-unique whole numbers: typed id (a key, never read), or left numeric (no key evidence); else "".

    Either is a decision the reviewer must check: a key read by the model is learned by heart (it scores well on
    held-out rows of the same file and means nothing on new ones), and a quantity typed id is lost to the model."""
    if feature.type not in ("id", "numeric"):
        return ""
    evidence = key_evidence(column_values(series, feature.name))
    if evidence is None:
        return ""
    if feature.type == "id" and evidence.is_key:
        return (
            f"'{feature.name}' looks like a key ({evidence.summary()}; {evidence.reasons()}): typed id, never read by"
            " the model; if it is a real quantity, set type: numeric and allow_unique: true"
        )
    if feature.type == "numeric" and evidence.near_unique:
        return (
            f"'{feature.name}' is near-unique ({evidence.summary()}) but spread too widely to tell a key from a"
            " measurement: left numeric; if it numbers or names the rows, set type: id"
        )
    return ""


def refuse_numeric_keys(dataset: DatasetSpec, frame: pd.DataFrame, source: str) -> None:
    """Refuse a reviewed spec whose numeric feature holds a key (inference would type it id), unless the feature
    says allow_unique: true: the model would learn which rows it was given, not the data."""
    found = []
    for feature in dataset.features:
        if not isinstance(feature, NumericFeature) or feature.allow_unique or feature.name not in frame:
            continue
        evidence = key_evidence(column_values(frame[feature.name], feature.name))
        if evidence is not None and evidence.is_key:
            found.append(f"'{feature.name}' ({evidence.summary()}; {evidence.reasons()})")
    if found:
        what = f"column {found[0]} is" if len(found) == 1 else f"columns {', '.join(found)} are"
        looks = "looks like a key" if len(found) == 1 else "look like keys"
        raise DataRejected(
            f"{what} numeric in {source} but {looks}: a model that reads a key learns the rows it was given (and"
            " the order they were numbered in), not the data, and still passes its checks on held-out rows of the"
            " same file. Set type: id (not read by the model), or, if it is a real quantity, add allow_unique: true"
            " to the feature."
        )


def infer_spec(
    frame: pd.DataFrame,
    target: str,
    task: Literal["auto", "classification", "regression"] = "auto",
    name: str = "dataset",
) -> tuple[Spec, list[ColumnReport]]:
    """Propose a spec for a table: each column's type and why, the target's task and labels.

    Raises DataRejected for a missing or empty target, or a table with no column the model can read.
    """
    frame = frame.rename(columns=str)
    check_target(frame, target)
    target_spec = infer_target(frame[target], task)
    features = one_model_input_kind(
        [infer_feature(column, frame[column]) for column in frame.columns if column != target]
    )
    reports = [column_report(frame[f.name], f.type, f.why, unique_warning(f, frame[f.name])) for f in features]
    reports.append(column_report(frame[target], f"target: {target_spec.task}", target_spec.why))
    try:
        dataset = DatasetSpec(name=name, target=target_spec, features=features)
    except ValidationError as error:
        raise DataRejected(
            f"no column of the data can be a feature ({validation_problems(error)}):\n" + render_column_table(reports)
        ) from error
    return Spec(dataset=dataset, model=ModelSpec(family=proposed_family(dataset))), reports


def one_model_input_kind(features: list[FeatureSpec]) -> list[FeatureSpec]:
    """What the families read today: an image alone, at most one text (the first); the rest become ignore,
    saying why, so the reviewer sees the decision."""
    kept: list[FeatureSpec] = []
    alone = next((f for f in features if f.sole_input), None)
    first: dict[str, FeatureSpec] = {}  # a one-per-spec type's first feature, the one the model reads
    for feature in features:
        if alone is not None and feature is not alone and feature.model_input is not None:
            why = f"{feature.why}; ignored: an {alone.type} model reads '{alone.name}' alone (yet)"
            feature = FeatureSpec(name=feature.name, type="ignore", why=why)
        elif feature.one_per_spec and first.setdefault(feature.type, feature) is not feature:
            read = first[feature.type]
            why = f"{feature.why}; ignored: one {feature.type} feature per model (yet), '{read.name}' is read"
            feature = FeatureSpec(name=feature.name, type="ignore", why=why)
        kept.append(feature)
    return kept


def proposed_family(dataset: DatasetSpec) -> str:
    """The family that reads the spec's features: the first a feature's type names, else the table family."""
    named = (feature.proposed_family() for feature in dataset.model_features)
    return next((family for family in named if family), "auto")


def render_column_table(reports: list[ColumnReport]) -> str:
    """A fixed-width text table for the terminal: column, type, dtype, distinct, missing, examples, why; then one
    line per column warning (near-unique whole numbers)."""
    header = ("column", "type", "dtype", "distinct", "missing", "examples", "why")
    rows = [
        (
            clip(r.name, 28),
            r.type,
            clip(r.dtype, 10),
            count(r.distinct),
            f"{r.null_share:.1%}" if r.null_share else "-",
            clip(", ".join(map(shown, r.examples)), 32),
            r.why,
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, tuple("-" * w for w in widths) + ("---",), *rows]:
        cells = [
            cell.rjust(w) if i in (3, 4) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    warnings = [f"warning: {r.warning}" for r in reports if r.warning]
    return "\n".join(lines + ([""] + warnings if warnings else []))


def shown(value: Any) -> str:
    """An example as the table prints it: 0.0381, not 0.038075906433423026."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def spec_file_header(out: Path, settings: dict[str, Any]) -> str:
    """The comment on top of a written spec: where it came from, how to review it, how to run it."""
    source = settings.get("data") or "the data"
    inferred = [name for name, kind in FEATURE_TYPES.items() if kind.inference_rules]
    unread = ", ".join(name for name in inferred if FEATURE_TYPES[name].model_input is None)
    helps = "".join(f"#   {name}: {kind.settings_help}\n" for name, kind in FEATURE_TYPES.items() if kind.settings_help)
    return (
        f"# Greenlight spec proposed by `greenlight init` from {source} on {datetime.now(UTC):%Y-%m-%d}.\n"
        "# Review it before you commit it: each feature's `why` says why inference chose its type.\n"
        f"#   type: {' | '.join(inferred)}  ({unread}: not read by the model)\n"
        f"{helps}"
        "#   nullable: false makes a missing value reject the file; min/max and values are what the data held:\n"
        "#     validation warns well outside them, and the model answers unseen categories anyway.\n"
        "#   target.task and target.labels (in output order) decide what the model answers.\n"
        f"# Then run:  greenlight run --spec {out}\n"
    )


def write_spec_file(spec: Spec, settings: dict[str, Any], out: Path, force: bool = False) -> Path:
    """Write settings (data, model_name, ...) and the spec as commented YAML that `--spec` reads back.

    Refuses to replace an existing file (a reviewed spec holds a person's edits) unless force is set.
    """
    import yaml

    if out.exists() and not force:
        raise GreenlightError(f"{out} already exists; pass --force to replace it, or choose another --out")
    body = {**settings, **spec.model_dump(mode="json", exclude_none=True)}
    text = spec_file_header(out, settings) + yaml.safe_dump(body, sort_keys=False, width=110, allow_unicode=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
