"""Real tables that ship inside packages: the spec inferred from each, and that each passes its own suite.

wine (multiclass, numeric), breast_cancer (binary, numeric), diabetes (regression, one binary column),
palmerpenguins (string categoricals and missing values), each read from a CSV file as `greenlight init`
reads it.
"""

from pathlib import Path

import pandas as pd
import pytest

from tasks.core.config import DriftConfig, ValidationConfig
from tasks.core.spec import Spec
from tasks.data.drift import DriftReference, score_drift, summarize
from tasks.data.files import load_dataset
from tasks.data.infer import infer_spec
from tasks.data.validation import validate_dataset


def penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins()


def sklearn_table(name: str) -> pd.DataFrame:
    import sklearn.datasets

    return getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame


TABLES = {
    "wine": (lambda: sklearn_table("wine"), "target"),
    "breast_cancer": (lambda: sklearn_table("breast_cancer"), "target"),
    "diabetes": (lambda: sklearn_table("diabetes"), "target"),
    "penguins": (penguins, "species"),
}


@pytest.fixture(scope="module", params=list(TABLES))
def table(request, tmp_path_factory) -> tuple[str, pd.DataFrame, Spec]:
    """(name, the rows as loaded from a CSV file, the spec inferred from them)."""
    make, target = TABLES[request.param]
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.csv"
    make().to_csv(path, index=False)
    frame = load_dataset.fn(str(path), path.parent, None).frame
    spec, _ = infer_spec(frame, target, name=request.param)
    return request.param, frame, spec


def types_of(spec: Spec) -> dict[str, str]:
    return {f.name: f.type for f in spec.dataset.features}


def test_wine_is_multiclass_over_thirteen_numeric_measurements():
    spec, _ = infer_spec(sklearn_table("wine"), "target")
    assert set(types_of(spec).values()) == {"numeric"} and len(spec.dataset.features) == 13
    assert spec.dataset.target.task == "classification" and spec.dataset.target.labels == [0, 1, 2]


def test_breast_cancer_is_binary_classification_over_thirty_numeric_columns():
    spec, _ = infer_spec(sklearn_table("breast_cancer"), "target")
    assert set(types_of(spec).values()) == {"numeric"} and len(spec.dataset.features) == 30
    assert spec.dataset.target.labels == [0, 1]


def test_diabetes_is_regression_with_sex_as_a_binary_column():
    spec, _ = infer_spec(sklearn_table("diabetes"), "target")
    types = types_of(spec)
    assert types.pop("sex") == "binary" and set(types.values()) == {"numeric"}
    assert spec.dataset.target.task == "regression"


def test_penguins_types_and_missing_values():
    spec, reports = infer_spec(penguins(), "species")
    features = {f.name: f for f in spec.dataset.features}

    assert spec.dataset.target.labels == ["Adelie", "Chinstrap", "Gentoo"]
    assert features["island"].type == "categorical" and not features["island"].nullable  # no island is missing
    assert features["island"].values == ["Biscoe", "Dream", "Torgersen"]
    assert features["sex"].type == "binary" and features["sex"].nullable  # male / female, 11 rows unknown
    assert features["bill_length_mm"].type == "numeric" and features["bill_length_mm"].nullable
    # Three survey years in a row: a scale (a tree splits on before / after; 2010 is a later year, not unseen).
    assert features["year"].type == "numeric" and (features["year"].min, features["year"].max) == (2007, 2009)
    assert "whole with 3 distinct values in 2007..2009: a count or a scale: numeric" in features["year"].why
    assert {r.name: r.null_share for r in reports}["sex"] == pytest.approx(11 / 344)


def test_each_table_passes_the_suite_of_its_own_spec(table, tmp_path):
    name, frame, spec = table
    report = validate_dataset.fn(frame, f"{name}.csv", tmp_path, ValidationConfig(), spec.dataset)

    assert report.of_severity("critical") == () and report.of_severity("warning") == (), [
        f.detail for f in report.failures
    ]


def test_each_table_does_not_drift_from_itself(table):
    _, frame, spec = table
    reference = DriftReference("1", summarize(frame, "0" * 64, spec.dataset), "itself")
    drift = score_drift(frame, spec.dataset, reference, DriftConfig())
    assert drift.status == "ok" and drift.max_feature_psi == 0.0 and drift.label_psi == 0.0


def test_the_csv_round_trip_infers_what_the_frame_does(table):
    name, frame, spec = table
    make, target = TABLES[name]
    direct, _ = infer_spec(make(), target, name=name)
    assert types_of(direct) == types_of(spec) and direct.dataset.target == spec.dataset.target


def test_a_spec_file_from_a_real_table_round_trips(table, tmp_path: Path):
    from tasks.core.spec import read_spec_file
    from tasks.data.infer import write_spec_file

    name, _, spec = table
    out = write_spec_file(spec, {"data": f"{name}.csv", "model_name": name}, tmp_path / "greenlight.yaml")
    assert read_spec_file(out)[0] == spec
