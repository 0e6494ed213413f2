"""A key declared numeric in a reviewed spec, as a user meets it: `greenlight init` warns that it made the column
an id, the reviewer types it numeric anyway, and `greenlight run --spec` exits 2 before anything is trained, saying
which column, why and how to keep it, with nothing registered."""

import os

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from registry_support import registry_state
from sklearn.datasets import load_diabetes

from deployments.cli import main

pytestmark = pytest.mark.slow
MODEL = "patients-leaky-id"


def test_a_reviewed_spec_reading_a_key_as_numeric_is_refused_and_registers_nothing(
    prefect_harness, greenlight_home, tmp_path, capsys
):
    # Patient numbers issued in order of disease progression (the target), a 90% extract, shuffled.
    frame = load_diabetes(as_frame=True).frame.sort_values("target").reset_index(drop=True)
    frame.insert(0, "patient_id", np.arange(1001, 1001 + len(frame)))
    data, spec_path = tmp_path / "patients.csv", tmp_path / "patients.yaml"
    frame.sample(frac=0.9, random_state=0).to_csv(data, index=False)

    init = ["init", "--data", str(data), "--target", "target", "--out", str(spec_path), "--model-name", MODEL]
    assert main(init) == 0
    assert "\nwarning: 'patient_id' looks like a key (398 whole numbers" in capsys.readouterr().out
    spec = yaml.safe_load(spec_path.read_text())
    (patient,) = [f for f in spec["dataset"]["features"] if f["name"] == "patient_id"]
    assert patient["type"] == "id"
    patient.update(type="numeric", why="reviewer: the id is a number")
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    assert main(["run", "--spec", str(spec_path)]) == 2
    message = capsys.readouterr().err
    assert "column 'patient_id' (398 whole numbers, none repeated, in 1001..1442;" in message
    assert f"is numeric in spec file {spec_path} but looks like a key" in message
    assert "add allow_unique: true to the feature" in message and "Traceback" not in message
    assert registry_state(client, MODEL) == ([], None)
