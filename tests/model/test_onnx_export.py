"""The exported ONNX model matches PyTorch, takes any batch size, and quantizes within budget."""

import numpy as np
import onnx

from tasks.core.config import CompressionConfig
from tasks.core.schema import ONNX_INPUT_NAME
from tasks.onnx.compress import compress_model
from tasks.onnx.export import check_parity, export_model
from tasks.onnx.runtime import onnx_logits


def test_fp32_export_matches_pytorch_on_the_test_set(trained, digits_splits, tmp_path):
    path = export_model.fn(trained.checkpoint_path, tmp_path)
    parity = check_parity.fn(path, trained.checkpoint_path, digits_splits.x_test)
    assert parity.rows == len(digits_splits.y_test)
    assert parity.max_abs_logit_diff <= 1e-4
    assert parity.argmax_agreement == 1.0


def test_export_is_one_file_with_a_dynamic_batch_axis(trained, digits_splits, tmp_path):
    path = export_model.fn(trained.checkpoint_path, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    batch_dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    assert onnx.load(str(path)).graph.input[0].name == ONNX_INPUT_NAME
    for rows in (1, 7, 1000):
        assert onnx_logits(path, np.resize(digits_splits.x_test, (rows, 64))).shape == (rows, 10)


def test_int8_candidates_are_smaller_and_the_choice_respects_the_budget(trained, digits_splits, tmp_path):
    fp32 = export_model.fn(trained.checkpoint_path, tmp_path)
    result = compress_model.fn(fp32, digits_splits, CompressionConfig())
    by_name = {c.name: c for c in result.candidates}
    assert set(by_name) == {"fp32", "int8-static-qdq", "int8-dynamic"}
    assert by_name["int8-static-qdq"].size_bytes < by_name["fp32"].size_bytes / 3
    assert result.chosen.accuracy >= by_name["fp32"].accuracy - 0.005
    assert result.chosen.latency_ms_per_batch <= by_name["fp32"].latency_ms_per_batch
