"""ONNX export stage: one .onnx file, checked against PyTorch with ONNX Runtime."""

import threading
from pathlib import Path

import numpy as np
import onnx
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.schema import N_FEATURES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from tasks.model.training import load_checkpoint, predict_logits
from tasks.onnx.runtime import ParityReport, compare_logits, onnx_logits

# torch.onnx.export keeps exporter state in module globals: two flows exporting at once in one
# process (threads of a worker, concurrent test runs) fail with "GLOBALS.in_onnx_export must be False".
_EXPORT_LOCK = threading.Lock()
# Opset 17 is read by every ONNX Runtime release of the last three years and has all ops the CNN needs.
OPSET = 17


def export_onnx(model: torch.nn.Module, path: Path) -> Path:
    """Export to a single .onnx file (weights inline) with a dynamic batch axis."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, N_FEATURES, dtype=torch.float32)
    # The TorchScript exporter: the dynamo one needs onnxscript and gains nothing for a static CNN.
    with _EXPORT_LOCK:
        torch.onnx.export(
            model.to("cpu").eval(),
            (example,),
            str(path),
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(path), full_check=True)
    return path


@task(name="export_model", cache_policy=NO_CACHE)
def export_model(checkpoint_path: Path, out_dir: Path) -> Path:
    """Export the best checkpoint to out_dir/model.onnx with a dynamic batch axis."""
    return export_onnx(load_checkpoint(checkpoint_path), out_dir / "model.onnx")


@task(name="check_parity", cache_policy=NO_CACHE)
def check_parity(onnx_path: Path, checkpoint_path: Path, pixels: np.ndarray) -> ParityReport:
    """Compare ONNX Runtime's logits with PyTorch's on the given rows (the test set)."""
    reference = predict_logits(load_checkpoint(checkpoint_path), pixels)
    return compare_logits(reference, onnx_logits(onnx_path, pixels))
