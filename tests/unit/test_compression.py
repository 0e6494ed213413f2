"""select_serving_candidate: smallest model within the accuracy and latency budgets of fp32."""

from pathlib import Path

from tasks.core.config import CompressionConfig
from tasks.onnx.compress import select_serving_candidate
from tasks.onnx.runtime import CandidateScore


def candidate(name: str, size: int, accuracy: float, latency: float) -> CandidateScore:
    return CandidateScore(name, Path(f"{name}.onnx"), size, accuracy, latency)


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


def test_candidate_slower_than_fp32_is_skipped_even_if_smaller():
    slow = candidate("int8-dynamic", 150_000, 0.985, 15.0)
    static = candidate("int8-static-qdq", 160_000, 0.985, 0.6)
    chosen, _ = select_serving_candidate([FP32, static, slow], CompressionConfig())
    assert chosen is static


def test_latency_budget_is_configurable():
    slow = candidate("int8-dynamic", 150_000, 0.985, 15.0)
    chosen, _ = select_serving_candidate([FP32, slow], CompressionConfig(max_latency_ratio=20.0))
    assert chosen is slow
