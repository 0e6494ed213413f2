"""PSI drift against the production version's data summary: per type, verdicts, and where the reference comes from."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import ValidationError

from tasks.core.config import DriftConfig, ValidationConfig
from tasks.core.errors import DataRejected
from tasks.core.features.image import image_figures
from tasks.core.records import ProductionFile
from tasks.core.spec import DIGITS_COLUMNS, DatasetSpec, FeatureSpec, TargetSpec, digits_frame, digits_spec
from tasks.data.drift import (
    DataSummary,
    DriftReference,
    DriftReport,
    FeatureDrift,
    measure_drift,
    psi,
    read_drift_reference,
    score_drift,
    summarize,
)
from tasks.data.report import require_valid_dataset, write_data_report
from tasks.data.validation import validate_dataset

MODEL = "drift-test-model"
DIGITS = digits_spec().dataset
TARGET_COLUMN = DIGITS.target.name


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    return digits_frame()


@pytest.fixture(scope="module")
def reference(digits) -> DriftReference:
    return DriftReference("4", summarize(digits, "a" * 64, DIGITS), "production v4's training data")


def drift_of(frame: pd.DataFrame, reference: DriftReference, tmp_path: Path, spec: DatasetSpec = DIGITS, **config):
    validation = validate_dataset.fn(
        frame=frame, source="new.csv", report_dir=tmp_path, config=ValidationConfig(), spec=spec
    )
    drift = measure_drift.fn(frame, "b" * 64, validation, reference, DriftConfig(**config), tmp_path, spec)
    return drift, write_data_report.fn(validation=validation, drift=drift, out_dir=tmp_path)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    counts = np.array([50, 30, 20])
    assert psi(counts, counts) == 0.0
    assert psi(counts * 3, counts) == pytest.approx(0.0, abs=1e-3)  # shares, not counts
    assert 0 < psi(np.array([45, 33, 22]), counts) < psi(np.array([20, 30, 50]), counts)


def test_summary_counts_each_pixel_value_and_label(digits):
    summary = summarize(digits, "a" * 64, DIGITS)

    assert summary.rows == 1797 and set(summary.columns) == {*DIGITS_COLUMNS, TARGET_COLUMN}
    assert summary.columns["pixel_0_0"].counts == [1797] + [0] * 16  # always blank in the bundled digits
    labels = summary.columns[TARGET_COLUMN]
    assert labels.values == [str(d) for d in range(10)] and sum(labels.counts) == 1797 and labels.counts[0] == 178


def test_same_data_does_not_drift_and_its_summary_is_written(digits, reference, tmp_path):
    drift, checks = drift_of(digits, reference, tmp_path)

    assert drift.status == "ok" and drift.max_feature_psi == 0.0 and drift.label_psi == 0.0
    assert DataSummary.read(drift.summary_json).columns == reference.summary.columns
    assert json.loads(drift.report_json.read_text())["status"] == "ok"
    assert not checks.blocked


def test_a_random_half_of_the_same_data_stays_below_the_warning(digits, reference, tmp_path):
    drift, _ = drift_of(digits.sample(900, random_state=1).reset_index(drop=True), reference, tmp_path)

    assert drift.status == "ok" and drift.max_feature_psi < DriftConfig().feature_warn_psi


def test_inverted_images_drift_far_and_block_with_the_top_pixels_named(digits, reference, tmp_path):
    inverted = digits.copy()
    inverted[DIGITS_COLUMNS] = 16 - inverted[DIGITS_COLUMNS]
    drift, checks = drift_of(inverted, reference, tmp_path)

    assert drift.status == "blocking" and drift.max_feature_psi > 10
    assert [f.psi for f in drift.features] == sorted((f.psi for f in drift.features), reverse=True)
    with pytest.raises(DataRejected) as raised:
        require_valid_dataset.fn(checks=checks)
    message = str(raised.value)
    assert "new.csv drifted too far from the production model's training data" in message
    assert f"most drifted features: {drift.features[0].name} PSI" in message and "production v4" in message
    assert f"full report: {checks.html}" in message and "drift.feature_block_psi" in message


def test_dropping_half_of_the_digits_blocks_on_the_labels(digits, reference, tmp_path):
    drift, checks = drift_of(digits[digits[TARGET_COLUMN] < 5].reset_index(drop=True), reference, tmp_path)

    assert drift.label_psi >= DriftConfig().label_block_psi and drift.status == "blocking"
    assert drift.label_shares["9"] == (0.0, pytest.approx(180 / 1797))
    assert checks.blocked


def test_a_rarer_digit_is_a_warning_and_the_run_goes_on(digits, reference, tmp_path, capsys):
    threes = digits.index[digits[TARGET_COLUMN] == 3]
    drift, checks = drift_of(digits.drop(index=threes[20:]).reset_index(drop=True), reference, tmp_path)

    assert drift.status == "warning"
    require_valid_dataset.fn(checks=checks)
    assert "passed with warnings" in capsys.readouterr().out
    assert checks.metrics()["drift_label_psi"] == pytest.approx(drift.label_psi)


def test_thresholds_come_from_the_configuration(digits, reference, tmp_path):
    inverted = digits.copy()
    inverted[DIGITS_COLUMNS] = 16 - inverted[DIGITS_COLUMNS]

    assert drift_of(inverted, reference, tmp_path, feature_block_psi=100.0)[0].status == "warning"
    assert drift_of(inverted, reference, tmp_path, enabled=False)[0].status == "skipped"


def test_no_reference_means_no_drift_check_and_says_so(digits, tmp_path):
    drift, checks = drift_of(digits, DriftReference(None, None, "no production version yet"), tmp_path)

    assert drift.status == "skipped" and drift.features == () and drift.summary_json.is_file()
    assert "drift: not measured: no production version yet" in checks.message()
    assert json.loads(drift.report_json.read_text())["note"] == "not measured: no production version yet"


def test_a_rejected_file_is_not_summarised(digits, reference, tmp_path):
    broken = digits.astype(float)
    broken.loc[3, "pixel_3_4"] = np.nan
    drift, _ = drift_of(broken, reference, tmp_path)

    assert drift.status == "skipped" and drift.summary_json is None


def test_warn_above_block_is_a_configuration_error():
    with pytest.raises(ValidationError, match="feature_warn_psi"):
        DriftConfig(feature_warn_psi=2.0, feature_block_psi=1.0)


def test_a_format_1_digits_summary_still_serves_as_the_reference(digits, reference, tmp_path):
    """Versions registered before specs stored pixel and label counts only; drift keeps working against them."""
    labels = reference.summary.columns["target"]
    old = {
        "format": 1,
        "sha256": "c" * 64,
        "rows": 1797,
        "feature_counts": {name: reference.summary.columns[name].counts for name in DIGITS_COLUMNS},
        "label_counts": dict(zip(labels.values, labels.counts, strict=True)),
    }
    (tmp_path / "old.json").write_text(json.dumps(old))
    summary = DataSummary.read(tmp_path / "old.json")

    drift = score_drift(digits, DIGITS, DriftReference("1", summary, "v1"), DriftConfig())
    assert drift.status == "ok" and drift.max_feature_psi == 0.0 and drift.label_psi == 0.0


# A table with one column of each summarised type.
TABLE = DatasetSpec(
    name="customers",
    target=TargetSpec(name="churn", task="classification", labels=["no", "yes"]),
    features=[
        FeatureSpec(name="customer_id", type="id"),
        FeatureSpec(name="amount", type="numeric", nullable=True, min=0.0, max=100.0),
        FeatureSpec(name="plan", type="categorical", values=["basic", "plus", "pro"]),
        FeatureSpec(name="active", type="binary", values=[False, True]),
    ],
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = 2000
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "amount": np.where(np.arange(rows) % 20 == 0, np.nan, rng.normal(50, 10, rows)),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]),
            "active": rng.choice([True, False], rows),
            "churn": rng.choice(["no", "yes"], rows, p=[0.7, 0.3]),
        }
    )


def table_drift(frame: pd.DataFrame, reference_frame: pd.DataFrame, spec: DatasetSpec = TABLE):
    reference = DriftReference("2", summarize(reference_frame, "a" * 64, spec), "production v2's training data")
    return score_drift(frame, spec, reference, DriftConfig())


def test_table_summary_bins_numbers_by_decile_and_counts_categories(table):
    summary = summarize(table, "a" * 64, TABLE)

    amount = summary.columns["amount"]
    assert amount.kind == "bins" and len(amount.edges) == 9 and amount.missing == 100
    assert all(abs(count - 190) <= 1 for count in amount.counts)  # deciles: 1900 present rows in ten bins
    plan = summary.columns["plan"]
    assert plan.kind == "values" and plan.values == ["pro", "plus", "basic"] and sum(plan.counts) == 2000
    assert summary.columns["active"].values == ["true", "false"]
    assert "customer_id" not in summary.columns  # an id is not a feature: it drifts by construction


def test_the_same_table_does_not_drift(table):
    drift = table_drift(table, table)
    assert drift.status == "ok" and drift.max_feature_psi == 0.0 and drift.label_psi == 0.0
    assert {f.name for f in drift.features} == {"amount", "plan", "active"}


def test_a_shifted_numeric_column_is_the_most_drifted(table):
    shifted = table.assign(amount=table["amount"] + 10)  # one standard deviation
    drift = table_drift(shifted, table)

    assert drift.features[0].name == "amount" and drift.features[0].psi > DriftConfig().feature_warn_psi
    assert drift.status in ("warning", "blocking") and drift.features[1].psi < 0.01


def test_more_missing_values_drift_through_the_missing_bin(table):
    gappy = table.assign(amount=table["amount"].where(np.arange(len(table)) % 3 != 0))
    assert table_drift(gappy, table).features[0].name == "amount"


def test_a_new_category_is_flagged_with_its_unseen_share(table):
    changed = table.copy()
    changed.loc[changed.index[::5], "plan"] = "enterprise"  # 20% of the rows
    drift = table_drift(changed, table)

    plan = drift.features[0]
    assert plan.name == "plan" and plan.unseen_share == pytest.approx(0.2) and plan.psi > 0.5
    assert "plan PSI" in drift.top_text() and "(20% unseen)" in drift.top_text()


def test_the_report_names_the_drifted_table_columns_and_their_unseen_share(table, tmp_path, capsys):
    changed = table.copy()
    changed.loc[changed.index[::10], "plan"] = "enterprise"  # 10%: a warning, not a block
    reference = DriftReference("2", summarize(table, "a" * 64, TABLE), "production v2's training data")
    drift, checks = drift_of(changed, reference, tmp_path, spec=TABLE)

    require_valid_dataset.fn(checks=checks)  # a warning: the run goes on
    printed = capsys.readouterr().out
    assert "most drifted features: plan PSI" in printed and "(10% unseen)" in printed
    assert "column 'plan': 200 values not in {'basic', 'plus', 'pro'}" in printed
    page = checks.html.read_text()
    assert "<td>plan</td>" in page and "<td>10.0%</td>" in page and "pixel" not in page
    assert "| plan |" in checks.markdown("link") and checks.metrics()["drift_psi.plan"] == drift.features[0].psi


def test_a_regression_target_drifts_over_its_deciles(table):
    spec = TABLE.model_copy(update={"target": TargetSpec(name="spend", task="regression")})
    reference = table.assign(spend=np.linspace(0, 100, len(table)))
    same = table_drift(reference, reference, spec)
    higher = table_drift(reference.assign(spend=reference["spend"] + 30), reference, spec)

    assert same.label_psi == 0.0 and same.label_shares == {}
    assert higher.label_psi > DriftConfig().label_block_psi and higher.status == "blocking"


def test_a_reference_of_another_spec_is_skipped_with_the_reason(table, digits, reference):
    drift = score_drift(table, TABLE, reference, DriftConfig())

    assert drift.status == "skipped" and drift.features == ()
    assert "was made for another spec (new here: 'amount', 'plan', 'active', 'churn'; gone: 'pixel_0_0'" in drift.note


DATED = DatasetSpec(
    name="signups",
    target=TargetSpec(name="churn", task="classification", labels=["no", "yes"]),
    features=[
        FeatureSpec(
            name="signup", type="datetime", parts=["year", "month", "day_of_week", "elapsed"], min="2023-01-01"
        ),
        FeatureSpec(name="amount", type="numeric", min=0.0, max=100.0),
    ],
)


def test_a_datetime_drifts_per_part_and_a_year_later_moves_year_and_elapsed_not_the_weekday(table):
    days = np.random.default_rng(3).integers(0, 365, len(table))
    dated = table.assign(signup=[f"{np.datetime64('2023-01-01') + d}T09:00:00" for d in days])
    # 52 weeks on: the same weekdays, nearly the same months, a year later.
    later = dated.assign(signup=[f"{np.datetime64('2023-01-01') + d + 364}T09:00:00" for d in days])
    assert set(summarize(dated, "a" * 64, DATED).columns) == {
        "signup.year",
        "signup.month",
        "signup.day_of_week",
        "signup.elapsed",
        "amount",
        "churn",
    }

    same, moved = table_drift(dated, dated, DATED), table_drift(later, dated, DATED)
    psi_of = {f.name: f.psi for f in moved.features}
    assert same.status == "ok" and same.max_feature_psi == 0.0
    assert moved.features[0].name in ("signup.year", "signup.elapsed") and moved.status == "blocking"
    assert psi_of["signup.day_of_week"] == 0.0 and psi_of["signup.month"] < 0.05


def test_the_reference_is_productions_stored_summary_or_says_why_there_is_none(tmp_path, reference):
    stored = reference.summary.write(tmp_path / "data_summary.json")
    (tmp_path / "garbage.json").write_text("{not json")

    def read(version, path=None, error=None):
        return read_drift_reference.fn(ProductionFile(MODEL, version, path, error))

    assert "no production version of 'drift-test-model'" in read(None).note
    assert "production v3 has no stored data summary" in read("3").note
    found = read("4", stored)
    assert found.version == "4" and found.summary == reference.summary and "production v4's training data" in found.note
    for unreadable in (read("5", None, "artifact store refused: 403"), read("6", tmp_path / "garbage.json")):
        assert unreadable.summary is None and "data summary:" in unreadable.note  # drift skipped, the run goes on
    assert "403" in read("5", None, "artifact store refused: 403").note


def test_a_constant_numeric_column_that_moves_up_is_flagged(table):
    """Deciles of a constant column are all one value: it needs a bin of its own, or 5 -> 7 lands in '>= 5'."""
    constant = table.assign(amount=5.0)
    drift = table_drift(constant.assign(amount=7.0), constant)

    assert drift.features[0].name == "amount" and drift.features[0].psi > DriftConfig().feature_block_psi
    assert table_drift(constant, constant).max_feature_psi == 0.0


# Text: a review column, drift measured by words per text, vocabulary and empty texts.
TEXT = DatasetSpec(
    name="reviews",
    target=TargetSpec(name="label", task="classification", labels=["neg", "pos"]),
    features=[
        FeatureSpec(name="review", type="text", nullable=True, tokenizer="wordpiece", vocab_size=1000, max_length=64)
    ],
)
ENGLISH = (
    "the film was a long and slow story but actors were good music great i liked it not much plot twist ending"
    " scene camera light dark funny sad boring fun again never always"
).split()
GERMAN = (
    "der die das ein eine und aber nicht sehr gut schlecht lang kurz schauspieler musik handlung ende szene"
    " kamera licht dunkel lustig traurig langweilig wieder nie immer"
).split()


def reviews(seed: int, rows: int, words: list[str] = ENGLISH, empty: float = 0.05) -> pd.DataFrame:
    """Reviews of 3..30 words drawn from `words` (the first ones most often), `empty` of them blank or None."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, len(words) + 1)  # Zipf-like: a few words make most of the text
    texts = [
        " ".join(rng.choice(words, rng.integers(3, 31), p=weights / weights.sum())).capitalize() + "."
        for _ in range(rows)
    ]
    blank = rng.random(rows) < empty
    texts = [
        (None if i % 2 else "  ") if gone else text for i, (text, gone) in enumerate(zip(texts, blank, strict=True))
    ]
    return pd.DataFrame({"review": texts, "label": rng.choice(["neg", "pos"], rows)})


def text_drift(frame: pd.DataFrame, reference_frame: pd.DataFrame) -> DriftReport:
    reference = DriftReference("3", summarize(reference_frame, "a" * 64, TEXT), "production v3's training data")
    return score_drift(frame, TEXT, reference, DriftConfig())


def by_name(drift: DriftReport) -> dict[str, FeatureDrift]:
    return {f.name: f for f in drift.features}


def test_text_summary_holds_word_counts_a_vocabulary_and_the_empty_texts(tmp_path):
    frame = reviews(1, 400)
    summary = summarize(frame, "a" * 64, TEXT)

    assert {k: c.kind for k, c in summary.columns.items()} == {
        "review.tokens": "bins",
        "review.vocabulary": "vocabulary",
        "review.empty": "empty",
        "label": "values",
    }
    empty = int(frame["review"].isna().sum() + (frame["review"] == "  ").sum())
    assert summary.columns["review.empty"].counts == [400 - empty, empty] and 0 < empty < 40
    assert sum(summary.columns["review.tokens"].counts) == 400 - empty  # words per non-empty text
    vocabulary = summary.columns["review.vocabulary"]
    assert set(vocabulary.values) <= set(ENGLISH) and vocabulary.values[0] == "the"  # lower-cased, most common first
    assert DataSummary.read(summary.write(tmp_path / "summary.json")) == summary


def test_the_vocabulary_is_capped_and_the_cap_shows_in_the_references_own_rate(monkeypatch):
    monkeypatch.setattr("tasks.data.drift.VOCABULARY_SIZE", 10)
    frame = reviews(1, 400)
    vocabulary = summarize(frame, "a" * 64, TEXT).columns["review.vocabulary"]

    assert len(vocabulary.values) == 10 and vocabulary.values[:2] == ["the", "film"]
    known, unknown = vocabulary.counts
    assert 0.2 < unknown / (known + unknown) < 0.4  # words ranked 11th to 30th: ~27% of running text
    oov = by_name(text_drift(reviews(2, 400), frame))["review.vocabulary"]
    assert oov.reference_share == pytest.approx(unknown / (known + unknown)) and oov.psi < 0.05


def test_text_from_the_same_source_scores_low_with_a_low_out_of_vocabulary_rate():
    drift = text_drift(reviews(2, 300), reviews(1, 1000))

    assert drift.status == "ok" and drift.max_feature_psi < 0.2
    assert {f.name for f in drift.features} == {"review.tokens", "review.vocabulary", "review.empty"}
    oov = by_name(drift)["review.vocabulary"]
    assert oov.unseen_share == 0.0 and oov.reference_share == 0.0  # a closed vocabulary: nothing new here


def test_rare_words_new_to_the_reference_are_not_drift_when_the_source_is_the_same():
    """Natural text keeps bringing words a reference never held; the reference's rate is measured the same way."""
    many = [f"w{i}" for i in range(20_000)]  # a long tail: most of these appear once or never in 500 texts
    drift = text_drift(reviews(2, 300, many), reviews(1, 500, many))

    oov = by_name(drift)["review.vocabulary"]
    assert oov.reference_share > 0.2 and oov.unseen_share == pytest.approx(oov.reference_share, abs=0.03)
    assert oov.psi < 0.05 and drift.status == "ok"


def test_text_in_another_language_blocks_on_its_out_of_vocabulary_rate():
    drift = text_drift(reviews(2, 300, GERMAN), reviews(1, 1000))

    oov = drift.features[0]
    assert oov.name == "review.vocabulary" and oov.psi > DriftConfig().feature_block_psi
    assert oov.unseen_share == 1.0 and oov.reference_share == 0.0 and drift.status == "blocking"
    assert "review.vocabulary PSI" in drift.top_text() and "(100% out of vocabulary, reference 0%)" in drift.top_text()
    assert by_name(drift)["review.tokens"].psi < 0.2  # the texts are as long as before: only the words moved


def test_many_empty_texts_raise_the_empty_rate_and_the_warning():
    drift = text_drift(reviews(2, 400, empty=0.5), reviews(1, 1000))

    empty = drift.features[0]
    assert empty.name == "review.empty" and empty.psi > DriftConfig().feature_warn_psi
    assert empty.unseen_share == pytest.approx(0.5, abs=0.07) and empty.reference_share == pytest.approx(0.05, abs=0.02)
    assert drift.status in ("warning", "blocking") and "% empty, reference 5%)" in drift.top_text()


def test_all_empty_texts_block_and_leave_words_not_comparable():
    blank = reviews(2, 200).assign(review="")
    drift = text_drift(blank, reviews(1, 1000))

    assert [f.name for f in drift.features] == ["review.empty"] and drift.features[0].unseen_share == 1.0
    assert drift.status == "blocking" and "not comparable" in drift.note and "review.tokens" in drift.note


def test_the_report_and_metrics_name_the_text_rows(tmp_path):
    reference = DriftReference("3", summarize(reviews(1, 1000), "a" * 64, TEXT), "production v3's training data")
    drift, checks = drift_of(reviews(2, 300, GERMAN), reference, tmp_path, spec=TEXT)

    assert checks.blocked and "review.vocabulary PSI" in checks.message()
    assert checks.metrics()["drift_psi.review.vocabulary"] == drift.features[0].psi
    assert "| review.vocabulary |" in checks.markdown("link") and "<td>review.empty</td>" in checks.html.read_text()
    written = json.loads(drift.report_json.read_text())["features"]
    assert (
        written["review.vocabulary"]["unseen_share"] == 1.0 and written["review.vocabulary"]["reference_share"] == 0.0
    )
    assert set(DataSummary.read(drift.summary_json).columns) == {
        "review.tokens",
        "review.vocabulary",
        "review.empty",
        "label",
    }


# Images: files on disk, drift measured by intensity mean and spread, height and width.
PHOTOS = DatasetSpec(
    name="photos",
    target=TargetSpec(name="label", task="classification", labels=["a", "b"]),
    features=[FeatureSpec(name="photo", type="image", height=16, width=16, channels=1, resize="stretch")],
)


def write_photos(folder: Path, seed: int, rows: int, side: int = 16, brighter: int = 0, inverted: bool = False):
    """Grayscale PNGs of noise around a brightness of 40..120 (+ brighter), inverted on request."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(rows):
        pixels = np.clip(rng.normal(rng.uniform(40, 120) + brighter, rng.uniform(10, 30), (side, side)), 0, 255)
        pixels = 255 - pixels if inverted else pixels
        Image.fromarray(pixels.astype(np.uint8), "L").save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return pd.DataFrame({"photo": paths, "label": rng.choice(["a", "b"], rows)})


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> pd.DataFrame:
    return write_photos(tmp_path_factory.mktemp("reference"), 1, 300)


def photo_drift(frame: pd.DataFrame, reference_frame: pd.DataFrame) -> DriftReport:
    reference = DriftReference("5", summarize(reference_frame, "a" * 64, PHOTOS), "production v5's training data")
    return score_drift(frame, PHOTOS, reference, DriftConfig())


def test_image_summary_bins_each_files_intensity_and_size(photos, tmp_path):
    summary = summarize(photos, "a" * 64, PHOTOS)

    assert set(summary.columns) == {
        "photo.intensity_mean",
        "photo.intensity_std",
        "photo.height",
        "photo.width",
        "label",
    }
    mean = summary.columns["photo.intensity_mean"]
    assert mean.kind == "bins" and len(mean.edges) == 9 and 40 < mean.edges[0] < mean.edges[-1] < 120
    height = summary.columns["photo.height"]  # every file 16 px high: a bin below, at, and above 16
    assert height.edges[0] == 16.0 and height.counts == [0, 300, 0]
    assert DataSummary.read(summary.write(tmp_path / "summary.json")) == summary


def test_a_large_image_is_measured_on_a_reduced_copy_in_the_specs_channels_with_its_own_size(tmp_path):
    halves = np.zeros((768, 1024, 3), dtype=np.uint8)
    halves[:, :512, 0], halves[:, 512:, 2] = 255, 255  # red | blue: gray 76 | 29 (ITU-R 601 luma)
    Image.fromarray(halves, "RGB").save(tmp_path / "large.png")
    Image.fromarray(halves[:, :, 0], "L").save(tmp_path / "large_gray.png")

    assert image_figures(str(tmp_path / "large_gray.png"), 1) == (127.5, 127.5, 768, 1024)
    assert image_figures(str(tmp_path / "large.png"), 1) == pytest.approx((52.5, 23.5, 768, 1024))
    assert image_figures(str(tmp_path / "large.png"), 3) == pytest.approx((85.0, 120.2, 768, 1024), abs=0.1)


def test_images_of_the_same_distribution_score_low(photos, tmp_path):
    drift = photo_drift(write_photos(tmp_path, 2, 200), photos)

    assert drift.status == "ok" and drift.max_feature_psi < 0.2
    assert {f.name for f in drift.features} == {
        "photo.intensity_mean",
        "photo.intensity_std",
        "photo.height",
        "photo.width",
    }


@pytest.mark.parametrize("change", [{"brighter": 80}, {"inverted": True}])
def test_brighter_or_inverted_images_block_on_their_mean_intensity(photos, tmp_path, change):
    drift = photo_drift(write_photos(tmp_path, 2, 200, **change), photos)

    assert drift.features[0].name == "photo.intensity_mean" and drift.features[0].psi > DriftConfig().feature_block_psi
    assert drift.status == "blocking" and by_name(drift)["photo.height"].psi < 0.05


@pytest.mark.parametrize("side", [12, 32])
def test_images_of_another_size_block_on_height_and_width(photos, tmp_path, side):
    drift = photo_drift(write_photos(tmp_path, 2, 200, side=side), photos)

    assert {f.name for f in drift.features[:2]} == {"photo.height", "photo.width"}
    assert drift.features[1].psi > DriftConfig().feature_block_psi and drift.status == "blocking"


def test_files_that_do_not_decode_are_skipped(photos, tmp_path):
    frame = write_photos(tmp_path, 2, 100)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    frame.loc[:19, "photo"] = [str(tmp_path / "broken.png")] * 10 + [str(tmp_path / "gone.png")] * 10

    summary = summarize(frame, "a" * 64, PHOTOS)
    assert sum(summary.columns["photo.intensity_mean"].counts) == 80 and summary.columns["photo.height"].missing == 0
    drift = photo_drift(frame, photos)
    assert drift.status == "ok" and len(drift.features) == 4 and drift.max_feature_psi < 0.3


def test_when_no_file_decodes_drift_is_skipped_as_not_comparable(photos, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    frame = photos.head(20).assign(photo=str(tmp_path / "broken.png"))
    drift = photo_drift(frame, photos)

    assert drift.status == "skipped" and drift.features == () and drift.label_psi is None
    assert "nothing comparable" in drift.note and "photo.intensity_mean" in drift.note
