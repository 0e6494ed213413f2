"""Keys are never features: whole numbers unique per row are typed id whatever their order, `init` says so in a
warning line, and a reviewed spec that declares one numeric is refused unless the feature opts in (allow_unique).

The table is scikit-learn's diabetes with the patient number a user's export carries: numbers issued in the order
the records were filed (here by disease progression, the target), a 90% extract, rows shuffled. Read as a number,
that id alone predicts the target (R^2 0.995 on held-out rows): the model learns the filing order, not the patients.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine

from tasks.core.errors import DataRejected
from tasks.core.spec import FeatureSpec, read_spec_file
from tasks.data.infer import infer_spec, refuse_numeric_keys, render_column_table, write_spec_file

TARGET = "target"


def diabetes(scaled: bool = True) -> pd.DataFrame:
    return load_diabetes(as_frame=True, scaled=scaled).frame


def with_patient_ids(frame: pd.DataFrame, name: str = "patient_id") -> pd.DataFrame:
    """Ids issued in target order from 1001, a 90% extract, shuffled: gaps and no order, as exports have them."""
    ordered = frame.sort_values(TARGET).reset_index(drop=True)
    ordered.insert(0, name, np.arange(1001, 1001 + len(ordered)))
    return ordered.sample(frac=0.9, random_state=0)


def types_of(frame: pd.DataFrame) -> dict[str, str]:
    spec, _ = infer_spec(frame, TARGET)
    return {feature.name: feature.type for feature in spec.dataset.features}


def test_a_shuffled_patient_id_with_gaps_is_an_id_never_read_by_the_model():
    spec, reports = infer_spec(with_patient_ids(diabetes()), TARGET)
    (patient,) = [f for f in spec.dataset.features if f.name == "patient_id"]
    assert patient.type == "id"
    assert patient.why.startswith("398 whole numbers, none repeated, in 1001..1442 (")
    assert "measurements over that range would repeat" in patient.why and "named like a key" in patient.why
    assert "patient_id" not in [f.name for f in spec.dataset.model_features]
    (warning,) = [r.warning for r in reports if r.warning]
    assert warning.startswith("'patient_id' looks like a key (398 whole numbers, none repeated, in 1001..1442;")
    assert warning.endswith(
        "typed id, never read by the model; if it is a real quantity, set type: numeric and allow_unique: true"
    )


def test_the_values_alone_make_it_an_id_whatever_its_name():
    """The name is supporting evidence only: 398 unique numbers over 442 slots would repeat ~136 if measured."""
    spec, _ = infer_spec(with_patient_ids(diabetes(), name="ref"), TARGET)
    (ref,) = [f for f in spec.dataset.features if f.name == "ref"]
    assert ref.type == "id" and "named like a key" not in ref.why


def test_init_prints_one_warning_line_per_key_under_the_table():
    frame = with_patient_ids(diabetes())
    frame.insert(1, "visit_no", frame["patient_id"].to_numpy()[::-1] * 7)  # a second key: unique, spread, named
    table = render_column_table(infer_spec(frame, TARGET)[1])
    warnings = [line for line in table.splitlines() if line.startswith("warning: ")]
    assert [line.split("'")[1] for line in warnings] == ["patient_id", "visit_no"]
    assert table.splitlines()[-len(warnings) - 1] == ""  # the table, a blank line, the warnings


def test_a_wide_unique_key_is_an_id_by_its_name_and_a_wide_unique_measurement_stays_numeric_with_a_warning():
    """Unique whole numbers spread over a range far wider than the rows say nothing by their values: house prices
    in dollars look the same as account numbers. The name decides, and the numeric one is left a feature with a
    line asking the reviewer to check it."""
    rng = np.random.default_rng(3)
    frame = diabetes().assign(
        account_number=rng.choice(90_000_000, len(diabetes()), replace=False) + 10_000_000,
        sale_price=np.round(np.exp(rng.normal(12.2, 0.4, len(diabetes())))).astype(int),  # ~$200,000
    )
    assert frame["sale_price"].is_unique  # no repeat: as unique as the account numbers
    spec, reports = infer_spec(frame, TARGET)
    types = {f.name: f.type for f in spec.dataset.features}
    assert (types["account_number"], types["sale_price"]) == ("id", "numeric")
    warning = {r.name: r.warning for r in reports}["sale_price"]
    assert warning.startswith("'sale_price' is near-unique (442 whole numbers, none repeated, in ")
    assert warning.endswith("left numeric; if it numbers or names the rows, set type: id")


def test_measurements_are_never_ids():
    """Real columns: diabetes unscaled (age, cholesterol: whole numbers with repeats; bmi, bp: fractional), wine
    (proline: whole numbers, 178 rows, some repeated; the rest fractional) and every scaled diabetes feature
    (fractional, unique in most rows)."""
    tables = [diabetes(scaled=False), diabetes(), load_wine(as_frame=True).frame]
    for frame in tables:
        spec, reports = infer_spec(frame, TARGET)
        assert "id" not in {f.type for f in spec.dataset.features}
        assert not [r.warning for r in reports if r.warning]


def test_a_key_with_a_few_repeats_is_still_a_key_and_repeated_counts_are_not():
    """A record filed twice does not make a key a measurement (near-unique: <= 1% repeats); a count whose values
    repeat as measured ones do is numeric."""
    ids = list(np.random.default_rng(4).permutation(np.arange(5000, 5400)))
    ids[10], ids[20] = ids[0], ids[1]  # 2 of 400 repeated
    frame = pd.DataFrame({"record": ids, "dose": np.linspace(1, 2, 400), TARGET: np.linspace(0, 1, 400)})
    assert types_of(frame)["record"] == "id"
    counts = np.random.default_rng(5).poisson(300, 400)  # e.g. visits a year: 400 rows over ~100 values
    assert types_of(frame.assign(record=counts))["record"] == "numeric"


def key_declared_numeric(frame: pd.DataFrame, allow_unique: bool = False):
    """The spec inference proposes, with the reviewer's edit: patient_id typed numeric."""
    spec, _ = infer_spec(frame, TARGET)
    features = [
        FeatureSpec(name=f.name, type="numeric", allow_unique=allow_unique) if f.name == "patient_id" else f
        for f in spec.dataset.features
    ]
    return spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"features": features})})


def test_a_reviewed_spec_declaring_a_key_numeric_is_refused_saying_how_to_keep_it():
    frame = with_patient_ids(diabetes())
    with pytest.raises(DataRejected) as refused:
        refuse_numeric_keys(key_declared_numeric(frame).dataset, frame, "spec file greenlight.yaml")
    message = str(refused.value)
    assert message.startswith(
        "column 'patient_id' (398 whole numbers, none repeated, in 1001..1442; measurements over that range would"
    )
    assert "is numeric in spec file greenlight.yaml but looks like a key" in message
    assert "Set type: id (not read by the model), or, if it is a real quantity, add allow_unique: true" in message
    assert refused.value.exit_code == 2


def test_allow_unique_keeps_the_key_a_feature_and_is_written_only_when_set(tmp_path):
    frame = with_patient_ids(diabetes())
    allowed = key_declared_numeric(frame, allow_unique=True)
    refuse_numeric_keys(allowed.dataset, frame, "spec file greenlight.yaml")  # the reviewer's decision stands
    assert "patient_id" in [f.name for f in allowed.dataset.model_features]

    written = write_spec_file(allowed, {"data": "diabetes.csv"}, tmp_path / "greenlight.yaml")
    text = written.read_text()
    settings = [line.strip() for line in text.splitlines() if "allow_unique" in line and not line.startswith("#")]
    assert settings == ["allow_unique: true"]  # the reviewer's one; the other numeric features leave it unset
    assert "#   numeric: allow_unique: true reads whole numbers unique per row" in text
    spec, _ = read_spec_file(written)
    (patient,) = [f for f in spec.dataset.features if f.name == "patient_id"]
    assert patient.type == "numeric" and patient.allow_unique
    refuse_numeric_keys(spec.dataset, frame, str(written))
