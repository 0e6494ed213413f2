"""What a person and a client read about POST /predict, generated from the contract of the version served:
the OpenAPI document at GET /openapi.json and the page at GET / (bentos/index.html, rendered with Jinja2).

Both follow the served version: when the followed alias moves to a version trained on another spec, the
next GET shows the new fields.
"""

import json
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from tasks.core.contract import MAX_BODY_BYTES, MAX_ROWS, Contract, missing_rule
from tasks.core.spec import FeatureSpec

REFUSALS = {
    "401": "a key is required (GREENLIGHT_API_KEY or a key file) and the request lacks it, or it is wrong or revoked",
    "403": "the key may not call this model (a key file scopes each key to its models)",
    "413": f"more than {MAX_ROWS} records or rows, or a body over {MAX_BODY_BYTES} bytes",
    "415": "a Content-Type other than application/json",
    "422": "the body does not meet the contract; error names the record and field (or row and column) and the value",
    "429": "past the key's rate (requests per second); Retry-After says how many seconds to wait",
    "503": "no model passed its checks yet",
}
REFUSAL_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, where, and the value found there"},
        "record": {"type": "integer"},
        "field": {"type": "string"},
        "row": {"type": "integer"},
        "column": {"type": "string"},
    },
}


@dataclass(frozen=True)
class FieldDoc:
    """One row of the page's field table: a feature as a client sends it."""

    name: str
    type: str
    accepts: str
    missing: str
    detail: str


def openapi_document(contract: Contract, model_name: str, version: str) -> dict[str, Any]:
    """OpenAPI 3.1 for POST /predict: the spec's request schema with an example, the answer, every refusal."""
    request = contract.request.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schemas = {**request.pop("$defs", {}), "PredictRequest": request}
    if contract.rows is not None:  # either form, never both (the service refuses a body holding both)
        request["oneOf"] = [{"required": ["records"]}, {"required": ["rows"]}]
    else:
        request["required"] = ["records"]
    refusal = {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}}
    answer = {"$ref": "#/components/schemas/Prediction"}
    operation = {
        "operationId": "predict",
        "summary": summary(contract),
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictRequest"},
                    "example": contract.example_body(),
                }
            },
        },
        "responses": {
            "200": {
                "description": "one prediction per record; header X-Model-Version names the version that answered",
                "content": {"application/json": {"schema": answer}},
            },
            **{status: {"description": why, "content": refusal} for status, why in REFUSALS.items()},
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Greenlight: {model_name}", "version": version, "description": summary(contract)},
        "paths": {"/predict": {"post": operation}},
        "components": {
            "schemas": {**schemas, "Prediction": prediction_schema(contract), "Refusal": REFUSAL_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def summary(contract: Contract) -> str:
    target = contract.spec.target
    if target.task == "regression":
        return f"Predict '{target.name}' (a number) from records of {contract.spec.name}"
    return f"Classify records of {contract.spec.name}: '{target.name}' is one of {json.dumps(target.labels)}"


def prediction_schema(contract: Contract) -> dict[str, Any]:
    """The answer's schema: the user's own labels (or numbers), probabilities keyed by label text."""
    spec = contract.spec
    version = {"model_version": {"type": "string"}, "model_name": {"type": "string"}}
    if spec.task == "regression":
        predictions = {"type": "array", "items": {"type": "number"}, "description": f"'{spec.target.name}' per record"}
        properties = {"predictions": predictions, **version}
    else:
        label = {"enum": spec.target.labels}
        probability = {"type": "number", "minimum": 0, "maximum": 1}
        per_label = {text: probability for text in spec.label_texts()}
        probabilities = {"type": "object", "properties": per_label, "required": list(per_label)}
        properties = {
            "predictions": {"type": "array", "items": label, "description": "the most probable label per record"},
            "probabilities": {"type": "array", "items": probabilities, "description": "per record, by label"},
            **version,
        }
    return {"type": "object", "required": list(properties), "properties": properties}


def field_docs(contract: Contract) -> list[FieldDoc]:
    """The page's field table: one row per feature (an image grid's many columns are one row)."""
    return [field_doc(feature) for feature in contract.spec.features]


def field_doc(feature: FeatureSpec) -> FieldDoc:
    """A feature's row: what a client sends for it (its type says), one row for a group of columns (a pixel grid)."""
    columns, name = feature.source_columns, feature.name
    if len(columns) > 1:
        name = f"{columns[0]} ... {columns[-1]} ({len(columns)} fields)"
    return FieldDoc(name, feature.type, feature.request_accepts, missing_rule(feature), feature.request_values())


@cache
def template(name: str = "index.html") -> jinja2.Template:
    """A page's template beside this module (index.html: one model; models.html: all of them), read once, on the
    first GET that renders it, not at import."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent),
        autoescape=True,  # column names and category values come from a user's file
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(name)


def index_page(contract: Contract, model_name: str, version: str, base_url: str, keyed: bool, answer: bytes) -> str:
    """The HTML page at GET /: the contract of the version served, an example request and its answer."""
    example = json.dumps(contract.example_body(), indent=2)
    # Double quotes: the shell fills in the key from the variable.
    key_header = ' -H "Authorization: Bearer $GREENLIGHT_API_KEY"' if keyed else ""
    curl = (
        f"curl -X POST {base_url}/predict -H 'Content-Type: application/json'{key_header} \\\n"
        f"  -d {shlex.quote(json.dumps(contract.example_body()))}"
    )
    rows_example = None
    if contract.rows is not None:
        record = contract.example_record()
        rows_example = json.dumps({"rows": [[record[c] for c in contract.rows.columns]]})
    return template().render(
        model_name=model_name,
        version=version,
        summary=summary(contract),
        spec=contract.spec,
        fields=field_docs(contract),
        example=example,
        answer=json.dumps(json.loads(answer), indent=2),
        curl=curl,
        rows_example=rows_example,
        rows_columns=contract.rows.columns if contract.rows else [],
        keyed=keyed,
        refusals=REFUSALS,
        max_rows=MAX_ROWS,
    )
