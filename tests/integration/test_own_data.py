"""A user's own tables through the CLI, as a user runs them: zero config, a reviewed spec, a custom model,
and the production model answering raw records over HTTP in the user's own label values.

Real tables that ship inside packages: palmerpenguins (string categoricals, NaNs), scikit-learn's
breast_cancer (binary, string labels here), wine (multiclass numeric) and diabetes (regression).
"""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from registry_support import post_json, registry_state, served

from deployments.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


def sklearn_table(loader: str, target: str, names: list[str] | None = None) -> pd.DataFrame:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)(as_frame=True)
    frame = bunch.frame.rename(columns={"target": target})
    if names is not None:
        frame[target] = [names[int(i)] for i in frame[target]]
    return frame


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tables")
    frames = {
        "penguins.csv": penguins(),
        "diabetes.parquet": sklearn_table("load_diabetes", "progression"),
        "breast_cancer.csv": sklearn_table("load_breast_cancer", "diagnosis", ["malignant", "benign"]),
        "wine.csv": sklearn_table("load_wine", "cultivar"),
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / name
        frame.to_parquet(paths[name], index=False) if name.endswith(".parquet") else frame.to_csv(
            paths[name], index=False
        )
    return paths


@pytest.fixture(scope="module")
def client(prefect_harness, greenlight_home) -> MlflowClient:
    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def penguins_run(tables, client):
    return main(["run", "--data", str(tables["penguins.csv"]), "--target", "species", "--model-name", "penguins"])


@pytest.fixture(scope="module")
def diabetes_run(tables, client):
    return main(
        ["run", "--data", str(tables["diabetes.parquet"]), "--target", "progression", "--model-name", "diabetes"]
    )


def test_zero_config_run_on_penguins_promotes_a_classifier_with_its_spec(penguins_run, client):
    assert penguins_run == 0
    version = client.get_model_version_by_alias("penguins", "production")
    assert version.tags["task"] == "classification" and version.tags["gate_verdict"] == "passed"
    assert float(version.tags["test_accuracy"]) >= 0.9
    spec_file = client.download_artifacts(version.run_id, "spec/spec.yaml")
    spec = yaml.safe_load(Path(spec_file).read_text())
    types = {f["name"]: f["type"] for f in spec["dataset"]["features"]}
    assert types["island"] == "categorical" and types["bill_length_mm"] == "numeric"
    assert spec["dataset"]["target"]["labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    info = __import__("mlflow").models.get_model_info(f"models:/penguins/{version.version}")
    columns = {c["name"]: c for c in info.signature.inputs.to_dict()}
    assert columns["island"]["type"] == "string" and columns["bill_length_mm"]["type"] == "double"


def test_zero_config_trains_both_table_families_and_registers_the_one_it_serves(penguins_run, client):
    # model.family auto: trees and the MLP scored on validation rows, on the run a user browses; the registered
    # spec names the family that was served (the one the gate judged), not "auto".
    version = client.get_model_version_by_alias("penguins", "production")
    run = client.get_run(version.run_id)
    candidates = {name for name in run.data.metrics if name.startswith("candidate.")}
    expected = {"candidate.gradient_boosting.validation_accuracy", "candidate.tabular_mlp.validation_accuracy"}
    assert expected <= candidates, f"{candidates}; tags {run.data.tags}"
    served = run.data.tags["model_family_served"]
    assert version.tags["model_family"] in ("gradient_boosting", "tabular_mlp", "ensemble")
    assert served.split(":")[0] == version.tags["model_family"]
    logged = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "selection")}
    assert logged == {"candidates.md", "candidates.png"}


def test_served_penguins_answer_raw_records_in_the_users_labels_including_odd_ones(penguins_run, tmp_path):
    frame = penguins().dropna().sample(40, random_state=1)
    records = frame.drop(columns=["species"]).to_dict("records")
    with served("penguins", tmp_path / "serve.log") as url:
        status, body = post_json(f"{url}/predict", {"records": records})
        assert status == 200, body
        correct = sum(p == s for p, s in zip(body["predictions"], frame["species"], strict=True))
        assert correct / len(frame) >= 0.9
        assert set(body["probabilities"][0]) == {"Adelie", "Chinstrap", "Gentoo"}
        odd = {**records[0], "island": "Atlantis", "sex": None, "bill_length_mm": None}
        status, body = post_json(f"{url}/predict", {"records": [odd]})
        assert status == 200 and body["predictions"][0] in {"Adelie", "Chinstrap", "Gentoo"}
        status, body = post_json(f"{url}/predict", {"records": [{**records[0], "flipper_length_mm": "long"}]})
        assert status == 422 and "flipper_length_mm" in json.dumps(body) and "long" in json.dumps(body)


def test_zero_config_regression_on_diabetes_answers_numbers(diabetes_run, client, tmp_path):
    assert diabetes_run == 0
    version = client.get_model_version_by_alias("diabetes", "production")
    assert version.tags["task"] == "regression" and float(version.tags["test_r2"]) >= 0.3
    frame = sklearn_table("load_diabetes", "progression").sample(20, random_state=2)
    with served("diabetes", tmp_path / "serve.log") as url:
        status, body = post_json(f"{url}/predict", {"records": frame.drop(columns=["progression"]).to_dict("records")})
        assert status == 200, body
        assert all(isinstance(p, float) for p in body["predictions"]) and "probabilities" not in body
        assert 25 <= min(body["predictions"]) and max(body["predictions"]) <= 346  # the target's own units


def test_init_writes_a_spec_that_a_reviewed_run_reads_back(tables, client, tmp_path, capsys):
    out = tmp_path / "greenlight.yaml"
    assert main(["init", "--data", str(tables["breast_cancer.csv"]), "--target", "diagnosis", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean radius" in printed and "numeric" in printed and str(out) in printed
    spec = yaml.safe_load(out.read_text())
    spec["model_name"] = "cancer"
    spec["dataset"]["features"] = [f for f in spec["dataset"]["features"] if f["name"] != "worst symmetry"]
    spec["training"] = {"distributed": {"nproc_per_node": 2}}  # ...and trains in two torchrun processes
    out.write_text(yaml.safe_dump(spec))  # a reviewer drops a column
    assert main(["run", "--spec", str(out)]) == 0
    version = client.get_model_version_by_alias("cancer", "production")
    assert client.get_run(version.run_id).data.tags["device"] == "cpu x2"
    info = __import__("mlflow").models.get_model_info(f"models:/cancer/{version.version}")
    assert "worst symmetry" not in info.signature.inputs.input_names()
    assert info.metadata["greenlight_spec"]["dataset"]["target"]["labels"] == ["benign", "malignant"]


def test_a_custom_model_by_module_function_goes_through_the_same_gate(tables, client, tmp_path):
    spec_path = tmp_path / "wine.yaml"
    assert main(["init", "--data", str(tables["wine.csv"]), "--target", "cultivar", "--out", str(spec_path)]) == 0
    spec = yaml.safe_load(spec_path.read_text())
    spec["model"] = {"family": "custom", "custom": "custom_models:small_linear"}
    spec["model_name"] = "wine-custom"
    spec_path.write_text(yaml.safe_dump(spec))
    assert main(["run", "--spec", str(spec_path)]) == 0
    version = client.get_model_version_by_alias("wine-custom", "production")
    assert version.tags["model_family"] == "custom" and version.tags["gate_verdict"] == "passed"


def test_a_table_without_its_target_column_is_refused_before_anything_is_registered(tables, client, capsys):
    before = registry_state(client, "penguins")
    assert (
        main(["run", "--data", str(tables["penguins.csv"]), "--target", "species_name", "--model-name", "penguins"])
        == 2
    )
    assert "species_name" in capsys.readouterr().err
    assert registry_state(client, "penguins") == before
