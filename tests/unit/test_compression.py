"""Compression: the smallest candidate within the metric and latency budgets of fp32, and a quantizer that
fails leaves its candidate skipped with the reason instead of failing the run."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tasks.core.config import CompressionConfig
from tasks.onnx import compress
from tasks.onnx.compress import quantize_candidates, select_serving_candidate
from tasks.onnx.runtime import CandidateScore


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
