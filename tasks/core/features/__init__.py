"""Feature types: a registry of type name -> the type's settings model; adding a type is adding one file here and
one line below.

A spec's `features` are AnyFeature, the union of the registered types keyed by `type`, so a setting of another
type is refused when the spec is parsed. The hooks every type implements: contract.py.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from tasks.core.features import binary, categorical, dates, identifier, ignore, image, image_grid, numeric, text
from tasks.core.features.contract import FeatureSpec, InferenceRule

FEATURE_TYPES: dict[str, type[FeatureSpec]] = {
    kind.model_fields["type"].default: kind
    for kind in (
        numeric.NumericFeature,
        categorical.CategoricalFeature,
        binary.BinaryFeature,
        identifier.IdFeature,
        ignore.IgnoreFeature,
        image_grid.ImageGridFeature,
        text.TextFeature,
        image.ImageFeature,
        dates.DatetimeFeature,
    )
}

AnyFeature = Annotated[Union[tuple(FEATURE_TYPES.values())], Field(discriminator="type")]  # noqa: UP007
FEATURE_ADAPTER: TypeAdapter[FeatureSpec] = TypeAdapter(AnyFeature)
# Every type's inference rules, in the order they run (tasks.data.infer): the first proposal wins.
INFERENCE_RULES: tuple[InferenceRule, ...] = tuple(
    sorted((rule for kind in FEATURE_TYPES.values() for rule in kind.inference_rules), key=lambda r: r.order)
)


def feature_class(data: Mapping[str, Any]) -> type[FeatureSpec]:
    """The registered type's model for raw settings; an unknown type is refused naming the known ones."""
    kind = FEATURE_TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if kind is None:
        FEATURE_ADAPTER.validate_python(dict(data))  # raises: the union's error lists the types there are
    return kind


def types_reading(model_input: str) -> tuple[str, ...]:
    """The names of the types whose values go to that ONNX input."""
    return tuple(name for name, kind in FEATURE_TYPES.items() if kind.model_input == model_input)


__all__ = ["FEATURE_ADAPTER", "FEATURE_TYPES", "INFERENCE_RULES", "AnyFeature", "FeatureSpec", "feature_class"]
