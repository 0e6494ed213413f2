"""Compression: pruning and distillation only where the fp32 file misses a goal (or the family or the configuration
asks), with the reason in the reports; the smallest candidate within the metric and latency budgets of fp32; and a
quantizer that fails leaves its candidate skipped with the reason instead of failing the run."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tasks.core.config import CompressionConfig, GateConfig
from tasks.model.families import FAMILIES, Family
from tasks.model.metrics import ModelMetrics
from tasks.onnx import compress, goals
from tasks.onnx.compress import quantize_candidates, select_serving_candidate
from tasks.onnx.runtime import CandidateScore, ParityReport
from tasks.release.gate import Baseline, GateEvidence, HeldOutScores, decide_promotion


def candidate(name: str, size: int, metric: float, latency: float, batch1: float = 0.0) -> CandidateScore:
    return CandidateScore(name, Path(f"{name}.onnx"), size, metric, latency, batch1)


FP32 = candidate("fp32", 600_000, 0.985, 1.5)


def test_smallest_candidate_within_budgets_is_chosen():
    static = candidate("int8-static-qdq", 160_000, 0.983, 0.6)
    chosen, reason = select_serving_candidate([FP32, static], CompressionConfig(accuracy_budget_points=0.5))
    assert chosen is static
    assert "int8-static-qdq" in reason


def test_candidate_losing_more_than_the_budget_is_skipped():
    lossy = candidate("int8-static-qdq", 160_000, 0.975, 0.6)
    chosen, _ = select_serving_candidate([FP32, lossy], CompressionConfig(accuracy_budget_points=0.5))
    assert chosen is FP32


def test_the_budget_is_in_points_of_r2_for_regression():
    fp32 = candidate("fp32", 600_000, 0.452, 1.5)
    within = candidate("int8-dynamic", 160_000, 0.449, 1.0)  # 0.3 points of R^2 lost
    chosen, reason = select_serving_candidate([fp32, within], CompressionConfig(accuracy_budget_points=0.5))
    assert chosen is within and ">= 0.4470" in reason


def test_candidate_slower_than_fp32_is_skipped_even_if_smaller():
    slow = candidate("int8-dynamic", 150_000, 0.985, 15.0)
    static = candidate("int8-static-qdq", 160_000, 0.985, 0.6)
    chosen, _ = select_serving_candidate([FP32, static, slow], CompressionConfig())
    assert chosen is static


def test_the_latency_objective_serves_the_fastest_single_request_within_the_budgets():
    fp32 = candidate("fp32", 600_000, 0.985, 1.5, batch1=0.20)
    static = candidate("int8-static-qdq", 160_000, 0.984, 0.6, batch1=0.30)  # smallest, slower alone
    dynamic = candidate("int8-dynamic", 170_000, 0.985, 1.0, batch1=0.12)
    lossy = candidate("pruned", 100_000, 0.960, 0.5, batch1=0.05)  # fastest, but over the budget
    assert select_serving_candidate([fp32, static, dynamic, lossy], CompressionConfig())[0] is static
    chosen, reason = select_serving_candidate([fp32, static, dynamic, lossy], CompressionConfig(objective="latency"))
    assert chosen is dynamic and "fastest at batch 1" in reason


def test_latency_budget_is_configurable():
    slow = candidate("int8-dynamic", 150_000, 0.985, 15.0)
    chosen, _ = select_serving_candidate([FP32, slow], CompressionConfig(max_latency_ratio=20.0))
    assert chosen is slow


def test_another_model_is_served_only_with_evidence_that_it_answers_as_fp32_does():
    # A distilled model that answered all 60 validation rows as fp32 did is still a gamble on 80 test rows (one
    # lost 3 of them); on 700 identical answers the 95% bound is within 0.5 points, on 200 within 2 points.
    fp32 = replace(FP32, rows=60, changed_rows=0)
    student = replace(candidate("distilled", 10_000, 0.985, 0.3), rows=60, changed_rows=0, source="distilled")
    int8 = replace(candidate("int8-static-qdq", 160_000, 0.985, 0.6), rows=60, changed_rows=1)
    chosen, reason = select_serving_candidate([fp32, int8, student], CompressionConfig())
    assert chosen is int8 and "not served: ['distilled']" in reason
    many = [replace(c, rows=700) for c in (fp32, int8, student)]
    assert select_serving_candidate(many, CompressionConfig())[0].name == "distilled"
    two_points = CompressionConfig(accuracy_budget_points=2)
    assert select_serving_candidate([replace(c, rows=200) for c in (fp32, student)], two_points)[0].name == "distilled"
    assert select_serving_candidate([fp32, replace(student, rows=200, changed_rows=5)], two_points)[0] is fp32
    # Regression has no answers to compare: another model must not lose any R^2 on the validation rows.
    regression = replace(student, changed_rows=None, metric=0.984)
    assert select_serving_candidate([fp32, regression], CompressionConfig())[0] is fp32


def test_the_pareto_front_keeps_only_candidates_nothing_beats_on_both_speed_and_metric():
    fast_weak = candidate("distilled", 10_000, 0.95, 0.2, batch1=0.05)
    slow_best = candidate("fp32", 600_000, 0.99, 1.5, batch1=0.30)
    dominated = candidate("pruned-30", 300_000, 0.94, 1.0, batch1=0.20)  # slower and worse than distilled
    middle = candidate("int8-static-qdq", 160_000, 0.98, 0.6, batch1=0.10)
    front = compress.pareto_front((slow_best, dominated, middle, fast_weak))
    assert [c.name for c in front] == ["distilled", "int8-static-qdq", "fp32"]


def linear_model(path: Path) -> Path:
    """numeric [n, 4] @ W [4, 3] -> logits: the smallest graph both quantizers accept."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.linspace(-1, 1, 12).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["numeric", "w"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [weights],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


CALIBRATION = {"numeric": np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)}


def test_a_failing_quantizer_is_recorded_as_skipped_with_its_reason(tmp_path, monkeypatch):
    def refuses(prepared, calibration, out_dir):
        raise RuntimeError("LabelEncoder is not supported")

    monkeypatch.setitem(compress.QUANTIZERS, "int8-static-qdq", refuses)
    paths, skipped = quantize_candidates(linear_model(tmp_path / "model.onnx"), CALIBRATION)
    assert list(paths) == ["int8-dynamic"] and paths["int8-dynamic"].exists()
    assert [(s.name, s.reason) for s in skipped] == [("int8-static-qdq", "RuntimeError: LabelEncoder is not supported")]


def test_a_graph_the_pre_processor_cannot_read_skips_every_int8_candidate(tmp_path):
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx file")
    paths, skipped = quantize_candidates(broken, CALIBRATION)
    assert paths == {} and {s.name for s in skipped} == {"int8-static-qdq", "int8-dynamic"}
    assert all("pre-processing for quantization failed" in s.reason for s in skipped)


# Compression only where it pays: the fp32 file is measured first, and pruning and distillation run only where it
# misses a goal, the family always compresses, or the configuration asks.


def measured_fp32(size: int, batch1_ms: float) -> CandidateScore:
    return candidate("fp32", size, 0.98, 1.0, batch1=batch1_ms)


def plan_for(fp32: CandidateScore, family: str = "tabular_mlp", **compression) -> goals.CompressionPlan:
    return goals.decide_compression(fp32, family, CompressionConfig.model_validate(compression), GateConfig())


def decisions(plan: goals.CompressionPlan) -> dict[str, bool]:
    return {s.step: s.runs for s in plan.steps}


def test_a_small_fast_table_network_skips_pruning_and_distillation_and_says_why():
    plan = plan_for(measured_fp32(48_600, 0.06))
    assert decisions(plan) == {"pruning": False, "distillation": False, "INT8": True}
    assert plan.lines()[0] == (
        "pruning: skipped — the fp32 file (48.6 kB, 0.06 ms at batch 1) meets the goals (10 MB, 5 ms)"
    )
    assert plan.lines()[1].startswith("distillation: skipped — the fp32 file (48.6 kB")


def test_a_file_over_the_size_goal_is_pruned_and_distilled():
    plan = plan_for(measured_fp32(12_000_000, 0.4))  # over the tabular family's 10 MB bar
    assert decisions(plan) == {"pruning": True, "distillation": True, "INT8": True}
    assert plan.lines()[0] == "pruning: ran — the fp32 file (12 MB, 0.4 ms at batch 1) misses the size goal (10 MB)"
    # The goal a deployment sets wins over the gate's bar, which wins over the family's.
    assert not plan_for(measured_fp32(12_000_000, 0.4), goals={"max_bytes": 20_000_000}).runs("pruning")
    tight = goals.decide_compression(
        measured_fp32(48_600, 0.06), "tabular_mlp", CompressionConfig(), GateConfig(max_model_size_bytes=40_000)
    )
    assert tight.runs("pruning") and "misses the size goal (40 kB)" in tight.lines()[0]
    assert "(gate.max_model_size_bytes)" in tight.markdown()


def test_a_file_slower_than_the_latency_goal_is_pruned():
    plan = plan_for(measured_fp32(48_600, 7.5), goals={"max_latency_ms": 2})
    assert plan.runs("pruning") and plan.lines()[0].endswith("misses the latency goal (2 ms at batch 1)")


def test_the_cnn_and_the_pretrained_encoder_always_compress_as_before():
    for family in ("image_cnn", "image_grid_cnn", "pretrained_encoder"):
        plan = plan_for(measured_fp32(200_000, 0.2), family)
        assert decisions(plan) == {"pruning": True, "distillation": True, "INT8": True}, family
        assert f"the {family} family always compresses" in plan.lines()[0]


def test_the_configuration_can_ask_for_or_refuse_each_step():
    small = measured_fp32(48_600, 0.06)
    asked = plan_for(small, pruning={"when": "always"}, distillation={"when": "always"})
    assert asked.lines()[:2] == [
        "pruning: ran — compression.pruning.when is always",
        "distillation: ran — compression.distillation.when is always",
    ]
    refused = plan_for(measured_fp32(200_000, 0.2), "image_cnn", pruning={"when": "never"})
    assert decisions(refused) == {"pruning": False, "distillation": True, "INT8": True}
    # The older switches still read: no pruning levels, or distillation disabled.
    older = plan_for(small, "image_cnn", pruning={"levels": []}, distillation={"enabled": False})
    assert older.lines()[:2] == [
        "pruning: skipped — compression.pruning.levels is empty",
        "distillation: skipped — compression.distillation.enabled is false",
    ]


def test_a_family_with_nothing_to_compress_skips_int8_too_whatever_the_configuration_asks(monkeypatch):
    trees = Family("trees", build=lambda spec, inputs: None, max_epochs=1, patience=1, summary="", compression="never")
    monkeypatch.setitem(FAMILIES, "trees", trees)
    plan = plan_for(measured_fp32(12_000_000, 9.0), "trees", pruning={"when": "always"})
    assert decisions(plan) == {"pruning": False, "distillation": False, "INT8": False}
    assert all(
        "the trees family has nothing to prune or distil, and INT8 does not apply" in line for line in plan.lines()
    )


def test_without_int8_the_fp32_file_is_the_only_candidate(tmp_path):
    files, skipped = compress.candidate_files(linear_model(tmp_path / "model.onnx"), (), CALIBRATION, quantize=False)
    assert [name for name, _, _ in files] == ["fp32"] and skipped == []
    assert not list(tmp_path.glob("*int8*"))


def test_the_compression_report_and_the_gate_report_say_why_each_step_ran_or_not():
    plan = plan_for(measured_fp32(48_600, 0.06))
    result = compress.CompressionResult((plan.fp32,), plan.fp32, "chose fp32: smallest of ['fp32']", plan=plan)
    table = result.table_markdown()
    assert "Goals: at most 10 MB (the tabular_mlp family's size bar)" in table
    assert "- pruning: skipped — the fp32 file (48.6 kB, 0.06 ms at batch 1) meets the goals (10 MB, 5 ms)" in table
    assert result.step_tags()["compression.distillation"].startswith("skipped — the fp32 file")
    assert result.step_tags()["compression.int8"].startswith("ran — ")
    metrics = ModelMetrics("classification", {m: 0.98 for m in ("test_accuracy", "test_balanced_accuracy")})
    trivial = Baseline("majority class 'a'", replace(metrics, values={m: 0.4 for m in metrics.values}))
    scores = HeldOutScores(metrics, metrics, trivial)
    evidence = GateEvidence(scores, result, ParityReport(rows=60, max_abs_diff=1e-6, agreement=1.0), serving=None)
    report = decide_promotion(evidence, None, GateConfig()).report_markdown()
    assert "Compression steps:\n- pruning: skipped — the fp32 file (48.6 kB" in report
    assert "\n- INT8: ran — " in report
