"""The spec: validation of a reviewed file's contents, the ONNX feeds it builds, category texts."""

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tasks.core.errors import ConfigRejected
from tasks.core.spec import DatasetSpec, FeatureSpec, Spec, digits_spec, value_text


def table_spec(**changes) -> DatasetSpec:
    raw = {
        "name": "penguins",
        "target": {"name": "species", "task": "classification", "labels": ["Adelie", "Gentoo"]},
        "features": [
            {"name": "bill_length_mm", "type": "numeric", "nullable": True},
            {"name": "island", "type": "categorical", "nullable": True},
            {"name": "sex", "type": "binary", "nullable": True},
            {"name": "row_id", "type": "id"},
        ],
    } | changes
    return DatasetSpec.model_validate(raw)


@pytest.mark.parametrize(
    "value, text",
    [
        (3, "3"),
        (3.0, "3"),
        (np.int64(3), "3"),
        ("3", "3"),
        (2.5, "2.5"),
        (True, "true"),
        (np.bool_(False), "false"),
        (None, ""),
        (math.nan, ""),
        (pd.NA, ""),
        (" Biscoe ", "Biscoe"),
    ],
)
def test_a_category_has_one_text_whatever_type_it_arrives_in(value, text):
    assert value_text(value) == text


def test_feeds_group_numeric_and_categorical_inputs_in_spec_order_with_missing_values_marked():
    spec = table_spec()
    feeds = spec.feeds(
        {"bill_length_mm": [39.1, None], "island": ["Biscoe", None], "sex": ["male", math.nan], "row_id": [1, 2]}
    )
    assert set(feeds) == {"numeric", "categorical"}
    assert feeds["numeric"].dtype == np.float32 and feeds["numeric"].shape == (2, 1)
    assert np.isnan(feeds["numeric"][1, 0])
    assert feeds["categorical"].tolist() == [["Biscoe", "male"], ["", ""]]
    assert spec.input_columns == ["bill_length_mm", "island", "sex"]  # the id column is named, never read


def test_the_bundled_digits_are_one_image_grid_read_as_pixels():
    spec = digits_spec().dataset
    assert spec.onnx_inputs() == {"pixels": spec.input_columns} and len(spec.input_columns) == 64
    assert spec.file_columns[-1] == "target" and spec.label_texts() == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"features": [{"name": "species", "type": "numeric"}]}, "also listed as a feature"),
        ({"features": [{"name": "a", "type": "numeric"}, {"name": "a", "type": "categorical"}]}, "more than one"),
        ({"features": [{"name": "row_id", "type": "id"}]}, "no feature the model can read"),
        ({"target": {"name": "species", "task": "classification", "labels": [1, "1"]}}, "label twice"),
        ({"target": {"name": "mass", "task": "regression", "labels": [1, 2]}}, "regression target"),
    ],
)
def test_an_inconsistent_spec_is_refused_saying_what(changes, problem):
    with pytest.raises(ValidationError, match=problem):
        table_spec(**changes)


def test_an_image_grid_must_name_exactly_its_pixels():
    with pytest.raises(ValidationError, match="needs height x width x channels = 4 columns"):
        FeatureSpec(name="g", type="image_grid", columns=["a", "b", "c"], height=2, width=2, channels=1)


def test_a_spec_survives_its_yaml_round_trip():
    import yaml

    spec = Spec(dataset=table_spec())
    assert Spec.model_validate(yaml.safe_load(spec.to_yaml())) == spec


def test_a_setting_of_another_type_is_refused_naming_the_field_and_its_type():
    raw = {"dataset": table_spec().model_dump(mode="json")}
    raw["dataset"]["features"][0]["tokenizer"] = "bpe"  # bill_length_mm is numeric
    with pytest.raises(ConfigRejected) as refused:
        Spec.from_mapping(raw, "greenlight.yaml")
    message = str(refused.value)
    assert "dataset.features.0.tokenizer" in message and "numeric" in message and "text features take it" in message
    with pytest.raises(ValidationError, match="tokenizer"):
        FeatureSpec(name="x", type="numeric", tokenizer="bpe")


def test_an_unknown_type_is_refused_listing_the_types_there_are():
    raw = {"dataset": table_spec().model_dump(mode="json")}
    raw["dataset"]["features"][1]["type"] = "categorial"
    with pytest.raises(
        ConfigRejected, match="features.1.type: unknown feature type 'categorial'; choose one of: numeric"
    ):
        Spec.from_mapping(raw, "greenlight.yaml")


def test_a_feature_built_by_type_name_is_that_type_and_dumps_only_its_settings():
    feature = FeatureSpec(name="island", type="categorical", values=["Biscoe", "Dream"])
    assert type(feature).__name__ == "CategoricalFeature" and feature.model_input == "categorical"
    assert feature.model_dump(exclude_none=True) == {
        "name": "island",
        "type": "categorical",
        "why": "",
        "nullable": False,
        "values": ["Biscoe", "Dream"],
    }


def date_spec(**settings) -> DatasetSpec:
    when = {"name": "when", "type": "datetime", "nullable": True, "min": "2024-01-01"} | settings
    return DatasetSpec.model_validate(
        {"target": {"name": "y", "task": "regression"}, "features": [when, {"name": "x", "type": "numeric"}]}
    )


def test_a_datetime_feeds_its_parts_as_numbers_beside_the_numeric_features():
    spec = date_spec(parts=["year", "month", "day", "day_of_week", "hour", "elapsed"])
    feeds = spec.feeds({"when": ["2024-03-31T13:30:00", None], "x": [1.5, 2.5]})
    assert spec.onnx_inputs() == {"numeric": [f"when.{p}" for p in spec.features[0].parts] + ["x"]}
    # Sunday 31 March 2024, 13:30: 90 days and 13.5 hours after the spec's min (1 January 2024).
    assert feeds["numeric"][0].tolist() == pytest.approx([2024, 3, 31, 6, 13.5, 90 + 13.5 / 24, 1.5])
    assert np.isnan(feeds["numeric"][1, :6]).all() and feeds["numeric"][1, 6] == 2.5


def test_a_datetime_is_read_the_same_from_a_timestamp_a_date_and_its_iso_text():
    spec = date_spec(parts=["year", "day_of_week", "hour", "elapsed"])
    stamp = pd.Timestamp("2024-07-04 18:45:00")
    as_texts = spec.feeds({"when": [stamp.isoformat(), "2024-07-04", "2024-07-04T18:45:00+02:00"], "x": [0] * 3})
    as_values = spec.feeds({"when": [stamp, stamp.date(), stamp.tz_localize("Europe/Paris")], "x": [0] * 3})
    np.testing.assert_array_equal(as_texts["numeric"], as_values["numeric"])
    assert as_texts["numeric"][2, 2] == 18.75  # an offset is read at its own wall-clock time


def test_a_datetime_setting_is_checked_when_the_spec_is_read():
    with pytest.raises(ValidationError, match="a part is listed twice"):
        date_spec(parts=["year", "year"])
    with pytest.raises(ValidationError, match="parts.0"):
        date_spec(parts=["century"])
