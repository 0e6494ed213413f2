"""The gate against a production version trained on another spec, and an identical rerun, through the CLI.

One model's history on the wine table: production reading fewer columns and knowing more labels is compared on
the rows both can score; a candidate with a label production never learned is refused until --accept-new-spec;
the same run again is production's own model, registered as a duplicate while the alias stays.
"""

import os
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from registry_support import registry_state

from deployments.cli import main

pytestmark = pytest.mark.slow
MODEL = "wine-across-specs"


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    """The wine table, the same without 'alcohol', and the same with cultivar 2 relabelled 1 (two labels)."""
    from sklearn.datasets import load_wine

    folder = tmp_path_factory.mktemp("wine-specs")
    frame = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    frame["cultivar"] = frame["cultivar"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    variants = {
        "wine": frame,
        "no_alcohol": frame.drop(columns=["alcohol"]),
        "two_labels": frame.assign(cultivar=frame["cultivar"].replace({"barbera": "grignolino"})),
    }
    for name, table in variants.items():
        table.to_csv(folder / f"{name}.csv", index=False)
    return {name: folder / f"{name}.csv" for name in variants}


@pytest.fixture(scope="module")
def client(prefect_harness, greenlight_home) -> MlflowClient:
    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def production(client: MlflowClient) -> str:
    return str(registry_state(client, MODEL)[1])


def run(table: Path, config: Path, *flags: str) -> int:
    args = ["run", "--data", str(table), "--target", "cultivar", "--model-name", MODEL, "--family", "tabular_mlp"]
    return main([*args, "--max-epochs", "20", "--config", str(config), *flags])


def test_production_on_another_spec_is_compared_where_it_can_score_else_refused_and_a_rerun_is_a_duplicate(
    tables, client, tmp_path
):
    # INT8 is always within the latency bar, so each run serves the same kind of file whatever the machine's load
    # (an identical rerun is one whose served file is byte for byte production's). Drift off: a relabelled table's
    # label PSI blocks it before training, and the user retrains on it knowingly; the bento's start is not at issue.
    steady = {
        "compression": {"max_latency_ratio": 100},
        "drift": {"enabled": False},
        "gate": {"serving": {"enabled": False}},
    }
    config = tmp_path / "steady.yaml"
    config.write_text(yaml.safe_dump(steady))
    assert run(tables["no_alcohol"], config) == 0
    assert production(client) == "1"

    # Production v1 reads a subset of these columns and knows every label: compared on the rows both can score.
    # (Its 'barbera' answers are wrong on these rows, so the two-label candidate beats it.)
    assert run(tables["two_labels"], config) == 0
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["gate_policy"].startswith("compared with production v1 on ")
    assert "test rows both can score" in tags["gate_policy"]
    assert "the candidate also reads 'alcohol'" in tags["gate_policy"]
    assert "production also knows 'barbera'" in tags["gate_policy"]
    assert tags["gate.test_accuracy_vs_production_v1"].endswith("pass")
    assert production(client) == "2"

    # Production v2 never learned 'barbera': no comparison is possible, and that is not a first run.
    assert run(tables["wine"], config) == 3
    tags = client.get_model_version(MODEL, "3").tags
    assert tags["gate_verdict"] == "failed"
    assert tags["gate.compared_with_production"].endswith("FAIL")
    assert "label 'barbera' it never learned" in tags["gate_reason"] and "--accept-new-spec" in tags["gate_reason"]
    assert tags["gate_policy"].startswith("new spec, not compared: production v2 answers another spec")
    assert production(client) == "2"

    assert run(tables["wine"], config, "--accept-new-spec") == 0
    tags = client.get_model_version(MODEL, "4").tags
    assert tags["gate_verdict"] == "passed" and "accepted with --accept-new-spec" in tags["gate_policy"]
    assert "not compared with production v2" in tags["gate_reason"]
    assert production(client) == "4"

    # The same command again trains the same model: registered, marked, and production stays (exit 0: nothing was
    # refused, production already is this model).
    assert run(tables["wine"], config, "--accept-new-spec") == 0
    tags = client.get_model_version(MODEL, "5").tags
    assert tags["onnx_sha256"] == client.get_model_version(MODEL, "4").tags["onnx_sha256"]
    assert (tags["gate_verdict"], tags["duplicate_of"]) == ("duplicate", "production v4")
    assert tags["gate_reason"].startswith("same model as production v4 (served ONNX file identical")
    assert registry_state(client, MODEL)[0] == ["1", "2", "3", "4", "5"] and production(client) == "4"
