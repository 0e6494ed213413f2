"""ONNX export stage: one .onnx file, checked against PyTorch with ONNX Runtime."""

from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.onnx_model import ParityReport, compare_logits, export_onnx, onnx_logits
from tasks.training import load_checkpoint, predict_logits


@task(name="export_model", cache_policy=NO_CACHE)
def export_model(checkpoint_path: Path, out_dir: Path) -> Path:
    """Export the best checkpoint to out_dir/model.onnx with a dynamic batch axis."""
    return export_onnx(load_checkpoint(checkpoint_path), out_dir / "model.onnx")


@task(name="check_parity", cache_policy=NO_CACHE)
def check_parity(onnx_path: Path, checkpoint_path: Path, pixels: np.ndarray) -> ParityReport:
    """Compare ONNX Runtime's logits with PyTorch's on the given rows (the test set)."""
    reference = predict_logits(load_checkpoint(checkpoint_path), pixels)
    return compare_logits(reference, onnx_logits(onnx_path, pixels))
