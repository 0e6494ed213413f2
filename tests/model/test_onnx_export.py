"""The exported digits model matches PyTorch, takes any batch size, and quantizes within budget."""

import numpy as np
import onnx

from tasks.core.config import CompressionConfig
from tasks.onnx.compress import compress_model
from tasks.onnx.export import check_parity, export_model
from tasks.onnx.runtime import run_model


def test_fp32_export_matches_pytorch_on_the_test_set(trained, digits_splits, tmp_path):
    path = export_model.fn(trained.checkpoint_path, tmp_path)
    parity = check_parity.fn(path, trained.checkpoint_path, digits_splits)
    assert parity.rows == len(digits_splits.test)
    assert parity.max_abs_diff <= 1e-4
    assert parity.agreement == 1.0


def test_export_is_one_file_with_a_dynamic_batch_axis(trained, digits_splits, tmp_path):
    path = export_model.fn(trained.checkpoint_path, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["pixels"] and [o.name for o in graph.output] == ["logits"]
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    pixels = digits_splits.feeds("test")["pixels"]
    for rows in (1, 7, 1000):
        assert run_model(path, {"pixels": np.resize(pixels, (rows, 64))}).shape == (rows, 10)


def test_int8_candidates_are_smaller_and_the_choice_respects_the_budget(trained, digits_splits, tmp_path):
    fp32 = export_model.fn(trained.checkpoint_path, tmp_path)
    result = compress_model.fn(fp32, digits_splits, CompressionConfig())
    by_name = {c.name: c for c in result.candidates}
    assert set(by_name) == {"fp32", "int8-static-qdq", "int8-dynamic"} and not result.skipped
    assert by_name["int8-static-qdq"].size_bytes < by_name["fp32"].size_bytes / 3
    assert result.chosen.metric >= by_name["fp32"].metric - 0.005
    assert result.chosen.latency_ms_per_batch <= by_name["fp32"].latency_ms_per_batch
    assert all(c.latency_ms_batch1 > 0 for c in result.candidates)
    # The candidates' plot is a real PNG beside them, and the table shows both latencies.
    assert result.plot is not None and result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "latency batch 1 (ms)" in result.table_markdown() and "latency batch 64 (ms)" in result.table_markdown()
