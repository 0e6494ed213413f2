"""Promotion lifecycle through the CLI: gate failures, forced promotion, rollback, concurrent runs.

Each test uses its own registered model name in the session's temporary MLflow store.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from mlflow import MlflowClient

from deployments.cli import main
from tasks.core.errors import GreenlightError
from tasks.core.locations import resolve_locations
from tasks.core.retry import wait_until
from tasks.registry.client import alias_history, find_version
from tasks.release.promotion import history_disagreement, rollback

pytestmark = pytest.mark.slow
FAST = ["--max-epochs", "12"]  # ~0.98 test accuracy in a few seconds: enough to pass the gate


@pytest.fixture(scope="module")
def tracking_uri() -> str:
    return resolve_locations().tracking_uri


def production(client: MlflowClient, model: str) -> str | None:
    aliases = client.get_registered_model(model).aliases
    return str(aliases["production"]) if "production" in aliases else None


def assert_consistent(moves: list[dict], current: str | None) -> None:
    """Each move starts where the previous one ended, and the last one ends where the alias is."""
    assert moves[0]["from_version"] == "None"
    for earlier, later in zip(moves, moves[1:], strict=False):
        assert later["from_version"] == earlier["to_version"], moves
    assert moves[-1]["to_version"] == current


def test_gate_failures_keep_the_alias_and_forced_promotion_and_rollback_are_recorded(
    prefect_harness, tracking_uri, tmp_path
):
    model = "lifecycle-model"
    client = MlflowClient(tracking_uri=tracking_uri)
    assert main(["run", "--model-name", model, *FAST]) == 0
    assert production(client, model) == "1"

    strict = {
        "gate": {"max_model_size_bytes": 1000, "min_test_macro_f1": 0.9999, "serving": {"max_p99_latency_ms": 0.001}}
    }
    config = tmp_path / "strict.yaml"
    config.write_text(yaml.safe_dump(strict))
    assert main(["run", "--model-name", model, "--config", str(config), *FAST]) == 3
    assert production(client, model) == "1"
    tags = client.get_model_version(model, "2").tags
    assert tags["gate_verdict"] == "failed"
    for check in ("model_size_bytes", "test_macro_f1", "serving_p99_latency_ms"):
        assert check in tags["gate_reason"]
        assert tags[f"gate.{check}"].endswith("FAIL")
    report = json.loads(
        open(client.download_artifacts(client.get_model_version(model, "2").run_id, "gate/gate_report.json")).read()
    )
    assert report["verdict"] == "failed"
    assert {c["name"] for c in report["checks"] if not c["passed"]} == {
        "model_size_bytes",
        "test_macro_f1",
        "serving_p99_latency_ms",
    }
    assert "**FAIL**" in client.get_model_version(model, "2").description

    assert main(["promote", "2", "--model-name", model, "--reason", "incident 42: v1 mislabels 7s"]) == 0
    assert production(client, model) == "2"
    assert client.get_model_version(model, "2").tags["forced_promotion"] == "incident 42: v1 mislabels 7s"
    assert main(["rollback", "--model-name", model, "--reason", "forced version misbehaves"]) == 0
    assert production(client, model) == "1"

    moves = alias_history(tracking_uri, model)
    assert [(m["kind"], m["to_version"]) for m in moves] == [("gate", "1"), ("forced", "2"), ("rollback", "1")]
    assert moves[1]["reason"] == "incident 42: v1 mislabels 7s" and moves[1]["actor"].startswith("user ")
    assert moves[0]["actor"].startswith("flow run ")
    assert_consistent(moves, "1")

    # Someone moves the alias by hand in the MLflow UI: history and rollback say so instead of guessing.
    # (Called directly, not through main() with capsys: Prefect's console handler would keep the captured
    # stream of this test and fail on it in the next ones.)
    client.set_registered_model_alias(model, "production", "2")
    warning = history_disagreement(alias_history(tracking_uri, model), find_version(tracking_uri, model))
    assert warning.startswith("production points to v2, but the last recorded move put it at v1")
    with pytest.raises(GreenlightError, match="moved outside Greenlight"):
        rollback(tracking_uri, model, "drill")
    assert main(["rollback", "--model-name", model]) == 1
    assert production(client, model) == "2" and len(alias_history(tracking_uri, model)) == 3


def test_forced_promotion_without_a_reason_is_refused(prefect_harness, tracking_uri):
    assert main(["promote", "1", "--model-name", "lifecycle-model", "--reason", " "]) == 1


def test_four_concurrent_runs_leave_one_production_version_and_a_consistent_history(
    prefect_harness, tracking_uri, tmp_path
):
    model = "concurrent-model"
    # Four pipelines and four candidate servers share 2 cores here: latency is not what this test is about. Four
    # seeds: identical runs would train production's own model, kept as a duplicate without moving the alias; a
    # tolerated drop of 10 points lets each different model through, so every run moves the alias under the lock.
    configs = [tmp_path / f"busy-machine-{seed}.yaml" for seed in range(1, 5)]
    for seed, config in enumerate(configs, start=1):
        gate = {
            "serving": {"max_p99_latency_ms": 5000},
            "change_thresholds": [{"metric": "test_accuracy", "min_absolute_change": -0.1}],
        }
        config.write_text(yaml.safe_dump({"gate": gate, "training": {"seed": seed}}))
    run = ["run", "--model-name", model, *FAST]
    with ThreadPoolExecutor(4) as pool:
        exit_codes = list(pool.map(lambda config: main([*run, "--config", str(config)]), configs))
    client = MlflowClient(tracking_uri=tracking_uri)
    assert sorted(v.version for v in client.search_model_versions(f"name = '{model}'")) == [1, 2, 3, 4]
    assert set(exit_codes) <= {0, 3} and 0 in exit_codes
    moves = alias_history(tracking_uri, model)
    # Without the lock, two runs both see "no production yet" and both promote as first runs.
    assert sum(1 for m in moves if m["from_version"] == "None") == 1
    assert len(moves) == exit_codes.count(0)
    assert_consistent(moves, production(client, model))
    policies = [client.get_model_version(model, m["to_version"]).tags["gate_policy"] for m in moves]
    assert policies[0].startswith("first run") and all(p.startswith("compared with production") for p in policies[1:])


def test_run_pauses_for_approval_and_a_rejection_is_recorded_like_a_failed_gate(
    prefect_harness, tracking_uri, tmp_path
):
    import threading

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect.flow_runs import resume_flow_run

    model = "approval-model"
    config = tmp_path / "approval.yaml"
    config.write_text(yaml.safe_dump({"gate": {"require_approval": True}}))
    result: dict[str, int] = {}
    runner = threading.Thread(
        target=lambda: result.setdefault("exit", main(["run", "--model-name", model, "--config", str(config), *FAST]))
    )
    runner.start()

    def paused_run():
        assert runner.is_alive(), "the run never paused for approval"  # it ended first
        with get_client(sync_client=True) as client:
            found = client.read_flow_runs(flow_run_filter=FlowRunFilter(state={"name": {"any_": ["Paused"]}}))
        return found[0] if found else None

    paused = wait_until(paused_run, timeout_s=300, every_s=1)
    assert paused is not None, "the run never paused for approval"
    resume_flow_run(paused.id, run_input={"approve": False, "reviewer": "ana", "comment": "not before the audit"})
    runner.join(timeout=300)

    assert result["exit"] == 3
    client = MlflowClient(tracking_uri=tracking_uri)
    tags = client.get_model_version(model, "1").tags
    assert (tags["gate_verdict"], tags["gate_reason"]) == ("failed", "rejected by ana: not before the audit")
    assert production(client, model) is None
    assert alias_history(tracking_uri, model) == []
