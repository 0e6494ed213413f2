"""The HTTP contract of POST /predict: what a request must hold, what an answer holds, how a refusal reads.

A refusal names the first problem found, where it is and the value found there, e.g.
`row 1, column pixel_2_1: 16.5 is above the maximum 16`. Validation stops at the first bad value
(fail_fast), so a 8 MiB body of garbage costs one parse, not one error object per cell.
"""

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.core.schema import FEATURE_COLUMNS, N_FEATURES, PIXEL_MAX, PIXEL_MIN

# Larger batches belong to a batch job, not a synchronous HTTP call; the cap bounds request memory.
MAX_ROWS = 4096
# 4096 rows of 64 values written with 17 significant digits take ~5 MB; 8 MiB leaves room for whitespace.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Values echoed back in a refusal are cut to this many characters: the body is the client's own.
ECHO_CHARS = 40

# strict: "3" or true is a client bug, not a pixel; NaN/inf would silently poison the logits.
Pixel = Annotated[float, Field(strict=True, ge=PIXEL_MIN, le=PIXEL_MAX, allow_inf_nan=False)]
Row = Annotated[list[Pixel], Field(min_length=N_FEATURES, max_length=N_FEATURES, fail_fast=True)]
Rows = Annotated[
    list[Row],
    Field(
        min_length=1,
        max_length=MAX_ROWS,
        fail_fast=True,
        description=f"1..{MAX_ROWS} rows of {N_FEATURES} pixel values {PIXEL_MIN}..{PIXEL_MAX}, "
        f"in the order {FEATURE_COLUMNS[0]}..{FEATURE_COLUMNS[-1]}",
    ),
]


class PredictRequest(BaseModel):
    """Body of POST /predict."""

    model_config = ConfigDict(extra="forbid")

    rows: Rows


class Prediction(BaseModel):
    """One label and one probability vector per input row, with the model version that made them."""

    labels: list[int]
    probabilities: list[list[float]]
    model_version: str
    model_name: str


@dataclass(frozen=True)
class Refusal:
    """A client error: the HTTP status and one sentence saying what to fix."""

    status: int
    message: str
    row: int | None = None
    column: str | None = None

    def body(self) -> bytes:
        fields = {"error": self.message, "row": self.row, "column": self.column}
        return json.dumps({key: value for key, value in fields.items() if value is not None}).encode()


def parse_request(body: bytes) -> PredictRequest | Refusal:
    """The body as a PredictRequest (one validating parse), or the refusal naming its first problem."""
    if not body.strip():
        return Refusal(422, 'body is empty: send {"rows": [[...64 values], ...]}')
    try:
        return PredictRequest.model_validate_json(body)
    except ValidationError as error:
        return describe(error.errors(include_url=False)[0])


def describe(problem: dict[str, Any]) -> Refusal:
    """Turn one pydantic error into a refusal a person can act on."""
    kind, loc, value = problem["type"], problem["loc"], problem.get("input")
    if kind == "json_invalid":
        return Refusal(422, f"body is not valid JSON: {problem['ctx']['error']}")
    if loc == ():
        shape = f'{{"rows": [[...{N_FEATURES} values], ...]}}'
        return Refusal(422, f"body must be a JSON object {shape}, got {echo(value)}")
    if loc[0] != "rows":
        return Refusal(422, f"unexpected field {loc[0]!r}: the body holds only 'rows'")
    if len(loc) == 1:
        return describe_rows(kind, value)
    row = loc[1]
    if len(loc) == 2:
        return Refusal(422, describe_row(row, kind, value), row=row)
    column = FEATURE_COLUMNS[loc[2]]
    return Refusal(422, f"row {row}, column {column}: {describe_value(kind, value)}", row=row, column=column)


def describe_rows(kind: str, value: Any) -> Refusal:
    if kind == "missing":
        return Refusal(422, 'field "rows" is missing: send {"rows": [[...64 values], ...]}')
    if kind == "too_short":
        return Refusal(422, "rows is empty: send at least one row")
    if kind == "too_long":
        return Refusal(413, f"{len(value)} rows in one request; at most {MAX_ROWS}: split the batch")
    return Refusal(422, f"rows must be a list of rows, got {echo(value)}")


def describe_row(row: int, kind: str, value: Any) -> str:
    if kind in ("too_short", "too_long"):
        return f"row {row} has {len(value)} values; every row needs exactly {N_FEATURES}"
    return f"row {row} must be a list of {N_FEATURES} numbers, got {echo(value)}"


def describe_value(kind: str, value: Any) -> str:
    if kind == "less_than_equal":
        return f"{echo(value)} is above the maximum {PIXEL_MAX}"
    if kind == "greater_than_equal":
        return f"{echo(value)} is below the minimum {PIXEL_MIN}"
    if kind == "finite_number":
        return f"{echo(value)} is not a finite number"
    return f"{echo(value)} is not a number (send a JSON number {PIXEL_MIN}..{PIXEL_MAX}, not a string, bool or null)"


def echo(value: Any) -> str:
    """The client's value as JSON, cut short: enough to recognise it, never a whole body."""
    if isinstance(value, dict):
        return f"an object with keys {echo(', '.join(sorted(map(str, value))))}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    text = json.dumps(value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for POST /predict: the request schema, the answer, and every refusal status."""
    refusal = {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}}
    refusals = {
        "401": "GREENLIGHT_API_KEY is set and the request lacks it",
        "413": f"more than {MAX_ROWS} rows, or a body over {MAX_BODY_BYTES} bytes",
        "415": "a Content-Type other than application/json",
        "422": "the body is not a PredictRequest; error names the row, column and value",
        "503": "no model passed its checks yet",
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Greenlight digits classifier", "version": "1"},
        "paths": {
            "/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Classify rows of 64 raw 0..16 pixel values",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "labels and probabilities; header X-Model-Version names the model",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}},
                        },
                        **{status: {"description": why, "content": refusal} for status, why in refusals.items()},
                    },
                    "security": [{}, {"bearer": []}, {"apiKey": []}],
                }
            }
        },
        "components": {
            "schemas": {
                "PredictRequest": PredictRequest.model_json_schema(),
                "Prediction": Prediction.model_json_schema(),
                "Refusal": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "row": {"type": "integer"},
                        "column": {"type": "string"},
                    },
                },
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
