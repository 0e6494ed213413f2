"""Late labels: each refusal of a labels file, the latest label winning, live metrics per UTC day, and the drop rule."""

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from tasks.core.capture_store import CaptureStore
from tasks.monitoring.labels import LabelFile, LabelsRejected, LabelTarget, read_labels, store_labels, stored_labels
from tasks.monitoring.live_metrics import (
    DayMetric,
    FeedbackConfig,
    VersionLive,
    check_single_records,
    daily_metrics,
    find_drop,
    judged_day,
    measure_live,
    series_points,
)
from tasks.registry.client import ModelVersionRef

PENGUINS = LabelTarget("species", "classification", ("Adelie", "Chinstrap", "Gentoo"))
PRICES = LabelTarget("price", "regression")
CONFIG = FeedbackConfig(model_name="penguins", data_path="labels.csv")


def labels_csv(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        ("id,species\nr-1,Adelie\n", PENGUINS, "no column 'request_id' (the X-Request-Id header each answer carried"),
        ("request_id,kind\nr-1,Adelie\n", PENGUINS, "no label column: name it 'species' (the target) or 'label'"),
        ("request_id,species,label\nr-1,Adelie,Adelie\n", PENGUINS, "both 'species' and 'label' are there"),
        ("request_id,species\n", PENGUINS, "no labels in it"),
        (
            "request_id,label\nr-1,Adelie\n ,Gentoo\nr-3,Adelie\n,Gentoo\n",
            PENGUINS,
            "empty request id at line 3, line 5",
        ),
        ("request_id,row,label\nr-1,0,Adelie\nr-1,one,Gentoo\nr-2,-1,Gentoo\n", PENGUINS, "at line 3, line 4"),
        (
            "request_id,species\nr-1,Adelie\nr-2,Emperor\nr-3,gentoo\nr-4,Gentoo\n",
            PENGUINS,
            "column 'species': 2 label(s) the model never knew at line 3, line 4 ('Emperor', 'gentoo');"
            " known labels: Adelie, Chinstrap, Gentoo",
        ),
        ("request_id,label\nr-1,12.5\nr-2,cheap\nr-3,\n", PRICES, "not a number at line 3, line 4 ('cheap', '')"),
    ],
    ids=["no-id", "no-label", "two-labels", "empty", "empty-ids", "bad-rows", "unknown-labels", "non-numbers"],
)
def test_a_bad_labels_file_is_refused_naming_the_file_column_and_lines(tmp_path, text, target, message):
    path = labels_csv(tmp_path, text)
    with pytest.raises(LabelsRejected) as refused:
        read_labels(path, target)
    assert str(refused.value).startswith(str(path)) and message in str(refused.value)


def test_many_unknown_labels_show_a_few_and_count_the_rest(tmp_path):
    path = labels_csv(tmp_path, "request_id,label\n" + "".join(f"r-{n},Emperor\n" for n in range(9)))
    with pytest.raises(LabelsRejected, match=r"9 label\(s\) .* line 2, line 3, line 4, line 5, line 6 \(and 4 more\)"):
        read_labels(path, PENGUINS)


def test_a_parquet_file_with_rows_and_integer_labels_is_read_as_the_versions_label_texts(tmp_path):
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": ["a", "a", "b"], "row": [0, 1, 0], "digit": [3, 7.0, 0]}).to_parquet(path)
    read = read_labels(path, LabelTarget("digit", "classification", tuple(str(n) for n in range(10))))
    assert read.has_rows and read.frame.to_dict("list") == {
        "request_id": ["a", "a", "b"],
        "row": [0, 1, 0],
        "label": ["3", "7", "0"],
    }


def test_a_record_labelled_twice_in_a_file_keeps_the_last_label_and_says_so(tmp_path):
    path = labels_csv(tmp_path, "request_id,label\nr-1,Adelie\nr-2,Gentoo\nr-1,Chinstrap\n")
    read = read_labels(path, PENGUINS)
    assert dict(zip(read.frame["request_id"], read.frame["label"], strict=True)) == {
        "r-1": "Chinstrap",
        "r-2": "Gentoo",
    }
    assert (
        read.duplicates == 1 and "3 labels" not in read.line() and "(1 given again: the last one kept)" in read.line()
    )


def test_labels_sent_later_win_over_earlier_ones_for_the_same_record(tmp_path):
    store = CaptureStore.open(str(tmp_path / "capture"))
    first = labels_csv(tmp_path, "request_id,label\nr-1,Adelie\nr-2,Gentoo\n")
    monday = datetime(2026, 12, 7, 9, 0, 0, 123456, tzinfo=UTC)
    store_labels(store, "penguins", read_labels(first, PENGUINS), monday)
    second = labels_csv(tmp_path, "request_id,label\nr-1,Chinstrap\nr-3,Adelie\n")
    store_labels(store, "penguins", read_labels(second, PENGUINS), monday + timedelta(days=2))
    kept = stored_labels(store, "penguins")
    assert kept.files == 2
    assert dict(zip(kept.frame["request_id"], kept.frame["label"], strict=True)) == {
        "r-1": "Chinstrap",
        "r-2": "Gentoo",
        "r-3": "Adelie",
    }


def answers(*rows: tuple[str, int, str, str]) -> pd.DataFrame:
    """Captured answers: (request id, row, ISO time, prediction)."""
    frame = pd.DataFrame(rows, columns=["request_id", "row", "time", "prediction"])
    return frame.assign(time=pd.to_datetime(frame["time"], utc=True, format="ISO8601"))


def test_without_a_row_column_a_request_of_several_records_is_refused_by_id():
    given = LabelFile("labels.csv", pd.DataFrame({"request_id": ["a", "b"], "row": 0, "label": "Adelie"}), False, 0)
    captured = {
        "1": answers(
            ("a", 0, "2026-12-07", "Adelie"), ("b", 0, "2026-12-07", "Adelie"), ("b", 1, "2026-12-07", "Gentoo")
        )
    }
    with pytest.raises(LabelsRejected, match=r"no 'row' column, but request\(s\) b held several records: add 'row'"):
        check_single_records(given, captured)
    check_single_records(LabelFile("labels.csv", given.frame, True, 0), captured)  # rows named: fine


def test_live_accuracy_per_utc_day_and_the_labels_no_capture_matched():
    labels = pd.DataFrame(
        {
            "request_id": ["a", "b", "c", "d", "e", "lost-1", "lost-2"],
            "row": [0, 0, 0, 0, 1, 0, 0],
            "label": ["Adelie", "Gentoo", "Gentoo", "Adelie", "Gentoo", "Adelie", "Adelie"],
        }
    )
    captured = answers(
        ("a", 0, "2026-12-07T23:59:59Z", "Adelie"),
        ("b", 0, "2026-12-07T08:00:00Z", "Adelie"),
        ("c", 0, "2026-12-08T00:00:01Z", "Gentoo"),
        ("d", 0, "2026-12-08T10:00:00Z", "Adelie"),
        ("e", 0, "2026-12-08T10:00:00Z", "Adelie"),  # e's row 0 was not labelled: row 1 was
        ("e", 1, "2026-12-08T10:00:00Z", "Adelie"),
    )
    ref = ModelVersionRef("sqlite://", "penguins", "2", None, {"test_accuracy": "0.9"})
    report = measure_live(labels, {"2": captured}, [ref], "classification", CONFIG)
    assert (report.labels, report.matched, report.unmatched_ids) == (7, 5, ("lost-1", "lost-2"))
    (live,) = report.versions
    assert [(d.day, d.rows, d.value) for d in live.days] == [
        (date(2026, 12, 7), 2, 0.5),
        (date(2026, 12, 8), 3, pytest.approx(2 / 3)),
    ]
    # Balanced: the mean recall per true label: on the 7th Adelie 1/1, Gentoo 0/1; on the 8th Adelie 1/1, Gentoo 1/2.
    assert [d.extra for d in live.days] == [0.5, pytest.approx(0.75)]
    assert live.test_value == 0.9 and live.judged is None and live.drop is None  # 3 rows a day: too few to judge


def test_live_rmse_and_mae_per_day():
    rows = pd.DataFrame(
        {
            "prediction": [10.0, 12.0, 5.0],
            "label": [13.0, 8.0, 5.0],
            "day": [date(2026, 12, 7), date(2026, 12, 7), date(2026, 12, 8)],
        }
    )
    first, second = daily_metrics(rows, "regression")
    assert (first.rows, first.value, first.extra) == (2, pytest.approx((12.5) ** 0.5), 3.5)
    assert (second.value, second.extra) == (0.0, 0.0)


def days(*counts_and_values: tuple[int, float]) -> tuple[DayMetric, ...]:
    start = date(2026, 12, 1)
    return tuple(
        DayMetric(start + timedelta(days=n), rows, value, None) for n, (rows, value) in enumerate(counts_and_values)
    )


def test_the_judged_day_is_the_latest_with_enough_labelled_rows():
    found = days((40, 0.95), (31, 0.93), (5, 0.2))
    assert judged_day(found, CONFIG) == found[1]
    assert judged_day(found, CONFIG.model_copy(update={"min_labels_per_day": 50})) is None


def test_a_drop_is_accuracy_below_test_by_more_than_the_allowed_drop():
    ok, dropped = days((40, 0.91))[0], days((40, 0.89))[0]
    assert find_drop(ok, "classification", 0.95, CONFIG) is None  # 0.04 below: within 0.05
    drop = find_drop(dropped, "classification", 0.95, CONFIG)
    assert drop.payload() == {
        "metric": "accuracy",
        "day": "2026-12-01",
        "live": 0.89,
        "test": 0.95,
        "labelled_rows": 40,
        "threshold": 0.9,
    }
    assert find_drop(dropped, "classification", None, CONFIG) is None  # no test metric: nothing to judge against
    assert find_drop(None, "classification", 0.95, CONFIG) is None


def test_a_drop_is_rmse_above_test_by_more_than_the_allowed_share():
    assert find_drop(days((40, 12.4))[0], "regression", 10.0, CONFIG) is None  # +24 %
    drop = find_drop(days((40, 12.6))[0], "regression", 10.0, CONFIG)
    assert (drop.metric, drop.limit) == ("rmse", 12.5)
    stricter = CONFIG.model_copy(update={"max_rmse_increase": 0.1})
    assert find_drop(days((40, 11.5))[0], "regression", 10.0, stricter) is not None


def test_the_thresholds_are_checked_fields():
    with pytest.raises(ValueError, match="max_accuracy_drop"):
        FeedbackConfig(model_name="m", data_path="l.csv", max_accuracy_drop=2)
    with pytest.raises(ValueError, match="min_labels_per_day"):
        FeedbackConfig(model_name="m", data_path="l.csv", min_labels_per_day=0)
    with pytest.raises(ValueError, match="extra"):
        FeedbackConfig(model_name="m", data_path="l.csv", max_drop=0.1)


def test_regression_labels_are_kept_as_numbers(tmp_path):
    store = CaptureStore.open(str(tmp_path / "capture"))
    path = labels_csv(tmp_path, "request_id,price\nr-1,12.5\nr-2,7\n")
    store_labels(store, "prices", read_labels(path, PRICES), datetime(2026, 12, 7, tzinfo=UTC))
    assert stored_labels(store, "prices").frame["label"].tolist() == [12.5, 7.0]


def test_each_day_is_one_point_at_its_utc_midnight_numbered_by_its_ordinal():
    found = days((40, 0.9), (12, 0.5))
    ref = ModelVersionRef("sqlite://", "penguins", "2", None, {})
    live = VersionLive(ref, "classification", 0.95, found, found[0], None)
    points = [point for point in series_points(live) if point[0] == "live_accuracy"]
    midnight = int(datetime(2026, 12, 2, tzinfo=UTC).timestamp() * 1000)
    assert points == [
        ("live_accuracy", 0.9, midnight - 86_400_000, date(2026, 12, 1).toordinal()),
        ("live_accuracy", 0.5, midnight, date(2026, 12, 2).toordinal()),
    ]
