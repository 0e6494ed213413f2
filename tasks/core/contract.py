"""The HTTP contract of POST /predict, compiled from the spec of the version being served.

Each field is typed by its feature's type (tasks.core.features); a refusal names the first problem, its record,
field and value, and validation stops there (fail_fast). The contract in full: docs/serving.md.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import to_json

from tasks.core.features.contract import INPUT_DTYPES, ValueRefused, echo
from tasks.core.features.contract import MAX_BODY_BYTES as MAX_BODY_BYTES  # the endpoint's and the page's limit
from tasks.core.spec import DatasetSpec, FeatureSpec

# Larger batches belong to a batch job, not a synchronous HTTP call; the cap bounds request memory.
MAX_ROWS = 4096
# Up to this many rows an answer's softmax runs in plain Python (see softmax_row); beyond, numpy is faster.
SMALL_BATCH = 16
# MAX_BODY_BYTES (tasks.core.features.contract, 8 MiB): 4096 rows of 64 values written with 17 significant
# digits take ~5 MB, leaving room for whitespace; an image's base64 field is held to it too.
# Field names listed when a record holds an unknown one: enough to spot a typo, not a wall of text.
LISTED_FIELDS = 12


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
class InputPlan:
    """How one ONNX input is built from validated records: cell by cell, one cell per field (numbers,
    categories), or by each feature's own request feed (a text, an image, a value that becomes several)."""

    dtype: Any  # np.float32 or object, as spec.feeds makes it
    # (record attribute, its cell function) in input order; None: the features' request feeds build it
    cells: tuple[tuple[str, Callable[[Any], Any]], ...] | None
    features: tuple[FeatureSpec, ...]


@dataclass(frozen=True)
class Contract:
    """The request model and answer format of one served spec; compiled once when a version is loaded."""

    spec: DatasetSpec
    request: type[BaseModel]
    attributes: dict[str, str]  # model input column -> attribute of a validated record
    rows: RowsLayout | None
    label_texts: list[str]  # probability keys, computed once: value_text per label per request shows in profiles
    inputs: dict[str, InputPlan]  # ONNX input -> how validated records become it, in spec.onnx_inputs() order

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

    def parse_records(self, records: list[dict[str, Any]]) -> Batch | Refusal:
        """Records already decoded (the Open Inference Protocol's tensors, a batch file's rows) as feeds, through
        the same request model and refusals as a JSON body."""
        try:
            request = self.request.model_validate({"records": records})
        except ValidationError as error:
            return self.describe(error.errors(include_url=False)[0])
        return self.from_records(request.records)

    def from_records(self, records: list[BaseModel]) -> Batch | Refusal:
        """Feeds for validated records: spec.feeds' encoding, without its work for raw frames.

        Validation already made every number a float or None and every category a str, int, bool or
        float, so a number needs only None -> NaN and a category value_text, as spec.feeds does; skipping
        its per-column conversion and stacking took one record from ~28 us to ~5 us (benchmarks/serving.py).
        A text, an image or a value that becomes several goes through its type's request feed, which may
        refuse it. tasks.onnx.verified.warm_up checks at load that both give the same feeds for the spec's example."""
        feeds = {}
        for name, plan in self.inputs.items():
            if plan.cells is None:
                found = self.feature_feeds(plan, records)
                if isinstance(found, Refusal):
                    return found
                feeds[name] = found
                continue
            cells = [[cell(getattr(record, a)) for a, cell in plan.cells] for record in records]
            feeds[name] = np.array(cells, dtype=plan.dtype).reshape(len(records), len(plan.cells))
        return Batch(feeds, len(records))

    def feature_feeds(self, plan: InputPlan, records: list[BaseModel]) -> np.ndarray | Refusal:
        """An input from each of its features' request feeds, side by side; the first value a feature refuses
        (an empty text, an image that does not decode) is refused, naming its record and field."""
        blocks = []
        for feature in plan.features:
            attribute = self.attributes[feature.name]
            try:
                blocks.append(feature.request_feed([getattr(record, attribute) for record in records]))
            except ValueRefused as refused:
                message = f"record {refused.index}, field {feature.name!r}: {refused.message}"
                return Refusal(422, message, refused.index, feature.name)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)

    def columns_of(self, records: list[BaseModel]) -> dict[str, list[Any]]:
        """Column -> values of validated records: the input spec.feeds takes (warm_up's parity check); an image
        field's base64 becomes its bytes, as spec.feeds reads a file."""
        return {
            column: [feature.feed_value(getattr(r, self.attributes[column])) for r in records]
            for feature in self.spec.model_features
            for column in feature.source_columns
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
        feature = self.feature_of(field)
        return Refusal(
            422, f"record {record}, field {field!r}: {describe_value(kind, value, feature, limits)}", record, field
        )

    def describe_row(self, loc: tuple, kind: str, value: Any, limits: dict[str, Any]) -> Refusal:
        row, count = loc[0], len(self.rows.columns)
        if len(loc) == 1:
            if kind in ("too_short", "too_long"):
                return Refusal(422, f"row {row} has {len(value)} values; every row needs exactly {count}", row=row)
            return Refusal(422, f"row {row} must be a list of {count} numbers, got {echo(value)}", row=row)
        column = self.rows.columns[loc[1]]
        message = f"row {row}, column {column}: {describe_value(kind, value, self.feature_of(column), limits)}"
        return Refusal(422, message, row=row, column=column)

    def feature_of(self, column: str) -> FeatureSpec:
        return next(f for f in self.spec.features if column in f.source_columns)

    def field_list(self) -> str:
        columns = self.columns
        listed = ", ".join(columns[:LISTED_FIELDS])
        return listed + (f" and {len(columns) - LISTED_FIELDS} more (GET /)" if len(columns) > LISTED_FIELDS else "")

    def example_record(self) -> dict[str, Any]:
        """A valid record built from the spec: mid-range numbers, each category's first value."""
        return {c: f.example_value() for f in self.spec.model_features for c in f.source_columns}

    def example_body(self) -> dict[str, Any]:
        return {"records": [self.example_record()]}


def compile_contract(spec: DatasetSpec) -> Contract:
    """The request model for a spec: one typed, aliased field per column (columns need not be identifiers)."""
    fields, attributes = {}, {}
    for feature in spec.features:
        for column in feature.source_columns:
            # Synthetic attribute names: a column called "model_config", "1st" or "bill length" is still a field.
            attribute = f"f{len(fields)}"
            annotation, default = feature.request_field()
            fields[attribute] = (annotation, Field(default, alias=column, description=describe_feature(feature)))
            if feature.model_input is not None:
                attributes[column] = attribute
    strict = ConfigDict(extra="forbid")
    record = create_model("Record", __config__=strict, **fields)
    rows = rows_layout(spec)
    batch = {"records": (list_of(record, "records, each an object of the fields below"), None)}
    if rows is not None:
        batch["rows"] = (list_of(row_type(spec, rows), f"rows of {len(rows.columns)} numbers in column order"), None)
    # Absent means None (no value is validated then); null is a list_type error like any other non-list.
    request = create_model("PredictRequest", __config__=strict, **batch)
    inputs = {name: input_plan(features, attributes) for name, features in spec.input_features().items()}
    return Contract(
        spec=spec, request=request, attributes=attributes, rows=rows, label_texts=spec.label_texts(), inputs=inputs
    )


def input_plan(features: list[FeatureSpec], attributes: dict[str, str]) -> InputPlan:
    """Cell by cell when every feature of the input converts one field into one cell, else by request feeds."""
    cells = [feature.request_cell() for feature in features]
    dtype = INPUT_DTYPES[features[0].model_input]
    if any(cell is None for cell in cells):
        return InputPlan(dtype, None, tuple(features))
    pairs = tuple(
        (attributes[column], cell)
        for feature, cell in zip(features, cells, strict=True)
        for column in feature.source_columns
    )
    return InputPlan(dtype, pairs, tuple(features))


def list_of(item: Any, what: str) -> Any:
    return Annotated[
        list[item], Field(min_length=1, max_length=MAX_ROWS, fail_fast=True, description=f"1..{MAX_ROWS} {what}")
    ]


def rows_layout(spec: DatasetSpec) -> RowsLayout | None:
    """The rows form for a spec whose model reads only numbers (one ONNX input), else None."""
    if not all(f.takes_rows for f in spec.model_features):
        return None
    ((input_name, columns),) = spec.onnx_inputs().items()
    nullable = {c for f in spec.model_features if f.nullable for c in f.source_columns}
    return RowsLayout(input_name, columns, np.array([c not in nullable for c in columns]))


def row_type(spec: DatasetSpec, layout: RowsLayout) -> Any:
    """One row: every value a finite number (in the grid's range for an image grid), null where allowed."""
    (first, *_) = spec.model_features
    value = first.request_value()
    if layout.takes_null:
        value = value | None  # a null in a required position is refused after parsing, naming the column
    count = len(layout.columns)
    return Annotated[list[value], Field(min_length=count, max_length=count, fail_fast=True)]


def describe_feature(feature: FeatureSpec) -> str:
    """One line for the OpenAPI document: what the field holds and whether it may be missing."""
    return f"{feature.request_kind()}: {feature.request_values()}; {missing_rule(feature)}"


def missing_rule(feature: FeatureSpec) -> str:
    return "may be null or absent" if feature.nullable or feature.model_input is None else "required"


def describe_batch(name: str, kind: str, value: Any, shape: str) -> Refusal:
    if kind == "too_short":
        return Refusal(422, f"{name} is empty: send at least one")
    if kind == "too_long":
        return Refusal(413, f"{len(value)} {name} in one request; at most {MAX_ROWS}: split the batch")
    return Refusal(422, f"{name} must be a list, got {echo(value)}: send {shape}")


def describe_value(kind: str, value: Any, feature: FeatureSpec, limits: dict[str, Any]) -> str:
    """Why a field's value was refused: null where the spec allows none, else in its type's words."""
    if value is None:
        return null_refused()
    return feature.value_problem(kind, value, limits)


def null_refused() -> str:
    return "null is not allowed: the model was trained without missing values here"


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
