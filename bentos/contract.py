"""The HTTP contract of POST /predict, compiled from the spec of the version being served.

A request is `{"records": [{column: value, ...}, ...]}`, each field typed by its feature (tasks.core.spec):
numeric a JSON number (strict: no strings or booleans; finite); categorical and binary a string, number or
boolean (encoded with value_text, so 3, 3.0 and "3" are one category); text a JSON string, not empty, at most
the feature's max_chars (tokenized by the tokenizer inside the model file); image a base64 PNG or JPEG
(decoded and resized by tasks.core.images, the code training used); id and ignore columns accepted and
ignored. A nullable feature may be absent or null; any other is required. An all-numeric spec (the digits'
pixel grid, a table of numbers) also takes `{"rows": [[...], ...]}`, values in spec.input_columns order.

A refusal names the first problem, where it is and the value found there, e.g.
`record 2, field 'bill_length_mm': "long" is not a number`. Validation stops at the first bad record
(fail_fast), so a 8 MiB body of garbage costs one parse, not one error object per cell. An unseen category
is not a refusal: the graph maps it to its out-of-vocabulary code.

The answer: `predictions` in the user's own label values (or numbers, for regression), `probabilities`
keyed by label text (classification), `model_version` and `model_name`.
"""

import base64
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, create_model
from pydantic_core import to_json

from tasks.core.images import ImageUnreadable, decode_base64, encode_png, image_pixels
from tasks.core.spec import CATEGORICAL_INPUT, PIXELS_INPUT, TEXT_INPUT, DatasetSpec, FeatureSpec, value_text

NAN = float("nan")
# Larger batches belong to a batch job, not a synchronous HTTP call; the cap bounds request memory.
MAX_ROWS = 4096
# Up to this many rows an answer's softmax runs in plain Python (see softmax_row); beyond, numpy is faster.
SMALL_BATCH = 16
# 4096 rows of 64 values written with 17 significant digits take ~5 MB; 8 MiB leaves room for whitespace.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Values echoed back in a refusal are cut to this many characters: the body is the client's own.
ECHO_CHARS = 40
# Field names listed when a record holds an unknown one, and categories listed in the documentation:
# enough to spot a typo or see the kind of value, not a wall of text.
LISTED_FIELDS = 12
# Feature types the model never reads: accepted in a record so a client can send its whole row, then dropped.
IGNORED_TYPES = ("id", "ignore")
CATEGORY_TYPES = ("categorical", "binary")

# strict: "3" or true is a client bug, not a number; NaN/inf would silently poison the outputs.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
# A category arrives as the JSON type of the file it was learned from: text, integers or booleans, or
# floats (pandas reads an integer column with gaps as floats, so a client's 3.0 is the category 3).
# value_text encodes each as training did; strict keeps "true" and true, or "3" and 3.5, apart.
Category = (
    Annotated[str, Strict()]
    | Annotated[int, Strict()]
    | Annotated[bool, Strict()]
    | Annotated[float, Strict(), Field(allow_inf_nan=False)]
)
CATEGORY_HINT = "send a string, number or boolean"
# A text longer than this is refused when its feature sets no max_chars: a request is not a book.
DEFAULT_MAX_CHARS = 100_000
EXAMPLE_TEXT = "An example text: replace it with your own."


@dataclass(frozen=True)
class Refusal:
    """A client error: the HTTP status and one sentence saying what to fix, with where it is."""

    status: int
    message: str
    record: int | None = None
    field: str | None = None
    row: int | None = None
    column: str | None = None

    def body(self) -> bytes:
        where = {"record": self.record, "field": self.field, "row": self.row, "column": self.column}
        return json.dumps({"error": self.message, **{k: v for k, v in where.items() if v is not None}}).encode()


@dataclass(frozen=True)
class Batch:
    """A request the contract accepted: ONNX Runtime feeds for its rows."""

    feeds: dict[str, np.ndarray]
    size: int


@dataclass(frozen=True)
class RowsLayout:
    """How `{"rows": [[...]]}` maps onto the graph, for an all-numeric spec."""

    input_name: str
    columns: list[str]
    required: np.ndarray  # positions that may not be null

    @property
    def takes_null(self) -> bool:
        return not self.required.all()


@dataclass(frozen=True)
class Contract:
    """The request model and answer format of one served spec; compiled once when a version is loaded."""

    spec: DatasetSpec
    request: type[BaseModel]
    attributes: dict[str, str]  # model input column -> attribute of a validated record
    rows: RowsLayout | None
    label_texts: list[str]  # probability keys, computed once: value_text per label per request shows in profiles
    inputs: dict[str, list[str]]  # ONNX input -> attributes of a validated record, in spec.onnx_inputs() order

    @property
    def columns(self) -> list[str]:
        """Every field a record may hold, in spec order."""
        return [column for feature in self.spec.features for column in feature.source_columns]

    def parse(self, body: bytes) -> Batch | Refusal:
        """The body as feeds (one validating parse), or the refusal naming its first problem."""
        if not body.strip():
            return Refusal(422, f"body is empty: send {self.shape()}")
        try:
            request = self.request.model_validate_json(body)
        except ValidationError as error:
            return self.describe(error.errors(include_url=False)[0])
        # Only an all-numeric spec's request has a rows field; asking pydantic for a missing one raises inside.
        records, rows = request.records, request.rows if self.rows is not None else None
        if records is not None and rows is not None:
            return Refusal(422, 'send either "records" or "rows", not both')
        if records is not None:
            return self.from_records(records)
        if rows is not None:
            return self.from_rows(rows)
        return Refusal(422, f'field "records" is missing: send {self.shape()}')

    def from_records(self, records: list[BaseModel]) -> Batch | Refusal:
        """Feeds for validated records: spec.feeds' encoding, without its work for raw frames.

        Validation already made every number a float or None and every category a str, int, bool or
        float, so a number needs only None -> NaN and a category value_text, as spec.feeds does; skipping
        its per-column conversion and stacking took one record from ~28 us to ~5 us (benchmarks/serving.py).
        bentos.model.warm_up checks at load that both give the same feeds for the spec's example."""
        feeds = {}
        for name, attributes in self.inputs.items():
            if name == TEXT_INPUT or (name == PIXELS_INPUT and self.spec.of_type("image")):
                found = self.media_feed(name, records, attributes[0])
                if isinstance(found, Refusal):
                    return found
                feeds[name] = found
                continue
            cells = [[getattr(record, a) for a in attributes] for record in records]
            if name == CATEGORICAL_INPUT:
                array = np.array([[value_text(v) for v in row] for row in cells], dtype=object)
            else:
                array = np.array([[NAN if v is None else v for v in row] for row in cells], dtype=np.float32)
            feeds[name] = array.reshape(len(records), len(attributes))
        return Batch(feeds, len(records))

    def media_feed(self, name: str, records: list[BaseModel], attribute: str) -> np.ndarray | Refusal:
        """A text feed (strings, [n, 1]) or an image feed (decoded pixels, [n, h*w*c]); the first empty text or
        unreadable image is refused, naming its record and field."""
        feature = self.spec.of_type("text" if name == TEXT_INPUT else "image")[0]
        values = [getattr(record, attribute) for record in records]
        if name == TEXT_INPUT:
            texts = [value_text(v) for v in values]
            empty = next((i for i, text in enumerate(texts) if not text), None)
            if empty is not None and not feature.nullable:
                message = f"record {empty}, field {feature.name!r}: the text is empty; send the text to answer for"
                return Refusal(422, message, empty, feature.name)
            return np.array(texts, dtype=object).reshape(len(texts), 1)
        pixels = []
        for index, value in enumerate(values):
            try:
                pixels.append(image_pixels(decode_base64(value), feature).reshape(-1))
            except ImageUnreadable as error:
                message = f"record {index}, field {feature.name!r}: {error}; send a base64-encoded PNG or JPEG"
                return Refusal(422, message, index, feature.name)
        return np.stack(pixels).astype(np.float32)

    def columns_of(self, records: list[BaseModel]) -> dict[str, list[Any]]:
        """Column -> values of validated records: the input spec.feeds takes (warm_up's parity check); an image
        field's base64 becomes its bytes, as spec.feeds reads a file."""
        images = {f.name for f in self.spec.of_type("image")}
        return {
            column: [
                decode_base64(getattr(r, attribute)) if column in images else getattr(r, attribute) for r in records
            ]
            for column, attribute in self.attributes.items()
        }

    def from_rows(self, rows: list[list[float | None]]) -> Batch | Refusal:
        layout = self.rows
        array = np.asarray(rows, dtype=np.float32)  # a null becomes NaN: NaN literals were refused already
        if not layout.takes_null:  # the row type refused null already
            return Batch({layout.input_name: array}, len(array))
        missing = np.isnan(array) & layout.required
        if missing.any():
            row, position = (int(i) for i in np.argwhere(missing)[0])
            column = layout.columns[position]
            return Refusal(422, f"row {row}, column {column}: {null_refused()}", row=row, column=column)
        return Batch({layout.input_name: array}, len(array))

    def answer(self, outputs: np.ndarray, name: str, version: str) -> bytes:
        """The answer's JSON: predictions in the user's label values (or numbers), probabilities by label."""
        if self.spec.task == "regression":
            body = {"predictions": outputs.reshape(-1).astype(np.float64).tolist()}
        else:
            if len(outputs) <= SMALL_BATCH:
                probabilities = [softmax_row(row) for row in outputs.tolist()]
            else:
                probabilities = softmax(outputs.astype(np.float64)).tolist()
            labels, texts = self.spec.target.labels, self.label_texts
            body = {
                "predictions": [labels[row.index(max(row))] for row in probabilities],
                "probabilities": [dict(zip(texts, row, strict=True)) for row in probabilities],
            }
        # NaN has no JSON spelling: a regression graph that answers one is reported as null, not invalid JSON.
        return to_json({**body, "model_version": version, "model_name": name}, inf_nan_mode="null")

    def shape(self) -> str:
        """What a body looks like, for messages."""
        rows = f' (or {{"rows": [[...{len(self.rows.columns)} numbers], ...]}})' if self.rows else ""
        return '{"records": [{"field": value, ...}, ...]}' + rows

    def describe(self, problem: dict[str, Any]) -> Refusal:
        """Turn one pydantic error into a refusal a person can act on."""
        kind, loc, value = problem["type"], problem["loc"], problem.get("input")
        if kind == "json_invalid":
            return Refusal(422, f"body is not valid JSON: {problem['ctx']['error']}")
        if loc == ():
            return Refusal(422, f"body must be a JSON object {self.shape()}, got {echo(value)}")
        if len(loc) == 1 and kind == "extra_forbidden":
            return self.unexpected_field(loc[0])
        if len(loc) == 1:
            return describe_batch(loc[0], kind, value, self.shape())
        if loc[0] == "rows":
            return self.describe_row(loc[1:], kind, value, problem.get("ctx") or {})
        return self.describe_record(loc[1:], kind, value, problem.get("ctx") or {})

    def unexpected_field(self, name: str) -> Refusal:
        if name == "rows":
            return Refusal(422, f"'rows' is only for models whose inputs are all numbers: send {self.shape()}")
        fields = "'records' or 'rows'" if self.rows else "'records'"
        return Refusal(422, f"unexpected field {name!r}: the body holds only {fields}")

    def describe_record(self, loc: tuple, kind: str, value: Any, limits: dict[str, Any]) -> Refusal:
        record = loc[0]
        if len(loc) == 1:
            return Refusal(
                422, f'record {record} must be an object {{"field": value, ...}}, got {echo(value)}', record=record
            )
        field = loc[1]
        if kind == "extra_forbidden":
            return Refusal(
                422, f"record {record}: unknown field {field!r}; the fields are {self.field_list()}", record, field
            )
        if kind == "missing":
            message = f"record {record}: field {field!r} is missing; send it (the spec does not allow it to be missing)"
            return Refusal(422, message, record, field)
        feature_type = self.feature_of(field).type
        return Refusal(
            422, f"record {record}, field {field!r}: {describe_value(kind, value, feature_type, limits)}", record, field
        )

    def describe_row(self, loc: tuple, kind: str, value: Any, limits: dict[str, Any]) -> Refusal:
        row, count = loc[0], len(self.rows.columns)
        if len(loc) == 1:
            if kind in ("too_short", "too_long"):
                return Refusal(422, f"row {row} has {len(value)} values; every row needs exactly {count}", row=row)
            return Refusal(422, f"row {row} must be a list of {count} numbers, got {echo(value)}", row=row)
        column = self.rows.columns[loc[1]]
        message = f"row {row}, column {column}: {describe_value(kind, value, 'numeric', limits)}"
        return Refusal(422, message, row=row, column=column)

    def feature_of(self, column: str) -> FeatureSpec:
        return next(f for f in self.spec.features if column in f.source_columns)

    def field_list(self) -> str:
        columns = self.columns
        listed = ", ".join(columns[:LISTED_FIELDS])
        return listed + (f" and {len(columns) - LISTED_FIELDS} more (GET /)" if len(columns) > LISTED_FIELDS else "")

    def example_record(self) -> dict[str, Any]:
        """A valid record built from the spec: mid-range numbers, each category's first value."""
        return {c: example_value(f) for f in self.spec.model_features for c in f.source_columns}

    def example_body(self) -> dict[str, Any]:
        return {"records": [self.example_record()]}


def compile_contract(spec: DatasetSpec) -> Contract:
    """The request model for a spec: one typed, aliased field per column (columns need not be identifiers)."""
    fields, attributes = {}, {}
    for feature in spec.features:
        for column in feature.source_columns:
            # Synthetic attribute names: a column called "model_config", "1st" or "bill length" is still a field.
            attribute = f"f{len(fields)}"
            annotation, default = field_type(feature)
            fields[attribute] = (annotation, Field(default, alias=column, description=describe_feature(feature)))
            if feature.type not in IGNORED_TYPES:
                attributes[column] = attribute
    strict = ConfigDict(extra="forbid")
    record = create_model("Record", __config__=strict, **fields)
    rows = rows_layout(spec)
    batch = {"records": (list_of(record, "records, each an object of the fields below"), None)}
    if rows is not None:
        batch["rows"] = (list_of(row_type(spec, rows), f"rows of {len(rows.columns)} numbers in column order"), None)
    # Absent means None (no value is validated then); null is a list_type error like any other non-list.
    request = create_model("PredictRequest", __config__=strict, **batch)
    inputs = {name: [attributes[c] for c in columns] for name, columns in spec.onnx_inputs().items()}
    return Contract(
        spec=spec, request=request, attributes=attributes, rows=rows, label_texts=spec.label_texts(), inputs=inputs
    )


def field_type(feature: FeatureSpec) -> tuple[Any, Any]:
    """The annotation and default of one column's field (... = required)."""
    if feature.type in IGNORED_TYPES:
        return Any, None
    if feature.type in CATEGORY_TYPES:
        annotation = Category
    elif feature.type == "text":
        annotation = Annotated[str, Strict(), Field(max_length=feature.max_chars or DEFAULT_MAX_CHARS)]
    elif feature.type == "image":
        annotation = Annotated[str, Strict(), Field(min_length=1, max_length=MAX_BODY_BYTES)]
    elif feature.type == "image_grid":
        annotation = Annotated[Number, Field(ge=feature.min, le=feature.max)]
    else:
        annotation = Number
    return (annotation | None, None) if feature.nullable else (annotation, ...)


def list_of(item: Any, what: str) -> Any:
    return Annotated[
        list[item], Field(min_length=1, max_length=MAX_ROWS, fail_fast=True, description=f"1..{MAX_ROWS} {what}")
    ]


def rows_layout(spec: DatasetSpec) -> RowsLayout | None:
    """The rows form for a spec whose model reads only numbers (one ONNX input), else None."""
    if any(f.type not in ("numeric", "image_grid") for f in spec.model_features):
        return None
    ((input_name, columns),) = spec.onnx_inputs().items()
    nullable = {c for f in spec.model_features if f.nullable for c in f.source_columns}
    return RowsLayout(input_name, columns, np.array([c not in nullable for c in columns]))


def row_type(spec: DatasetSpec, layout: RowsLayout) -> Any:
    """One row: every value a finite number (in the grid's range for an image grid), null where allowed."""
    (first, *_) = spec.model_features
    value = Annotated[Number, Field(ge=first.min, le=first.max)] if first.type == "image_grid" else Number
    if layout.takes_null:
        value = value | None  # a null in a required position is refused after parsing, naming the column
    count = len(layout.columns)
    return Annotated[list[value], Field(min_length=count, max_length=count, fail_fast=True)]


def describe_feature(feature: FeatureSpec) -> str:
    """One line for the OpenAPI document: what the field holds and whether it may be missing."""
    kind = f"{feature.type} ({CATEGORY_HINT})" if feature.type in CATEGORY_TYPES else feature.type
    if feature.type == "image":
        kind = "image (a base64-encoded PNG or JPEG)"
    return f"{kind}: {feature_values(feature)}; {missing_rule(feature)}"


def missing_rule(feature: FeatureSpec) -> str:
    return "may be null or absent" if feature.nullable or feature.type in IGNORED_TYPES else "required"


def feature_values(feature: FeatureSpec) -> str:
    """What values the field takes: the categories seen, the range seen (or allowed, for an image grid)."""
    if feature.type in IGNORED_TYPES:
        return "accepted and ignored by the model"
    if feature.type in CATEGORY_TYPES:
        values = feature.values or []
        seen = ", ".join(json.dumps(v) for v in values[:LISTED_FIELDS])
        more = f" and {len(values) - LISTED_FIELDS} more" if len(values) > LISTED_FIELDS else ""
        return f"seen in training: {seen or 'none'}{more}; others are answered as unseen"
    if feature.type == "text":
        return (
            f"a string of at most {feature.max_chars or DEFAULT_MAX_CHARS:,} characters, read as up to"
            f" {feature.max_length} tokens ({feature.tokenizer} tokenizer)"
        )
    if feature.type == "image":
        colour = "grayscale" if feature.channels == 1 else "RGB"
        return f"any size, scaled to {feature.height}x{feature.width} {colour} ({feature.resize or 'stretch'})"
    if feature.min is None or feature.max is None:
        return "any finite number"
    if feature.type == "image_grid":
        grid = f"{feature.height}x{feature.width}" + (f"x{feature.channels}" if (feature.channels or 1) > 1 else "")
        return f"allowed {feature.min:g}..{feature.max:g}; a {grid} grid, row-major"
    return f"seen in training {feature.min:g}..{feature.max:g}; others are answered too"


def describe_batch(name: str, kind: str, value: Any, shape: str) -> Refusal:
    if kind == "too_short":
        return Refusal(422, f"{name} is empty: send at least one")
    if kind == "too_long":
        return Refusal(413, f"{len(value)} {name} in one request; at most {MAX_ROWS}: split the batch")
    return Refusal(422, f"{name} must be a list, got {echo(value)}: send {shape}")


def describe_value(kind: str, value: Any, feature_type: str, limits: dict[str, Any]) -> str:
    if value is None:
        return null_refused()
    if feature_type == "text":
        if kind == "string_too_long":
            return f"a text of {len(value):,} characters is over the limit of {limits['max_length']:,}; shorten it"
        return f"{echo(value)} is not text (send a JSON string)"
    if feature_type == "image":
        if kind == "string_too_long":
            return f"an image of {len(value):,} base64 characters is over the limit of {limits['max_length']:,}"
        if kind == "string_too_short":
            return "the image is empty; send a base64-encoded PNG or JPEG"
        return f"{echo(value)} is not an image (send a base64-encoded PNG or JPEG as a JSON string)"
    if kind == "less_than_equal":
        return f"{echo(value)} is above the maximum {limits['le']:g}"
    if kind == "greater_than_equal":
        return f"{echo(value)} is below the minimum {limits['ge']:g}"
    if kind == "finite_number":
        return f"{echo(value)} is not a finite number"
    if feature_type in CATEGORY_TYPES:
        return f"{echo(value)} is not a category ({CATEGORY_HINT})"
    return f"{echo(value)} is not a number (send a JSON number, not a string, bool, list or null)"


def null_refused() -> str:
    return "null is not allowed: the model was trained without missing values here"


def example_value(feature: FeatureSpec) -> Any:
    if feature.type == "text":
        return EXAMPLE_TEXT
    if feature.type == "image":
        gray = np.full((feature.height, feature.width, feature.channels), 128, dtype=np.uint8)
        return base64.b64encode(encode_png(gray)).decode("ascii")
    if feature.type in CATEGORY_TYPES:
        return feature.values[0] if feature.values else "example"
    if feature.min is not None and feature.max is not None:
        return (feature.min + feature.max) / 2
    return feature.min if feature.min is not None else 0.0


def echo(value: Any) -> str:
    """The client's value as JSON, cut short: enough to recognise it, never a whole body."""
    if isinstance(value, dict):
        return f"an object with keys {echo(', '.join(sorted(map(str, value))))}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    text = json.dumps(value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


def softmax_row(logits: list[float]) -> list[float]:
    """One row's softmax in plain Python: for a handful of rows, numpy's per-call overhead (five array
    operations and a float64 copy) cost ~6 us per request, more than the arithmetic (benchmarks/serving.py)."""
    top = max(logits)
    exps = [math.exp(value - top) for value in logits]
    total = sum(exps)
    return [e / total for e in exps]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting the row max keeps exp() from overflowing."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
