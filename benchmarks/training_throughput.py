"""Training throughput of the fit loop (tasks.model.loop) per family: samples/s on this machine's device and,
on a GPU, model FLOPs utilisation (MFU: the FLOPs of a training step, counted by torch's FlopCounterMode,
times steps/s, over the chip's dense bf16 peak).

Each workload is real data tiled to enough rows that an epoch has many steps (throughput does not depend on
what the rows say): the bundled digits as a 64-column table (tabular_mlp) and as 8x8 images (image_cnn), and
generated reviews (tests/corpora.py) for text_transformer at its default size (128 wide, 2 layers) and at a
GPU-sized one (512 wide, 6 layers, 8 heads). One timed epoch after a warm-up epoch, through the loop the
pipeline trains with (prepare_engine + run_epoch): on a GPU bf16 autocast, TF32, and the batch and compile
settings of each row; on CPU the configured batch in fp32. `--ddp` adds a run of tasks.model.distributed under
torchrun (gloo on CPU, NCCL on a GPU) to check that path end to end on this machine.

Imports no Prefect, MLflow or BentoML, so it runs on a GPU machine that has torch (and pydantic) alone:

    PYTHONPATH=. .venv/bin/python benchmarks/training_throughput.py [--rows 60000] [--ddp]
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from torch.utils.flop_counter import FlopCounterMode

from tasks.core.config import TrainingConfig
from tasks.core.spec import Spec, digits_frame, digits_spec
from tasks.data.infer import TRAINED_VOCABULARY, infer_spec
from tasks.data.parts import DataSplits
from tasks.model.loop import (
    Engine,
    part_tensors,
    pick_device,
    prepare_engine,
    run_epoch,
    seed_everything,
    task_loss,
)
from tasks.model.network import GreenlightModel
from tasks.model.preprocess import fit_preprocessing
from tests.corpora import product_reviews

# Dense bf16 peak per chip, TFLOP/s (vendor figures without sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0}


@dataclass(frozen=True)
class Workload:
    name: str
    spec: Spec
    splits: DataSplits


@dataclass(frozen=True)
class Throughput:
    workload: str
    setting: str
    batch: int
    samples_per_s: float
    step_tflop: float  # FLOPs of one training step (forward + backward), in TFLOP
    mfu: float | None


def tiled_splits(spec: Spec, frame: pd.DataFrame, rows: int) -> DataSplits:
    """A seeded split, its training part repeated up to `rows` rows."""
    target = spec.dataset.target.name
    train, rest = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame[target])
    validation, test = train_test_split(rest, test_size=0.5, random_state=0, stratify=rest[target])
    tiled = pd.concat([train] * max(1, rows // len(train)), ignore_index=True)
    return DataSplits(spec.dataset, tiled, validation, test)


def with_family(spec: Spec, family: str, options: dict | None = None) -> Spec:
    """The inferred spec with another family; a text feature's own BPE vocabulary learned from the training
    rows (the pretrained encoder's tokenizer may not be installed where this runs)."""
    raw = spec.model_dump()
    for feature in raw["dataset"]["features"]:
        if feature["type"] == "text":
            feature.update(tokenizer="bpe", vocab_size=TRAINED_VOCABULARY)
    raw["model"] = {"family": family, "options": options or {}}
    return Spec.model_validate(raw)


def workloads(rows: int) -> list[Workload]:
    digits = digits_frame()
    target = digits_spec().dataset.target.name
    renamed = digits.rename(columns=lambda c: f"c{c}" if c != target else c)
    table = with_family(infer_spec(renamed, target)[0], "tabular_mlp")
    reviews = product_reviews(1500, seed=0)
    text, _ = infer_spec(reviews, "sentiment")
    small = with_family(text, "text_transformer")
    large = with_family(text, "text_transformer", {"width": 512, "layers": 6, "heads": 8})
    return [
        Workload("tabular_mlp (digits as a table)", table, tiled_splits(table, renamed, rows)),
        Workload("image_cnn (digits 8x8)", digits_spec(), tiled_splits(digits_spec(), digits, rows)),
        Workload("text_transformer 128w x2", small, tiled_splits(small, reviews, rows // 2)),
        Workload("text_transformer 512w x6", large, tiled_splits(large, reviews, rows // 2)),
    ]


def step_flops(model: GreenlightModel, engine: Engine, batch: tuple) -> float:
    inputs, targets = batch
    with FlopCounterMode(display=False) as counter, engine.autocast():
        torch.nn.functional.cross_entropy(model.network_output(*inputs).float(), targets).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def measure(work: Workload, config: TrainingConfig, device: torch.device, setting: str) -> Throughput:
    seed_everything(0)
    targets = work.splits.targets("train")
    model = GreenlightModel(work.spec, fit_preprocessing(work.splits.spec, work.splits.feeds("train"), targets))
    model = model.to(device)
    train = part_tensors(model, work.splits, "train", targets, device)
    engine, learning_rate = prepare_engine(model, config, len(train.targets), None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    flops = step_flops(model, engine, train.batch(torch.arange(engine.batch_size, device=train.targets.device)))
    run_epoch(model, train, optimizer, engine, 0, 0, task_loss)  # warm-up (and the compile)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    run_epoch(model, train, optimizer, engine, 1, 0, task_loss)
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_s = len(train.targets) / (time.perf_counter() - started)
    peak = next((tf for name, tf in PEAK_BF16_TFLOPS.items() if name in device_name(device)), None)
    mfu = flops * per_s / engine.batch_size / (peak * 1e12) if peak and device.type == "cuda" else None
    return Throughput(work.name, setting, engine.batch_size, per_s, flops / 1e12, mfu)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def settings(device: torch.device) -> list[tuple[str, TrainingConfig]]:
    if device.type != "cuda":
        return [("fp32, batch 64", TrainingConfig())]
    return [
        ("bf16 eager, batch 64 (CPU recipe)", TrainingConfig(gpu_batch_multiplier=1, compile="off")),
        ("bf16 eager, batch 256", TrainingConfig(gpu_batch_multiplier=4, compile="off")),
        ("bf16 compiled, batch 256", TrainingConfig(gpu_batch_multiplier=4, compile="on")),
        ("bf16 eager, batch 1024", TrainingConfig(gpu_batch_multiplier=16, compile="off")),
    ]


def ddp_check(work: Workload, device: torch.device, processes: int, out: Path) -> str:
    """tasks.model.distributed end to end: torchrun, the backend of this device, one checkpoint."""
    from tasks.model.distributed import train_distributed

    config = TrainingConfig(max_epochs=3, distributed={"nproc_per_node": processes})
    started = time.perf_counter()
    done = train_distributed(work.splits, work.spec, config, out)
    seconds = time.perf_counter() - started
    backend = "NCCL" if device.type == "cuda" else "gloo"
    epochs = len(done.fit.history)
    return (
        f"DDP ({backend}, {processes} process(es)): {epochs} epochs of {work.name} in {seconds:.1f} s "
        f"(torchrun start included), val metric {done.fit.history[-1].val_metric:.3f}, checkpoint "
        f"{done.checkpoint_path.stat().st_size / 1e6:.2f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000, help="training rows per workload (tiled)")
    parser.add_argument("--ddp", action="store_true", help="also train through torchrun (tasks.model.distributed)")
    parser.add_argument("--only", help="run only the workloads whose name contains this")
    parser.add_argument("--out", default="/tmp/greenlight-throughput", help="folder for the DDP check's files")
    args = parser.parse_args()
    device = pick_device()
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.rows} training rows per workload\n")
    print(f"{'workload':<34}{'setting':<36}{'batch':>6}{'samples/s':>12}{'GFLOP/step':>12}{'MFU':>8}")
    chosen = [w for w in workloads(args.rows) if not args.only or args.only in w.name]
    for work in chosen:
        for setting, config in settings(device):
            try:
                r = measure(work, config, device, setting)
            except Exception as error:  # a benchmark row that fails says why and the others still run
                print(f"{work.name:<34}{setting:<36} failed: {type(error).__name__}: {str(error)[:200]}")
                continue
            mfu = f"{r.mfu:.1%}" if r.mfu is not None else "-"
            line = f"{r.workload:<34}{r.setting:<36}{r.batch:>6}{r.samples_per_s:>12,.0f}{r.step_tflop * 1000:>12.2f}"
            print(f"{line}{mfu:>8}", flush=True)
    if args.ddp:
        processes = torch.cuda.device_count() if device.type == "cuda" else 2
        print("\n" + ddp_check(chosen[0], device, processes, Path(args.out)))


if __name__ == "__main__":
    sys.exit(main())
