"""The monitor without a server: captured rows (made by the service's own capture code) rebuilt into what the data
checks' drift code compares, per feature type; too few rows; the window flag; a named version that does not exist;
the training configuration rebuilt from its run's parameters for the retrain event."""

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bentos.capture import Sample, capture_table
from tasks.core.capture_store import CapturedRows
from tasks.core.config import DriftConfig, RunConfig
from tasks.core.contract import compile_contract
from tasks.core.errors import GreenlightError
from tasks.core.spec import DatasetSpec, FeatureSpec, TargetSpec, digits_frame, digits_spec
from tasks.data.drift import ColumnSummary, DataSummary, DriftReference, compared_counts, measure, summarize
from tasks.monitoring import drift_watch
from tasks.monitoring.drift_record import DriftAlert, alert_drift, nested_settings, render_page
from tasks.monitoring.drift_watch import (
    LiveDrift,
    MonitorConfig,
    MonitorRefused,
    drift_of,
    parse_window,
    rebuild_traffic,
    resolve_watched,
    score_traffic,
    skipped,
)
from tasks.registry.client import ModelVersionRef, RegistryError
from tasks.registry.tracking import flatten

LABELS = ["Adelie", "Gentoo"]
TABLE = DatasetSpec(
    name="mixed",
    target=TargetSpec(name="species", task="classification", labels=LABELS),
    features=[
        FeatureSpec(name="bill", type="numeric", nullable=True, min=30, max=60),
        FeatureSpec(name="island", type="categorical", nullable=True, values=["Biscoe", "Dream", "Torgersen"]),
        FeatureSpec(name="sex", type="binary", values=["female", "male"]),
        FeatureSpec(name="seen", type="datetime", min="2024-01-01", max="2024-12-31"),
        FeatureSpec(name="note", type="text", tokenizer="wordpiece", max_length=32, vocab_size=100),
        FeatureSpec(name="penguin_id", type="id"),
    ],
)


def table_frame(rows: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """Bill lengths with one decimal (many repeats, so decile edges fall on values), categories with gaps, dates."""
    rng = np.random.default_rng(seed)
    bill = np.round(rng.normal(44 + shift, 5, rows), 1)
    bill[::17] = np.nan
    return pd.DataFrame(
        {
            "bill": bill,
            "island": rng.choice(["Biscoe", "Dream", "Torgersen", None], rows),
            "sex": rng.choice(["female", "male"], rows),
            "seen": pd.Series(pd.date_range("2024-01-01", periods=rows, freq="D")).dt.strftime("%Y-%m-%d"),
            "note": rng.choice(["a quick brown fox", "lazy dog sleeps", "hello world again"], rows),
            "penguin_id": [f"p{i}" for i in range(rows)],
            "species": rng.choice(LABELS, rows),
        }
    )


def captured(frame: pd.DataFrame, spec: DatasetSpec, logits: np.ndarray):
    """The Parquet table the service's capture writes for these rows answered with these logits."""
    feeds = spec.feeds({column: frame[column].tolist() for column in frame.columns})
    sample = Sample("m", "1", "r-1", time.time(), compile_contract(spec), feeds, logits.astype(np.float32))
    return capture_table([sample])


def label_logits(labels: pd.Series, names: list[str]) -> np.ndarray:
    """Logits that answer exactly these labels: a model that reproduces its training labels."""
    return np.eye(len(names))[[names.index(label) for label in labels]] * 4.0


def same_counts(frame: pd.DataFrame, spec: DatasetSpec, traffic) -> dict[str, bool]:
    """Per drift quantity: whether the captured rows count exactly as the original rows, over the original's bins."""
    summary = summarize(frame, "a" * 64, spec)
    return {
        key: bool(
            np.array_equal(
                compared_counts(quantity.values, summary.columns[key])[0],
                compared_counts(traffic.measured[key].values, summary.columns[key])[0],
            )
        )
        for key, quantity in measure(frame, spec).items()
    }


def test_a_table_is_rebuilt_from_its_capture_as_the_data_checks_count_it():
    """Numbers (float32 in the capture, at the decimals sent), categories, binary, a date's parts, a text's
    measures, and the answers as the target: every count equals the original rows' count."""
    frame = table_frame(400)
    traffic = rebuild_traffic(captured(frame, TABLE, label_logits(frame["species"], LABELS)), TABLE)

    counts = same_counts(frame, TABLE, traffic)
    assert {"bill", "island", "sex", "seen.year", "seen.elapsed", "note.vocabulary", "species"} <= set(counts)
    assert all(counts.values()), counts
    assert traffic.not_comparable == {}


def test_float32_rounding_alone_is_not_drift():
    """Without reading float32 back at its decimals, captured 39.1s fall one bin below the training 39.1s."""
    frame = table_frame(400)
    table = captured(frame, TABLE, label_logits(frame["species"], LABELS))
    reference = DriftReference("1", summarize(frame, "a" * 64, TABLE), "training")
    report = score_traffic(rebuild_traffic(table, TABLE), TABLE, reference, DriftConfig())
    assert report.status == "ok" and report.max_feature_psi == pytest.approx(0.0, abs=1e-3)
    # What the rebuild undoes: the float32 values as stored count differently over the training bins.
    raw = pd.Series(table.column("bill").to_numpy(zero_copy_only=False).astype(np.float64))
    bins = reference.summary.columns["bill"]
    assert not np.array_equal(compared_counts(raw, bins)[0], compared_counts(frame["bill"], bins)[0])


def test_a_shifted_number_is_named_first_and_the_answers_compared_with_the_labels():
    frame, live = table_frame(400), table_frame(400, seed=1, shift=15.0)
    answers = label_logits(pd.Series(["Adelie"] * 400), LABELS)  # every answer the same label
    reference = DriftReference("1", summarize(frame, "a" * 64, TABLE), "training")
    report = score_traffic(rebuild_traffic(captured(live, TABLE, answers), TABLE), TABLE, reference, DriftConfig())
    assert report.status == "blocking" and report.features[0].name == "bill"
    assert report.label_shares["Adelie"][0] == 1.0 and report.label_psi > 0.5


def test_an_image_grid_is_rebuilt_pixel_by_pixel():
    digits = digits_frame().head(300)
    spec = digits_spec().dataset
    labels = [str(label) for label in range(10)]
    traffic = rebuild_traffic(captured(digits, spec, label_logits(digits["target"].astype(str), labels)), spec)
    assert all(same_counts(digits, spec, traffic).values())


PHOTOS = DatasetSpec(
    name="photos",
    target=TargetSpec(name="label", task="classification", labels=["a", "b"]),
    features=[FeatureSpec(name="photo", type="image", height=4, width=4, channels=1, resize="stretch")],
)


def test_image_files_are_not_comparable_and_only_the_answers_are_scored():
    """Capture keeps no pixels of an image file: its measures are named as not comparable, never scored 0."""
    feeds = {"pixels": np.zeros((120, 16), np.float32)}
    answers = label_logits(pd.Series(["a"] * 120), ["a", "b"]).astype(np.float32)
    table = capture_table([Sample("m", "1", "r", time.time(), compile_contract(PHOTOS), feeds, answers)])
    traffic = rebuild_traffic(table, PHOTOS)
    assert set(traffic.not_comparable) == {
        "photo.intensity_mean",
        "photo.intensity_std",
        "photo.height",
        "photo.width",
    }
    assert "'photo' is not kept in the capture" in traffic.not_comparable["photo.height"]
    columns = {key: ColumnSummary("bins", [10] * 10, edges=list(range(9))) for key in traffic.not_comparable}
    columns["label"] = ColumnSummary("values", [60, 60], values=["a", "b"])
    reference = DriftReference("1", DataSummary("a" * 64, 120, "label", columns), "training")
    report = score_traffic(traffic, PHOTOS, reference, DriftConfig())
    assert report.features == () and report.label_shares["a"] == (1.0, 0.5) and report.status == "blocking"


def test_too_few_rows_skip_with_the_count():
    frame = table_frame(40)
    table = captured(frame, TABLE, label_logits(frame["species"], LABELS))
    reference = DriftReference("1", summarize(table_frame(400), "a" * 64, TABLE), "training")
    rows = CapturedRows(table, files=1, unfinished=0, unreadable=())
    report, _ = drift_of(rows, TABLE, reference, MonitorConfig(), "capture/m/1")
    assert report.status == "skipped" and "40 captured rows, fewer than min_rows 100" in report.note
    assert report.features == () and report.label_psi is None
    nothing, _ = drift_of(CapturedRows(None, 0, 2, ()), TABLE, reference, MonitorConfig(), "capture/m/1")
    assert nothing.status == "skipped" and "nothing captured in the window (looked in capture/m/1)" in nothing.note


@pytest.mark.parametrize(("text", "hours"), [("24h", 24.0), ("90m", 1.5), ("7d", 168.0), ("30s", 30 / 3600)])
def test_the_window_flag(text, hours):
    assert parse_window(text) == pytest.approx(hours)


@pytest.mark.parametrize("text", ["", "24", "h", "-3h", "0h", "3 weeks", "1y"])
def test_a_window_that_is_not_one_is_refused_with_examples(text):
    with pytest.raises(MonitorRefused, match="give a window like 24h, 90m or 7d"):
        parse_window(text)


def test_a_version_needs_its_model_and_the_window_must_be_positive():
    with pytest.raises(ValidationError, match="give model_name too"):
        MonitorConfig(version="3")
    with pytest.raises(ValidationError):
        MonitorConfig(since_hours=0)


def test_an_unknown_version_is_named_with_the_versions_that_exist(monkeypatch):
    refs = [ModelVersionRef("sqlite:///x.db", "penguins", v, None, {}) for v in ("2", "1")]
    monkeypatch.setattr(drift_watch, "list_versions", lambda uri, name, limit: refs)

    def missing(uri, name, version):
        raise RegistryError(f"no version {version}")

    monkeypatch.setattr(drift_watch, "get_version", missing)
    with pytest.raises(MonitorRefused, match=r"'penguins' has no version 7 in sqlite:///x.db \(versions: 2, 1\)"):
        resolve_watched("sqlite:///x.db", MonitorConfig(model_name="penguins", version="7"))
    monkeypatch.setattr(drift_watch, "list_versions", lambda uri, name, limit: [])
    monkeypatch.setattr(drift_watch, "registered_model_names", lambda uri: ["digits", "penguins"])
    with pytest.raises(MonitorRefused, match=r"no registered model 'pengiuns' .*registered: digits, penguins"):
        resolve_watched("sqlite:///x.db", MonitorConfig(model_name="pengiuns"))


def test_the_training_configuration_is_rebuilt_from_its_runs_parameters():
    """The pipeline logs its RunConfig only as flattened text parameters; the drift event carries it rebuilt."""
    config = RunConfig.model_validate(
        {
            "data_path": "/data/loans.csv",
            "target": "default",
            "model_name": "2024",  # a name that reads as a number stays a name
            "training": {"max_epochs": 7, "learning_rate": 0.0005, "time_budget_s": None},
            "compression": {"pruning": {"levels": [0.5]}, "distillation": {"student": {"family": "tabular_mlp"}}},
            "gate": {"change_thresholds": [{"metric": "test_accuracy", "min_absolute_change": -0.01}]},
            "sweep": {"trials": 4, "space": {"training.learning_rate": {"type": "float", "low": 1e-4, "high": 0.1}}},
        }
    )
    params = {key: value for key, value in flatten("", config.model_dump()).items()}
    assert RunConfig.model_validate(nested_settings(params, RunConfig)) == config


def live_check(report, **fields) -> LiveDrift:
    until = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
    values = {
        "model": "penguins",
        "version": "3",
        "since": until - timedelta(hours=24),
        "until": until,
        "location": "capture/penguins/3",
        "rows": 400,
        "files": 2,
        "unfinished": 1,
        "unreadable": (),
        "drift": report,
        "not_comparable": {},
        "model_id": None,
        "run_id": "abc",
    }
    return LiveDrift(**(values | fields))


@pytest.fixture(scope="module")
def shifted_check() -> LiveDrift:
    frame, live = table_frame(400), table_frame(400, seed=1, shift=15.0)
    reference = DriftReference("3", summarize(frame, "a" * 64, TABLE), "v3's training data")
    traffic = rebuild_traffic(captured(live, TABLE, label_logits(live["species"], LABELS)), TABLE)
    return live_check(score_traffic(traffic, TABLE, reference, DriftConfig()))


def test_the_page_shows_the_verdict_the_charts_and_every_feature(shifted_check):
    alert = DriftAlert("greenlight.drift.detected sent to the Prefect server at http://x/api", True)
    page = render_page(live_check(shifted_check.drift, not_comparable={"photo.height": "not kept"}), alert)
    assert 'class="verdict blocking">BLOCKING' in page and page.count("<svg") == 2  # PSI per feature, label shares
    assert "last 24 h (2026-12-05 14:00 .. 2026-12-06 14:00 UTC)" in page and alert.line in page
    assert page.index("<td>bill</td>") < page.index("<td>island</td>") and "<td>photo.height</td>" in page
    assert shifted_check.lines()[3].split()[1] == "bill"  # the console's features line, most drifted first


def test_a_skipped_check_still_renders_and_says_why():
    report = skipped(None, DriftConfig(), "12 captured rows, fewer than min_rows 100")
    page = render_page(live_check(report, rows=12), DriftAlert("none (drift skipped)", False))
    assert 'class="verdict skipped">SKIPPED' in page and "fewer than min_rows 100" in page and "<svg" not in page
    assert live_check(report).metrics() == {"rows": 400.0}


def test_a_refused_event_is_reported_not_raised(shifted_check, monkeypatch):
    from tasks.monitoring import drift_record

    def refused(*args, **kwargs):
        raise GreenlightError("the Prefect server at http://x/api did not take the event: 503")

    monkeypatch.setattr(drift_record, "send_version_event", refused)
    monkeypatch.setattr(drift_record, "training_config", lambda ref: (None, "no run"))
    ref = ModelVersionRef("sqlite:///x.db", "penguins", "3", None, {})
    alert = alert_drift.fn(shifted_check, ref, "file:///report.html")
    assert not alert.sent and alert.line.startswith("greenlight.drift.detected NOT sent: the Prefect server")
