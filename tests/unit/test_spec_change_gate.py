"""The gate when production answers another spec, and when the candidate is production's own model: what can be
compared, what is refused without --accept-new-spec, and the duplicate outcome (no model, store or server)."""

from pathlib import Path

from deployments.cli import build_parser, load_run_config
from tasks.core.config import GateConfig
from tasks.core.spec import DatasetSpec, FeatureSpec, TargetSpec
from tasks.model.metrics import ModelMetrics
from tasks.onnx.compress import CompressionResult
from tasks.onnx.runtime import CandidateScore, ParityReport
from tasks.registry.client import ModelVersionRef
from tasks.release.gate import Baseline, GateEvidence, HeldOutScores, OtherSpec, decide_promotion
from tasks.release.promotion import same_model, spec_difference, spec_extras
from tasks.release.serving_check import ServingCheck


def wine(columns: tuple[str, ...] = ("alcohol", "hue"), labels: tuple[str, ...] = ("a", "b", "c")) -> DatasetSpec:
    features = [FeatureSpec(name=column, type="numeric") for column in columns]
    target = TargetSpec(name="cultivar", task="classification", labels=list(labels))
    return DatasetSpec(name="wine", target=target, features=features)


def metrics(accuracy: float) -> ModelMetrics:
    names = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_min_class_recall")
    return ModelMetrics("classification", dict.fromkeys(names, accuracy))


def evidence() -> GateEvidence:
    served = CandidateScore(name="fp32", path=Path("fp32.onnx"), size_bytes=9_000, metric=0.97, latency_ms_per_batch=1)
    compression = CompressionResult(candidates=(served,), chosen=served, reason="fp32 only")
    scores = HeldOutScores(metrics(0.97), metrics(0.97), Baseline("majority class 'a'", metrics(0.4)))
    serving = ServingCheck(True, 2.0, 1.0, 200, 0, 3.0, 9.0, "200 requests at concurrency 4")
    return GateEvidence(scores, compression, ParityReport(rows=36, max_abs_diff=1e-6, agreement=1.0), serving)


def version(number: str, checksum: str, data: str = "d1") -> ModelVersionRef:
    return ModelVersionRef("sqlite://", "wine", number, None, {"onnx_sha256": checksum, "data_sha256": data})


def test_production_reading_fewer_columns_and_knowing_more_labels_can_score_the_candidates_rows():
    production, candidate = wine(("hue",)), wine(labels=("a", "b"))
    assert spec_difference(production, candidate) is None
    assert spec_extras(production, candidate) == (
        " (specs differ: the candidate also reads 'alcohol'; production also knows 'c')"
    )


def test_a_label_production_never_learned_or_a_column_it_reads_gone_is_named():
    assert spec_difference(wine(labels=("a", "b")), wine()) == "label 'c' it never learned"
    gone = "column 'alcohol', which it reads, is gone from the data or ignored by the candidate's spec"
    assert spec_difference(wine(), wine(("hue",))) == gone
    other = DatasetSpec(
        name="wine", target=TargetSpec(name="hue", task="regression"), features=wine(("alcohol",)).features
    )
    assert "regression target 'hue'" in spec_difference(wine(), other)


def test_production_on_another_spec_refuses_without_the_flag_and_never_reads_as_a_first_run():
    production = OtherSpec("production v2", "label 'c' it never learned")
    refused = decide_promotion(evidence(), production, GateConfig())
    assert not refused.promote and refused.failed_checks() == ["compared_with_production"]
    assert "--accept-new-spec" in refused.reason and "label 'c' it never learned" in refused.reason
    assert refused.policy.startswith("new spec, not compared: production v2 answers another spec")
    assert "first run" not in refused.policy

    accepted = decide_promotion(evidence(), production, GateConfig(accept_new_spec=True))
    assert accepted.promote and accepted.policy.endswith("accepted with --accept-new-spec")
    assert accepted.reason == (
        "every check passed; not compared with production v2, which answers another spec (accepted)"
    )


def test_a_comparable_production_says_on_which_rows_it_was_compared():
    production = Baseline("production v1", metrics(0.6), compared_on="36 test rows both can score")
    decision = decide_promotion(evidence(), production, GateConfig())
    assert decision.promote and decision.policy == "compared with production v1 on 36 test rows both can score"
    assert "test_accuracy_vs_production_v1" in [c.name for c in decision.checks]


def test_production_s_own_model_is_a_duplicate_that_does_not_move_the_alias():
    assert same_model(version("4", "abc123"), version("5", "abc123")).startswith("served ONNX file identical")
    assert same_model(version("4", "abc123"), version("5", "fff999")) == ""
    production = Baseline("production v4", metrics(0.97), same_model="served ONNX file identical, sha256 abc123")
    decision = decide_promotion(evidence(), production, GateConfig())
    assert not decision.promote and (decision.verdict, decision.duplicate_of) == ("duplicate", "production v4")
    assert decision.reason.startswith("same model as production v4 (served ONNX file identical")


def test_accept_new_spec_reaches_the_gate_configuration_from_the_command_line():
    args = build_parser().parse_args(["run", "--data", "wine.csv", "--accept-new-spec"])
    assert load_run_config(args).gate.accept_new_spec
    assert not load_run_config(build_parser().parse_args(["run", "--data", "wine.csv"])).gate.accept_new_spec


def test_a_failing_check_outranks_an_identical_model():
    production = Baseline("production v1", metrics(0.97), same_model="served ONNX file identical, sha256 abc123")
    decision = decide_promotion(evidence(), production, GateConfig(min_test_accuracy=0.99))
    assert (decision.verdict, decision.reason, decision.duplicate_of) == ("failed", "failed test_accuracy", "")
