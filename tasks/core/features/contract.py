"""What every feature type is: the settings all features share, and the hooks the stages call on one.

A type is one pydantic model, a subclass of FeatureSpec: its settings (anything else is refused when the spec is
parsed) and its behaviour per stage (feed, inference_rules, expectations, drift_kinds / drift_values, request_*),
so no stage branches on type names (docs/architecture.md). No torch, no Prefect, no pandas: bentos import it.
"""

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import pandas as pd

    from tasks.core.features.columns import ColumnValues

# The ONNX hand-off's inputs, in the order every graph takes them (tasks.core.spec's docstring).
NUMERIC_INPUT, CATEGORICAL_INPUT, PIXELS_INPUT, TEXT_INPUT = "numeric", "categorical", "pixels", "text"
MODEL_INPUTS = (NUMERIC_INPUT, CATEGORICAL_INPUT, PIXELS_INPUT, TEXT_INPUT)
# Each input's array type: numbers as float32 (NaN = missing), categories and texts as strings ("" = missing).
INPUT_DTYPES = {NUMERIC_INPUT: np.float32, CATEGORICAL_INPUT: object, PIXELS_INPUT: np.float32, TEXT_INPUT: object}
# A request body is at most this large (tasks.core.contract), so an image's base64 field is too.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Values echoed back in a refusal are cut to this many characters: the body is the client's own.
ECHO_CHARS = 40
# strict: "3" or true is a client bug, not a number; NaN/inf would silently poison the outputs.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NAN = float("nan")


class FeatureSpec(BaseModel):
    """One input column (or one group of columns) and what it is: the base of every feature type's settings.

    FeatureSpec(name=..., type="numeric", ...) builds the registered type's model (NumericFeature here), so code
    and tests that build features by type name keep working; a spec's features are the union of the registered
    types, keyed by `type` (tasks.core.features.AnyFeature).
    """

    # A typo in a reviewed spec ("nulable"), or a setting of another type, must be refused, not ignored.
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: str
    why: str = Field("", description="why inference chose this type; for the reviewer")
    nullable: bool = Field(False, description="missing values are data: imputed (numeric) or their own category")

    # The ONNX input this type's values go to (MODEL_INPUTS); None: named in the spec, never read by the model.
    model_input: ClassVar[str | None] = None
    # The model reads a feature of this type alone (an image model has no table side yet).
    sole_input: ClassVar[bool] = False
    # At most one feature of this type per spec (a text model reads one text).
    one_per_spec: ClassVar[bool] = False
    # A request may send this type's values in the `rows` form: one JSON number per column.
    takes_rows: ClassVar[bool] = False
    # How inference proposes this type: (order, rule) pairs, run with every other type's by order.
    inference_rules: ClassVar[tuple["InferenceRule", ...]] = ()
    # What a client sends, for the service's field table (bentos.documentation).
    request_accepts: ClassVar[str] = "any JSON value"
    # The drift summary kind of each of its columns (tasks.data.drift: bins, values or integers).
    drift_kind: ClassVar[str] = "bins"
    # Its own settings in a line, for the comment on top of a proposed spec file ("" : none to explain).
    settings_help: ClassVar[str] = ""

    def __new__(cls, *args: Any, **data: Any) -> "FeatureSpec":
        if cls is FeatureSpec and "type" in data:
            from tasks.core.features import feature_class  # the registry imports this module

            cls = feature_class(data)
        return super().__new__(cls)

    # --- the spec and the ONNX feed ---

    @property
    def source_columns(self) -> list[str]:
        """The file's columns this feature reads."""
        return [self.name]

    @property
    def input_columns(self) -> list[str]:
        """What this feature puts in its ONNX input, by name (the file's columns, unless it derives others)."""
        return self.source_columns

    @property
    def input_width(self) -> int:
        """Values per row this feature puts in its ONNX input."""
        return len(self.input_columns)

    def feed(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Its block of the ONNX input, [rows, input_width], from column -> raw values."""
        raise NotImplementedError(f"a {self.type} feature is not read by the model")

    def proposed_family(self) -> str | None:
        """The model family that reads this feature (inference proposes it), or None: any table family."""
        return None

    # --- validation ---

    @classmethod
    def expectations(cls, features: list["FeatureSpec"]) -> list[dict]:
        """The expectations a file must pass for these features of the type (suite JSON, tasks.data.suite).

        Types that inherit one function (binary from categorical) are checked together, by one expectation."""
        return []

    # --- drift ---

    def drift_kinds(self) -> dict[str, str]:
        """Summary key -> summary kind of everything drift compares of this feature."""
        return dict.fromkeys(self.source_columns, self.drift_kind)

    def drift_values(self, frame: "pd.DataFrame") -> dict[str, "pd.Series"]:
        """Summary key -> the values counted for it (drift_kinds' keys)."""
        return {column: frame[column] for column in self.source_columns}

    # --- serving ---

    def request_field(self) -> tuple[Any, Any]:
        """The annotation and default of one of its request fields (... = required)."""
        if self.model_input is None:
            return Any, None  # accepted so a client can send its whole row, then dropped
        annotation = self.request_value()
        return (annotation | None, None) if self.nullable else (annotation, ...)

    def request_value(self) -> Any:
        """The annotation of one present value in a request."""
        raise NotImplementedError(f"a {self.type} feature is not read by the model")

    def request_cell(self) -> Callable[[Any], Any] | None:
        """One validated request value -> its one cell of the ONNX input (the fast path for tables), or None:
        the values go through request_feed."""
        return None

    def request_feed(self, values: list[Any]) -> np.ndarray:
        """Its block of the ONNX input from validated request values; ValueRefused names a value it cannot take."""
        return self.feed({self.name: [self.feed_value(value) for value in values]})

    def feed_value(self, value: Any) -> Any:
        """A validated request value as feed() reads it from a file (an image's base64 becomes its bytes)."""
        return value

    def client_value(self, value: Any) -> Any:
        """A file's value as a client sends it in a request (the serving check's records): JSON-ready."""
        return value

    def tensor_value(self, raw: bytes) -> Any:
        """One element of a BYTES tensor (the Open Inference Protocol's binary form) as the request field takes
        it: UTF-8 text here; UnicodeDecodeError when it is not."""
        return raw.decode()

    def request_kind(self) -> str:
        """What the field is, for the OpenAPI document."""
        return self.type

    def request_values(self) -> str:
        """What values the field takes, for the OpenAPI document and the page."""
        return "accepted and ignored by the model"

    def example_value(self) -> Any:
        """A valid request value: the service's example and warm-up."""
        return None

    def value_problem(self, kind: str, value: Any, limits: dict[str, Any]) -> str:
        """Why a request refused a present value (pydantic's error kind and limits), as a person reads it."""
        return number_problem(kind, value, limits) or (
            f"{echo(value)} is not a number (send a JSON number, not a string, bool, list or null)"
        )

    def signature_type(self) -> str:
        """MLflow's column type for its raw values (the registered model's signature): what a client sends."""
        return "string"


@dataclass(frozen=True)
class InferenceRule:
    """One way inference proposes a type: rules of all types run by `order`, the first proposal wins."""

    order: int
    propose: Callable[["ColumnValues"], FeatureSpec | None]


class ValueRefused(ValueError):
    """A request value a feature cannot take (an empty text, an image that does not decode), by its position."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index, self.message = index, message


def expectation(kind: str, kwargs: dict, severity: str, why: str) -> dict:
    """One expectation as GX's suite JSON holds it, with why it is there in meta."""
    return {"type": kind, "kwargs": kwargs, "severity": severity, "meta": {"why": why}}


def number_problem(kind: str, value: Any, limits: dict[str, Any]) -> str | None:
    """The refusal of a number outside its bounds or not finite; None for other problems."""
    if kind == "less_than_equal":
        return f"{echo(value)} is above the maximum {limits['le']:g}"
    if kind == "greater_than_equal":
        return f"{echo(value)} is below the minimum {limits['ge']:g}"
    if kind == "finite_number":
        return f"{echo(value)} is not a finite number"
    return None


def echo(value: Any) -> str:
    """The client's value as JSON, cut short: enough to recognise it, never a whole body."""
    if isinstance(value, dict):
        return f"an object with keys {echo(', '.join(sorted(map(str, value))))}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    text = json.dumps(value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 3] + "..."


def number_or_nan(value: Any) -> Any:
    """A validated request number, None (absent) as NaN: the numeric input's missing value."""
    return NAN if value is None else value


def value_text(value: Any) -> str:
    """A category as the text the vocabulary keys it by: 3, 3.0, np.int64(3) and '3' are all '3';
    True is 'true'; None, NaN and '' are '' (missing)."""
    # Exact-type fast paths first: the service encodes every categorical field of every request here.
    kind = type(value)
    if kind is str:
        return value.strip()
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    # pandas' NA / NaT arrive here from a frame's object columns: missing, like None.
    return "" if type(value).__name__ in ("NAType", "NaTType") else str(value).strip()


def as_float32(values: Sequence[Any]) -> np.ndarray:
    """Numbers as float32 with NaN for None / missing (pandas' NA included)."""
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype(np.float32)
    # Blank text is missing, as validation and inference read it (a CSV cell of spaces).
    return np.array([np.nan if is_missing(v) else v for v in values], dtype=np.float32)


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA, or blank text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return value != value or type(value).__name__ in ("NAType", "NaTType")


def text_column(values: Sequence[Any]) -> np.ndarray:
    """object [rows, 1]: each value as value_text ("" = missing)."""
    return np.array([value_text(v) for v in values], dtype=object).reshape(-1, 1)
