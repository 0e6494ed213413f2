"""Shadow evidence before promotion, as a user runs it: production v1 serves (`greenlight serve`, capture on), v2 is
shadowed with `greenlight shadow 2`; every request is answered by v1 while v2's answers and latency accumulate under
the capture folder; `greenlight show 2` prints them; a gate that required more shadowed requests than were captured
refuses `greenlight promote 2` (exit 3, alias unmoved) and promotes once enough arrived."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from endpoint_support import isolated_store, penguins_spec, register_onnx, table_onnx
from mlflow import MlflowClient
from registry_support import served as greenlight_served

from deployments.cli import main
from tasks.core.capture_store import CaptureStore
from tasks.core.config import GateConfig, ShadowGateConfig
from tasks.core.retry import wait_until
from tasks.model.metrics import ModelMetrics
from tasks.monitoring.shadow_evidence import ShadowEvidence, shadow_evidence
from tasks.registry.client import TrackingRun, get_version
from tasks.release.gate import Baseline, GateDecision, shadow_checks
from tasks.release.promotion import record_decision, with_shadow_hint

pytestmark = pytest.mark.slow  # starts a BentoML server
REQUESTS = 12
NEEDED = REQUESTS + 2  # the gate's gate.shadow.min_requests: more than the first batch of requests
RECORDS = [
    {"island": "Dream", "bill_length_mm": 40.0 + i, "flipper_length_mm": 190.0, "body_mass_g": 3800.0 + 50 * i}
    | {"sex": "male" if i % 2 else "female", "year": 2008}
    for i in range(4)
]


@dataclass(frozen=True)
class Served:
    url: str
    home: Path

    def evidence(self) -> ShadowEvidence:
        return shadow_evidence(CaptureStore.open(str(self.home / "capture")), "penguins", "2")

    def send(self, count: int) -> None:
        """count requests of 4 records; every answer is production v1's."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for _ in range(count):
                answer = client.post("/models/penguins/predict", json={"records": RECORDS})
                assert answer.status_code == 200, answer.text
                assert answer.headers["X-Model-Version"] == "1" and answer.json()["model_version"] == "1"

    def wait_for(self, requests: int) -> ShadowEvidence:
        found = wait_until(lambda: (e := self.evidence()).requests >= requests and e, timeout_s=20, every_s=0.2)
        assert found, f"{self.evidence()} after 20 s"
        return found


def record_gate_refusal(tmp: Path, config: GateConfig) -> None:
    """v2's gate decision as a training run records it when gate.shadow.min_requests > 0: every other check passed,
    the shadow checks were not run (no live traffic yet), so it is registered but not promoted."""
    version = get_version(os.environ["MLFLOW_TRACKING_URI"], "penguins", "2")
    checks = tuple(shadow_checks(None, config.shadow))
    candidate = ModelMetrics("classification", {"test_accuracy": 0.97})
    policy, baseline = "compared with production v1", Baseline("production v1", candidate)
    failed = GateDecision(False, "failed shadow_requests, shadow_agreement", policy, checks, candidate, baseline)
    run = MlflowClient(tracking_uri=version.tracking_uri).get_run(version.run_id)
    tracking = TrackingRun(version.tracking_uri, run.info.experiment_id, version.run_id)
    record_decision(tracking, version, with_shadow_hint(failed, version), tmp, config)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> Iterator[Served]:
    with isolated_store(tmp_path_factory.mktemp("shadow")) as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENLIGHT_HOME", str(tmp))
        patch.setenv("PREFECT_HOME", os.environ.get("PREFECT_HOME", str(tmp / "prefect")))  # main() exports it
        patch.setenv("GREENLIGHT_ALIAS_POLL_S", "0.5")
        patch.delenv("GREENLIGHT_CAPTURE_DIR", raising=False)
        for seed in (1, 2):  # two trainings of one spec: the same request contract, different answers
            register_onnx(tmp, table_onnx(penguins_spec(), seed), penguins_spec(), name="penguins")
        MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).set_registered_model_alias(
            "penguins", "production", "1"
        )
        record_gate_refusal(tmp, GateConfig(shadow=ShadowGateConfig(min_requests=NEEDED, min_agreement=0.0)))
        assert main(["shadow", "1", "--model-name", "penguins"]) == 1  # production itself: refused, nothing moved
        assert main(["shadow", "2", "--model-name", "penguins"]) == 0
        capture = {"GREENLIGHT_CAPTURE_RATE": "1", "GREENLIGHT_CAPTURE_FILE_AGE_S": "0.5"}
        with greenlight_served(None, tmp / "serve.log", **capture) as url:
            yield Served(url, tmp)


def production() -> str:
    return str(
        MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
        .get_registered_model("penguins")
        .aliases["production"]
    )


def test_a_shadowed_candidate_accumulates_evidence_and_the_gate_promotes_only_on_enough(served, capsys) -> None:
    served.send(REQUESTS)
    evidence = served.wait_for(REQUESTS)
    assert (evidence.requests, evidence.rows, evidence.production_versions) == (REQUESTS, 4 * REQUESTS, ("1",))
    assert evidence.candidate_ms.p50 > 0 and evidence.production_ms.p50 > 0
    metrics = httpx.get(f"{served.url}/metrics").text
    assert f'greenlight_shadow_samples_total{{outcome="written"}} {float(REQUESTS)}' in metrics
    capsys.readouterr()

    assert main(["show", "2", "--model-name", "penguins"]) == 0
    shown = capsys.readouterr().out
    assert f"{REQUESTS} shadowed requests ({4 * REQUESTS} rows) beside production v1" in shown
    assert f"agreement  {evidence.agreement:.2%}" in shown and "latency    candidate p50" in shown
    assert "greenlight shadow 2 --model-name penguins" in shown  # the recorded gate reason says what to do

    assert main(["promote", "2", "--model-name", "penguins"]) == 3
    refused = capsys.readouterr().err
    assert f"FAIL  shadow_requests: {REQUESTS} >= {NEEDED}" in refused and production() == "1"

    served.send(NEEDED - REQUESTS)
    served.wait_for(NEEDED)
    assert main(["promote", "2", "--model-name", "penguins"]) == 0
    moved = capsys.readouterr().out
    assert "production: v1 -> v2 (shadow)" in moved and f"shadow evidence: {NEEDED} requests" in moved
    assert production() == "2"
    aliases = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).get_registered_model("penguins").aliases
    assert "shadow" not in aliases  # the candidate is production now: nothing left to shadow
    report = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).get_model_version("penguins", "2").description
    assert "Shadow evidence, judged" in report and f"PASS  shadow_requests: {NEEDED} >= {NEEDED}" in report
