"""`greenlight predict` and the batch_scoring flow on a registered table model (no training: a toy graph registered
as the pipeline registers it): answers, the rejects file, the printed count, the version asked for, the refusals
that write nothing, the MLflow run, and the flow through Prefect."""

import io
import json
import os
import re
from contextlib import redirect_stdout

import pandas as pd
import pytest
from endpoint_support import isolated_store, penguins_spec, register_onnx, table_onnx
from mlflow import MlflowClient

from deployments.cli import main
from tasks.core.contract import compile_contract
from tasks.release.scoring import SCORING_EXPERIMENT

pytestmark = pytest.mark.slow  # a registry and the Prefect harness; about 20 s

MODEL = "penguins-scoring"
HEADER = "island,bill_length_mm,flipper_length_mm,body_mass_g,sex,year,penguin_id,comment"
ROWS = [
    "Biscoe,39.1,181,3750,male,2007,p0,extra columns are ignored",
    "Dream,,190,,female,2008,p1,",
    "Torgersen,40.3,n/a?,3250,female,2009,p2,a word for a number",
    "Biscoe,36.7,,3450,,2007,p3,a missing required number",
    "Anvers,38.9,195,3625,female,2010,p4,unseen categories are answered",
    "Dream,39.2,196,4675,male,2008,p5,",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """Two versions of the model; production is version 1."""
    tmp = tmp_path_factory.mktemp("batch-scoring")
    with isolated_store(tmp):
        spec = penguins_spec()
        versions = [register_onnx(tmp, table_onnx(spec, seed), spec, name=MODEL) for seed in (1, 2)]
        client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
        client.set_registered_model_alias(MODEL, "production", versions[0])
        (tmp / "penguins.csv").write_text("\n".join([HEADER, *ROWS]) + "\n")
        yield {"tmp": tmp, "versions": versions, "client": client, "spec": spec}


def predict(*flags: str) -> int:
    return main(["predict", "--model-name", MODEL, "--no-progress", *flags])


@pytest.fixture(scope="module")
def scored(store) -> str:
    """The CSV scored by the production version, the id kept; what the command printed."""
    tmp, printed = store["tmp"], io.StringIO()
    with redirect_stdout(printed):
        code = predict("--data", str(tmp / "penguins.csv"), "--out", str(tmp / "scores.csv"), "--keep", "penguin_id")
    assert code == 0, printed.getvalue()
    return printed.getvalue()


def test_a_csv_with_bad_rows_is_scored_and_its_bad_rows_set_aside(store, scored):
    tmp = store["tmp"]
    assert f"scored 4 rows, rejected 2 (see {tmp / 'scores.csv.rejected.parquet'})" in scored
    scores = pd.read_csv(tmp / "scores.csv")
    assert scores["row"].tolist() == [0, 1, 4, 5] and scores["penguin_id"].tolist() == ["p0", "p1", "p4", "p5"]
    probabilities = scores[["probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]]
    assert probabilities.sum(axis=1).round(9).eq(1).all()
    rejects = pd.read_parquet(tmp / "scores.csv.rejected.parquet")
    assert rejects["row"].tolist() == [2, 3] and rejects["field"].tolist() == ["flipper_length_mm"] * 2
    assert rejects["reason"][0].startswith("record 2, field 'flipper_length_mm': \"n/a?\" is not a number")
    assert "null is not allowed" in rejects["reason"][1]
    assert rejects["flipper_length_mm"][0] == "n/a?" and rejects["penguin_id"].tolist() == ["p2", "p3"]
    assert not [p for p in tmp.iterdir() if p.name.endswith(".partial")]


def test_the_answers_are_the_services_for_the_same_rows(store, scored):
    """The production version's answer to the good rows posted as JSON records, as the service would parse them."""
    from tasks.onnx.runtime import open_session
    from tasks.onnx.verified import ServedModel

    tmp, spec = store["tmp"], store["spec"]
    records = [  # rows 0, 1, 4 and 5 as a client writes them in JSON
        {
            "island": "Biscoe",
            "bill_length_mm": 39.1,
            "flipper_length_mm": 181,
            "body_mass_g": 3750,
            "sex": "male",
            "year": 2007,
        },
        {"island": "Dream", "bill_length_mm": None, "flipper_length_mm": 190, "sex": "female", "year": 2008},
        {
            "island": "Anvers",
            "bill_length_mm": 38.9,
            "flipper_length_mm": 195,
            "body_mass_g": 3625,
            "sex": "female",
            "year": 2010,
        },
        {
            "island": "Dream",
            "bill_length_mm": 39.2,
            "flipper_length_mm": 196,
            "body_mass_g": 4675,
            "sex": "male",
            "year": 2008,
        },
    ]
    model = ServedModel(MODEL, "1", "", open_session(table_onnx(spec, 1)), compile_contract(spec.dataset))
    batch = model.contract.parse(json.dumps({"records": records}).encode())
    answer = json.loads(model.contract.answer(model.predict(batch), MODEL, "1"))
    scores = pd.read_csv(tmp / "scores.csv")
    assert scores["prediction"].tolist() == answer["predictions"]
    expected = [row["Gentoo"] for row in answer["probabilities"]]
    assert scores["probability_Gentoo"].tolist() == pytest.approx(expected, rel=1e-9)


def test_a_parquet_file_with_a_named_version(store, capsys):
    tmp = store["tmp"]
    frame = pd.read_csv(tmp / "penguins.csv").drop(index=[2])  # Parquet numbers are numbers: no word among them
    frame.to_parquet(tmp / "penguins.parquet", index=False)
    out = tmp / "scores.parquet"
    assert predict("--data", str(tmp / "penguins.parquet"), "--out", str(out), "--version", store["versions"][1]) == 0
    printed = capsys.readouterr().out
    assert f"models:/{MODEL}/{store['versions'][1]}" in printed and "scored 4 rows, rejected 1" in printed
    assert pd.read_parquet(out)["row"].tolist() == [0, 1, 3, 4]  # positions in this file
    (reason,) = pd.read_parquet(tmp / "scores.parquet.rejected.parquet")["reason"]
    assert reason.startswith("record 2, field 'flipper_length_mm': null is not allowed")


def test_a_missing_required_column_refuses_the_file_and_writes_nothing(store, capsys):
    tmp = store["tmp"]
    pd.read_csv(tmp / "penguins.csv").drop(columns=["flipper_length_mm"]).to_csv(tmp / "short.csv", index=False)
    assert predict("--data", str(tmp / "short.csv"), "--out", str(tmp / "short-scores.csv")) == 1
    assert "missing 'flipper_length_mm'" in capsys.readouterr().err
    assert not [p for p in tmp.iterdir() if p.name.startswith(("short-scores", ".short-scores"))]


def test_an_unknown_model_or_version_is_named_with_those_that_exist(store, capsys):
    tmp = store["tmp"]
    flags = ["--data", str(tmp / "penguins.csv"), "--out", str(tmp / "never.csv")]
    assert main(["predict", "--model-name", "pengiuns", *flags]) == 1
    error = capsys.readouterr().err
    assert "no registered model 'pengiuns'" in error and f"registered: {MODEL}" in error
    assert predict(*flags, "--version", "9") == 1
    assert f"'{MODEL}' has no version 9" in capsys.readouterr().err
    assert not (tmp / "never.csv").exists()


def test_each_scoring_run_is_recorded_in_mlflow(store, scored):
    client = store["client"]
    experiment = client.get_experiment_by_name(SCORING_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id], f"params.out_path = '{store['tmp'] / 'scores.csv'}'")
    first = run.data
    assert first.params["model_name"] == MODEL and first.params["model_version"] == store["versions"][0]
    assert first.metrics["rows_scored"] == 4 and first.metrics["rows_rejected"] == 2
    assert first.metrics["rows_per_s"] > 0
    artifacts = [f.path for f in client.list_artifacts(run.info.run_id, "rejects")]
    assert artifacts == ["rejects/scores.csv.rejected.parquet"]


def test_the_flow_scores_through_prefect(store, prefect_harness):
    from flows.batch_scoring import batch_scoring
    from tasks.release.scoring import ScoringConfig

    tmp = store["tmp"]
    config = ScoringConfig(model_name=MODEL, data_path=str(tmp / "penguins.csv"), out_path=str(tmp / "flow.parquet"))
    result = batch_scoring(config=config)
    assert (result.rows_scored, result.rows_rejected, result.version) == (4, 2, store["versions"][0])
    assert pd.read_parquet(tmp / "flow.parquet")["row"].tolist() == [0, 1, 4, 5]


def test_a_file_that_breaks_half_way_leaves_nothing_written(store, capsys, monkeypatch):
    """A ragged line after answers were written: the staged files go, no answers or rejects file appears."""
    tmp = store["tmp"]
    monkeypatch.setattr("tasks.release.scoring_rows.CSV_BLOCK_BYTES", 128)  # the bad line arrives in a later block
    (tmp / "ragged.csv").write_text("\n".join([HEADER, *ROWS, *ROWS, "Biscoe,39.1,181,3750,male,2007,p9,x,y"]) + "\n")
    assert (
        predict("--data", str(tmp / "ragged.csv"), "--out", str(tmp / "ragged.csv.parquet"), "--chunk-rows", "2") == 1
    )
    error = capsys.readouterr().err
    assert "could not be read: CSV parse error: Expected 8 columns, got 9" in error
    assert re.search(r"\(after [1-9]\d* rows\); nothing was written", error)  # chunks were written before it
    assert not [p for p in tmp.iterdir() if "ragged.csv." in p.name]
