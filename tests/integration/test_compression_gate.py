"""Compression as a user meets it: a table's network whose fp32 file meets the goals is not pruned or distilled
unless the configuration asks, and the run says why; asked, a run logs every candidate (pruned, distilled, INT8 of
each), the Pareto plot and the choice; and a candidate chosen under a loose validation budget that loses on the
test rows fails the gate, so nothing is promoted."""

import json
import os
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from registry_support import registry_state

from deployments.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory) -> Path:
    from sklearn.datasets import load_wine

    path = tmp_path_factory.mktemp("wine") / "wine.csv"
    load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def client(prefect_harness, greenlight_home) -> MlflowClient:
    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def test_asked_to_prune_and_distil_a_table_run_logs_every_candidate_the_pareto_plot_and_the_choice(
    wine_csv, client, tmp_path
):
    # The wine network's fp32 file meets the goals: pruning and distillation run because the configuration asks.
    config = tmp_path / "always.yaml"
    config.write_text(
        yaml.safe_dump({"compression": {"pruning": {"when": "always"}, "distillation": {"when": "always"}}})
    )
    args = [
        "run",
        "--data",
        str(wine_csv),
        "--target",
        "cultivar",
        "--model-name",
        "wine-candidates",
        "--family",
        "tabular_mlp",
    ]
    assert main([*args, "--config", str(config)]) == 0
    version = client.get_model_version("wine-candidates", "1")
    run = client.get_run(version.run_id)
    sources = ("fp32", "pruned_30", "pruned_60", "distilled")
    for source in sources:  # each torch model, and its INT8 files where the quantizer made them
        assert f"{source}_validation_metric" in run.data.metrics
        prefix = "" if source == "fp32" else f"{source}_"
        assert f"{prefix}int8_static_qdq_size_bytes" in run.data.metrics
    assert run.data.metrics["distilled_size_bytes"] < run.data.metrics["fp32_size_bytes"] / 3
    assert run.data.metrics["pruned_60_size_bytes"] < run.data.metrics["pruned_30_size_bytes"]
    files = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "onnx_candidates")}
    assert {"model.onnx", "pruned-30.onnx", "pruned-60.onnx", "distilled.onnx", "distilled.int8-static.onnx"} <= files
    assert "stage_seconds.pruning_and_distillation" in run.data.metrics
    chosen = version.tags["compression"]
    source = chosen.split("+")[0]
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "compression")}
    # The plot, and the torch model the served file came from when it is not the trained one (evaluation/best.pt).
    assert logged == {"compression/compression_candidates.png"} | (
        set() if source in ("fp32", "int8-static-qdq", "int8-dynamic") else {f"compression/{source}.pt"}
    )
    assert chosen in version.description and f"chose {chosen}" in version.description
    report = json.loads(open(client.download_artifacts(run.info.run_id, "gate/gate_report.json")).read())
    assert f"chose {chosen}" in report["served"]
    assert report["compression_steps"][:2] == [
        "pruning: ran — compression.pruning.when is always",
        "distillation: ran — compression.distillation.when is always",
    ]
    assert run.data.tags["compression.int8"].startswith("ran — ")


def test_a_candidate_that_loses_on_the_test_rows_fails_the_gate_and_nothing_is_promoted(wine_csv, client, tmp_path):
    # Any candidate may be served (a 100-point validation budget), so the smallest is: 90% of every layer pruned
    # and not fine-tuned. The gate allows no loss against fp32 on the test rows (beyond one row's worth).
    # Distillation is left to the goals, which the wine network's fp32 file meets: it is skipped, and says why.
    tight = {
        "compression": {
            "accuracy_budget_points": 100,
            "pruning": {"when": "always", "levels": [0.9], "fine_tune_epochs": 0},
        },
        "gate": {"max_compression_loss_points": 0},
    }
    config = tmp_path / "tight.yaml"
    config.write_text(yaml.safe_dump(tight))
    args = [
        "run",
        "--data",
        str(wine_csv),
        "--target",
        "cultivar",
        "--model-name",
        "wine-tight",
        "--family",
        "tabular_mlp",
    ]
    assert main([*args, "--config", str(config)]) == 3
    assert registry_state(client, "wine-tight") == (["1"], None)
    tags = client.get_model_version("wine-tight", "1").tags
    assert tags["compression"] == "pruned-90"
    assert tags["gate_verdict"] == "failed" and tags["gate.compression_accuracy_loss_points"].endswith("FAIL")
    assert "compression_accuracy_loss_points" in tags["gate_reason"]
    run = client.get_run(client.get_model_version("wine-tight", "1").run_id)
    skipped = run.data.tags["compression.distillation"]
    assert skipped.startswith("skipped — the fp32 file (") and "meets the goals (10 MB, 5 ms)" in skipped
    assert "distilled_validation_metric" not in run.data.metrics
