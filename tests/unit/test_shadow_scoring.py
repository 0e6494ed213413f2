"""Shadow scoring without a server or a registry: the candidate's answers written beside production's, drops counted
instead of failing a request, the evidence figures read back, the gate's shadow checks, and what `greenlight shadow`
refuses."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_gate import classification, decide
from test_request_contract import penguin_records, penguins

from bentos import shadow as shadowing
from bentos.capture import CaptureSettings
from bentos.shadow import Shadow, agreement, request_differences
from deployments.shadow import shadowable
from tasks.core.capture_store import CaptureStore
from tasks.core.config import GateConfig, ShadowGateConfig
from tasks.core.contract import compile_contract
from tasks.core.errors import GreenlightError
from tasks.core.spec import DatasetSpec, FeatureSpec, Spec, TargetSpec
from tasks.monitoring.shadow_evidence import shadow_evidence
from tasks.registry.client import ModelVersionRef, VersionRecord
from tasks.release.gate import Baseline, failed_only_shadow, shadow_checks

CONTRACT = compile_contract(penguins())
# Three rows answered Adelie, Chinstrap, Gentoo by production.
PRODUCTION_LOGITS = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32)


class Version:
    """What shadow scoring reads of a served version: name, version, contract, and its answer to feeds."""

    def __init__(self, version: str, logits: np.ndarray | None = None, fails: bool = False) -> None:
        self.name, self.version, self.contract = "penguins", version, CONTRACT
        self.logits, self.fails = logits, fails

    def predict(self, batch) -> np.ndarray:
        if self.fails:
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Unexpected input data type")
        return self.logits[: batch.size]


def feeds() -> dict[str, np.ndarray]:
    return CONTRACT.parse(json.dumps({"records": penguin_records(slice(0, 3))}).encode()).feeds


def shadow(tmp_path: Path, candidate: Version | None) -> Shadow:
    kept = Shadow(CaptureSettings(1.0, tmp_path / "capture"))
    if candidate is not None:
        kept.use("penguins", candidate)
    return kept


def rows_of(folder: Path) -> list[dict]:
    return [row for path in sorted(folder.rglob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_the_candidates_answers_are_written_beside_productions_with_agreement_and_both_times(tmp_path) -> None:
    # The candidate answers the third row Adelie where production answered Gentoo.
    candidate = Version("2", np.array([[3.0, 0, 0], [0, 3.0, 0], [3.0, 0, 0]], dtype=np.float32))
    kept = shadow(tmp_path, candidate)
    kept.offer(Version("1"), "r-1", feeds(), PRODUCTION_LOGITS, 0.002)
    kept.close()
    rows = rows_of(tmp_path / "capture" / "penguins" / "shadow" / "2")
    assert [(r["request_id"], r["row"], r["production_version"]) for r in rows] == [("r-1", i, "1") for i in range(3)]
    assert [r["production_prediction"] for r in rows] == ["Adelie", "Chinstrap", "Gentoo"]
    assert [r["candidate_prediction"] for r in rows] == ["Adelie", "Chinstrap", "Adelie"]
    assert [r["agree"] for r in rows] == [True, True, False]
    assert rows[0]["production_ms"] == pytest.approx(2.0) and rows[0]["candidate_ms"] >= 0
    assert kept.counts["written"] == 1
    assert not (tmp_path / "capture" / "penguins" / "1").exists()  # production's own answers are capture's job


def test_no_candidate_or_the_production_version_itself_costs_nothing(tmp_path) -> None:
    none, itself = shadow(tmp_path / "a", None), shadow(tmp_path / "b", Version("1", PRODUCTION_LOGITS))
    for kept in (none, itself):
        kept.offer(Version("1"), "r-1", feeds(), PRODUCTION_LOGITS, 0.001)
        assert not kept.pending
        kept.close()
    assert not list(tmp_path.rglob("*.parquet")) and none.thread is None


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(shadowing, "MAX_PENDING", 2)
    kept = shadow(tmp_path, Version("2", PRODUCTION_LOGITS))
    for request in range(5):
        kept.offer(Version("1"), f"r-{request}", feeds(), PRODUCTION_LOGITS, 0.001)
    assert kept.counts["queue_full"] == 3
    kept.close()
    assert kept.counts["written"] == 2 and len({r["request_id"] for r in rows_of(tmp_path)}) == 2


def test_a_candidate_that_cannot_score_or_load_is_counted_and_logged_once(tmp_path, caplog) -> None:
    kept = shadow(tmp_path, Version("2", fails=True))
    for request in range(3):
        kept.offer(Version("1"), f"r-{request}", feeds(), PRODUCTION_LOGITS, 0.001)
    kept.flush()
    assert kept.counts["score_error"] == 3 and kept.counts["written"] == 0
    assert sum("cannot answer" in record.message for record in caplog.records) == 1
    kept.use("penguins", None)
    kept.broken["penguins"] = "3"  # as Candidates.refuse leaves a version that failed its checksum
    kept.offer(Version("1"), "r-9", feeds(), PRODUCTION_LOGITS, 0.001)
    kept.close()
    assert kept.counts["load_error"] == 1 and not list(tmp_path.rglob("*.parquet"))


def test_regression_answers_agree_within_five_percent_of_the_answers_scale() -> None:
    production = np.array([100.0, 200.0, 1.0, 150.0])
    candidate = np.array([104.0, 215.0, 6.0, 150.0])
    # 4 <= 5; 15 > 10; the answer near zero is judged on the mean scale (113 -> 5.6): 5 agrees.
    assert agreement(production, candidate, "regression").tolist() == [True, False, True, True]
    assert agreement(np.array(["a", "b"]), np.array(["a", "a"]), "classification").tolist() == [True, False]


def test_evidence_counts_requests_rows_agreement_latency_and_period(tmp_path) -> None:
    kept = shadow(tmp_path, Version("2", np.array([[3.0, 0, 0], [0, 3.0, 0], [3.0, 0, 0]], dtype=np.float32)))
    for request, seconds in enumerate([0.001, 0.002, 0.003, 0.004]):
        kept.offer(Version("1"), f"r-{request}", feeds(), PRODUCTION_LOGITS, seconds)
    kept.close()
    evidence = shadow_evidence(CaptureStore.open(str(tmp_path / "capture")), "penguins", "2")
    assert (evidence.requests, evidence.rows) == (4, 12)
    assert evidence.agreement == pytest.approx(8 / 12)
    assert evidence.production_ms.p50 == pytest.approx(2.5) and evidence.production_ms.p99 == pytest.approx(3.97)
    assert evidence.production_versions == ("1",) and evidence.first <= evidence.last
    text = "\n".join(evidence.lines())
    assert "4 shadowed requests (12 rows) beside production v1" in text and "66.67%" in text
    replaced = shadow_evidence(CaptureStore.open(str(tmp_path / "capture")), "penguins", "2", beside="3")
    assert replaced.requests == 0 and "beside production v3" in replaced.where  # production moved: none counts
    nothing = shadow_evidence(CaptureStore.open(str(tmp_path / "capture")), "penguins", "7")
    assert nothing.requests == 0 and nothing.lines() == [
        f"none captured under {tmp_path / 'capture'}/penguins/shadow/7"
    ]


def test_shadow_checks_are_required_only_when_configured_and_not_run_without_evidence() -> None:
    assert shadow_checks(None, ShadowGateConfig()) == []
    required = ShadowGateConfig(min_requests=50, min_agreement=0.9)
    missing = shadow_checks(None, required)
    assert [(c.name, c.verdict) for c in missing] == [
        ("shadow_requests", "NOT RUN (required): FAIL"),
        ("shadow_agreement", "NOT RUN (required): FAIL"),
    ]
    assert "greenlight shadow" in missing[0].source
    figures = type("Figures", (), {"requests": 60, "agreement": 0.85, "where": "cap/penguins/shadow/2"})
    judged = shadow_checks(figures, required)
    assert [(c.name, c.passed) for c in judged] == [("shadow_requests", True), ("shadow_agreement", False)]
    assert judged[0].source == "gate.shadow.min_requests, shadowed requests under cap/penguins/shadow/2"


def test_a_training_run_requiring_shadow_evidence_is_refused_on_it_alone_and_a_first_version_is_not() -> None:
    config = GateConfig(shadow=ShadowGateConfig(min_requests=50))
    production = Baseline("production v1", classification(0.97))
    refused = decide(production=production, config=config)
    assert not refused.promote and refused.failed_checks() == ["shadow_requests", "shadow_agreement"]
    assert failed_only_shadow(refused.failed_checks()) and not failed_only_shadow(["parity_agreement"])
    assert decide(config=config).promote  # no production: nothing to shadow beside


def test_request_contracts_differ_in_inputs_types_or_answers() -> None:
    spec = penguins()
    assert request_differences(spec, spec) == []
    fewer = spec.model_copy(update={"features": [f for f in spec.features if f.name != "year"]})
    assert "model inputs" in request_differences(spec, fewer)[0]
    other_labels = spec.model_copy(
        update={"target": TargetSpec(name="species", task="classification", labels=["a", "b"])}
    )
    assert request_differences(spec, other_labels)[0].startswith("answers classification")


def registry(monkeypatch, *, run_status="FINISHED", tags=None, candidate_spec=None, production="1") -> None:
    """The registry shadowable reads, as functions: production v1 and candidate v2 on the penguins spec."""
    from tasks.registry import client

    def ref(version: str, extra: dict) -> ModelVersionRef:
        return ModelVersionRef("sqlite:///x", "penguins", version, "run", {"onnx_sha256": "ab", **extra})

    def describe(uri, name, version):
        if version not in ("1", "2"):
            raise GreenlightError(f"'{name}' has no version {version} in {uri}")
        return VersionRecord(ref(version, tags or {}), "", 0, (), run_status)

    specs = {"1": Spec(dataset=penguins()), "2": candidate_spec or Spec(dataset=penguins())}
    monkeypatch.setattr(client, "find_version", lambda *a: ref(production, {}) if production else None)
    monkeypatch.setattr(client, "describe_version", describe)
    monkeypatch.setattr(client, "read_version_spec", lambda found: specs[found.version])


@pytest.mark.parametrize(
    ("version", "setup", "message"),
    [
        ("1", {}, "v1 is the production version of 'penguins'"),
        ("9", {}, "'penguins' has no version 9"),
        ("2", {"production": None}, "'penguins' has no production version"),
        ("2", {"tags": {"onnx_sha256": ""}}, "is not ready: it records no ONNX file"),
        ("2", {"run_status": "FAILED"}, "is not ready: its run is FAILED"),
        (
            "2",
            {
                "candidate_spec": Spec(
                    dataset=DatasetSpec(
                        target=TargetSpec(name="species", task="regression"),
                        features=[FeatureSpec(name="island", type="numeric")],
                    )
                )
            },
            "answers another request contract than production v1",
        ),
    ],
)
def test_shadow_refuses_what_cannot_be_shadowed(monkeypatch, version, setup, message) -> None:
    registry(monkeypatch, **setup)
    with pytest.raises(GreenlightError, match=message):
        shadowable("sqlite:///x", "penguins", version)


def test_shadow_accepts_a_ready_candidate_of_the_same_contract(monkeypatch) -> None:
    registry(monkeypatch)
    candidate, production = shadowable("sqlite:///x", "penguins", "2")
    assert (candidate.version, production.version) == ("2", "1")


def test_candidates_follow_the_shadow_alias_and_a_refused_one_is_counted_not_served(tmp_path, monkeypatch) -> None:
    from bentos import follow
    from bentos.shadow import Candidates
    from tasks.onnx.verified import ModelRefused
    from tasks.registry import client

    alias: dict[str, str] = {"penguins": "2"}

    def fetch(target, directory, verify_key, threads):
        if target.version == "3":
            raise ModelRefused("penguins version 3 fails its checksum", "checksum_mismatch")
        return Version(target.version, PRODUCTION_LOGITS)

    monkeypatch.setattr(client, "get_version", lambda uri, name, version: ModelVersionRef(uri, name, version, None, {}))
    monkeypatch.setattr(follow, "fetch_verified", fetch)
    kept = shadow(tmp_path, None)
    candidates = Candidates(kept, "sqlite:///x", None, 1, only="penguins")
    monkeypatch.setattr(candidates, "listing", lambda: dict(alias))
    candidates.poll()
    assert kept.candidates["penguins"].version == "2"
    alias["penguins"] = "3"  # moved to a version that fails its checksum: production keeps answering, alone
    candidates.poll()
    kept.offer(Version("1"), "r-1", feeds(), PRODUCTION_LOGITS, 0.001)
    assert "penguins" not in kept.candidates and kept.counts["load_error"] == 1
    alias.clear()  # `greenlight shadow --stop`
    candidates.poll()
    kept.offer(Version("1"), "r-2", feeds(), PRODUCTION_LOGITS, 0.001)
    assert kept.counts["load_error"] == 1 and not kept.pending
