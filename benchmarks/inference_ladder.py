"""The inference ladder: one model per family at each step from torch eager to a distilled INT8 student.

For each family the pipeline's own stages make every rung: train (tasks.model.training), export to ONNX
(tasks.onnx.export), INT8 from ONNX Runtime (tasks.onnx.compress.quantize_candidates: static QDQ and dynamic,
the one with the better test metric shown; text encoders get dynamic only), structured pruning with a short
fine-tune at each of CompressionConfig().pruning.levels (tasks.model.pruning), and a distilled student
(tasks.model.distillation). The rungs: torch eager fp32 -> ONNX Runtime fp32 -> INT8 -> pruned fp32 and INT8
per level -> distilled fp32 -> distilled INT8. Families: tabular_mlp on scikit-learn's breast_cancer table,
image_cnn on the bundled 8x8 digits, and the pretrained_encoder (all-MiniLM-L6-v2, fine-tuned) that inference
proposes for the generated reviews of tests/corpora.py. Everything is offline and seeded.

Each rung, at batch 1 and 64 rows x 1 and 2 threads: the median latency of one call after a warm-up (the same
rows every repeat, at most --repeats calls or until --budget-s is spent), throughput in rows/s, size (torch
eager: the checkpoint's state_dict tensor bytes; every other rung: its .onnx file) and the test-split metric,
with ratios to torch eager fp32. Inputs are made once outside the timed loop: model_tensors for torch,
graph_feeds for ONNX Runtime (text tokenized there), so both time the model alone. Torch runs under
torch.inference_mode with torch.set_num_threads; ONNX Runtime with intra-op threads set (one inter-op thread).
The targets printed last: ONNX Runtime fp32 >= 3x torch eager at batch 1 for the small families, and for the
text encoder a distilled INT8 student >= 4x smaller and >= 3x faster at batch 1 than the teacher's fp32 ONNX
file, within 1 accuracy point of it on the test rows.

    PYTHONPATH=. .venv/bin/python benchmarks/inference_ladder.py [--reviews 1500] [--skip-text] [--quick]

Measured on 2 quiet CPU cores, seed 42 (5 min 28 s in all; another busy process on the machine halves what 2
threads can do, hence the load average noted per family):

    table  tabular_mlp: ORT fp32 5.75x torch eager at batch 1, 2 threads (5.85x at 1 thread): met
    digits image_cnn:   ORT fp32 4.12x torch eager at batch 1, 2 threads (5.91x at 1 thread): met
    text   pretrained_encoder, distilled INT8 student vs the teacher's fp32 ONNX: 19.4x smaller, 15.6x faster at
           batch 1 (2 threads), test accuracy 0.953 -> 0.890 (-6.3 points): not met on accuracy
"""

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # a progress bar per epoch per model buries the tables

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer

from tasks.core.config import CompressionConfig, SplitConfig, TrainingConfig
from tasks.core.spec import Spec, digits_frame, digits_spec
from tasks.data.infer import infer_spec
from tasks.data.split import DataSplits, split_dataset
from tasks.model.distillation import distill_model
from tasks.model.loop import seed_everything
from tasks.model.metrics import MAIN_METRIC, score_outputs
from tasks.model.network import load_checkpoint, model_tensors, predict_outputs
from tasks.model.pruning import ShrinkResult, prune_model
from tasks.model.training import train_model
from tasks.onnx.compress import quantize_candidates
from tasks.onnx.export import export_onnx
from tasks.onnx.runtime import batch_of, compare_outputs, graph_feeds, open_session, run_model
from tests.corpora import product_reviews

BATCH_SIZES = (1, 64)  # one request; CompressionConfig's latency batch
THREAD_COUNTS = (1, 2)  # these machines have two cores
# Median of up to this many calls, fewer once the budget is spent (a MiniLM batch of 64 takes ~0.3 s).
REPEATS, BUDGET_S, MIN_REPEATS = 50, 3.0, 5
QUICK_REPEATS, QUICK_BUDGET_S = 10, 0.5
QUICK_REVIEWS, QUICK_MAX_EPOCHS = 300, 3
CALIBRATION_ROWS = CompressionConfig().calibration_rows
# The targets.
SMALL_SPEEDUP = 3.0  # ORT fp32 over torch eager, batch 1
STUDENT_SMALLER, STUDENT_SPEEDUP, STUDENT_LOSS_POINTS = 4.0, 3.0, 1.0  # distilled INT8 vs the teacher's fp32 ONNX
EAGER, ORT_FP32 = "torch eager fp32", "ORT fp32"
KIB, MB = 1024, 1_000_000

Setting = tuple[int, int]  # (batch rows, threads)
SETTINGS: tuple[Setting, ...] = tuple((b, t) for b in BATCH_SIZES for t in THREAD_COUNTS)


@dataclass(frozen=True)
class Timing:
    """How latency is measured."""

    repeats: int
    budget_s: float


@dataclass(frozen=True)
class Rung:
    """One model file (or torch model) on the test rows: size, metric and median latency per setting."""

    name: str
    size_bytes: int
    metric: float
    latency_ms: dict[Setting, float]


@dataclass(frozen=True)
class Ladder:
    """Every rung of one family, and what was noticed making them (skipped candidates, parity, INT8 choices)."""

    title: str
    family: str
    metric_name: str  # "accuracy"
    sizes: dict[str, int]
    rungs: tuple[Rung, ...]
    notes: tuple[str, ...]

    def rung(self, name: str) -> Rung | None:
        return next((r for r in self.rungs if r.name == name), None)


def median_ms(call: Callable[[], object], timing: Timing) -> float:
    """Median wall time of one call in ms after a warm-up call: the same rule as tasks.onnx.runtime's
    median_latency_ms, used for torch and ONNX Runtime alike."""
    call()
    timings: list[float] = []
    while len(timings) < timing.repeats and (len(timings) < MIN_REPEATS or sum(timings) < timing.budget_s):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return float(np.median(timings) * 1000.0)


def test_metric(splits: DataSplits, outputs: np.ndarray) -> float:
    return score_outputs(splits.spec, outputs, splits.targets("test")).value(MAIN_METRIC[splits.spec.task])


def torch_rung(checkpoint: Path, splits: DataSplits, timing: Timing) -> tuple[Rung, np.ndarray]:
    """torch eager fp32 on the CPU, and its test outputs (the parity reference)."""
    model = load_checkpoint(checkpoint)
    outputs = predict_outputs(model, splits.feeds("test"))
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    latency = {}
    for batch, threads in SETTINGS:
        tensors = model_tensors(model, batch_of(splits.feeds("test"), batch))
        torch.set_num_threads(threads)
        with torch.inference_mode():
            latency[batch, threads] = median_ms(lambda t=tensors: model(*t), timing)
    return Rung(EAGER, size, test_metric(splits, outputs), latency), outputs


def onnx_rung(name: str, path: Path, splits: DataSplits, timing: Timing) -> tuple[Rung, np.ndarray]:
    """One .onnx file through ONNX Runtime, and its test outputs."""
    outputs = run_model(open_session(path), splits.feeds("test"))
    latency = {}
    for batch, threads in SETTINGS:
        session = open_session(path, threads=threads)
        feeds = graph_feeds(session, batch_of(splits.feeds("test"), batch))
        latency[batch, threads] = median_ms(lambda s=session, f=feeds: s.run(None, f), timing)
    return Rung(name, path.stat().st_size, test_metric(splits, outputs), latency), outputs


def best_int8(label: str, fp32: Path, splits: DataSplits, timing: Timing) -> tuple[Rung | None, list[str]]:
    """The INT8 file of `fp32` with the better test metric (ties: the faster at batch 1, 2 threads), and notes
    on every candidate and on the quantizers that were skipped."""
    paths, skipped = quantize_candidates(fp32, splits.feeds("train", rows=CALIBRATION_ROWS))
    kinds = {"int8-static-qdq": "static QDQ", "int8-dynamic": "dynamic"}
    rungs = [onnx_rung(f"{label}INT8 ({kinds[name]})", path, splits, timing)[0] for name, path in paths.items()]
    notes = [f"{label}INT8 {kinds[s.name]} skipped: {s.reason}" for s in skipped]
    if len(rungs) > 1:
        notes.append(f"{label}INT8 candidates: " + ", ".join(f"{r.name} {r.metric:.4f}" for r in rungs))
    best = max(rungs, key=lambda r: (r.metric, -r.latency_ms[1, 2]), default=None)
    return best, notes


def parity_note(name: str, task: str, reference: np.ndarray, outputs: np.ndarray) -> str:
    parity = compare_outputs(task, reference, outputs)
    return f"{name} vs {EAGER} on the test rows: max |diff| {parity.max_abs_diff:.2e}, agreement {parity.agreement:.4f}"


def exported(checkpoint: Path, folder: Path) -> Path:
    """The checkpoint as folder/model.onnx: a folder per model, because the INT8 files are named after it."""
    return export_onnx(load_checkpoint(checkpoint), folder / "model.onnx")


def smaller_models(checkpoint: Path, splits: DataSplits, training: TrainingConfig, work_dir: Path) -> ShrinkResult:
    """The pruned models (each default level) and the distilled student, as the compression stage makes them."""
    compression = CompressionConfig()
    if training.max_epochs is not None:  # --quick: short fine-tunes too
        compression = compression.model_copy(
            update={
                "pruning": compression.pruning.model_copy(update={"fine_tune_epochs": training.max_epochs}),
                "distillation": compression.distillation.model_copy(update={"max_epochs": training.max_epochs}),
            }
        )
    pruned = prune_model.fn(checkpoint, splits, compression, training, work_dir / "pruned")
    distilled = distill_model.fn(checkpoint, splits, compression.distillation, training, work_dir / "distilled")
    return ShrinkResult(pruned.models + distilled.models, pruned.skipped + distilled.skipped)


def shrunk_label(name: str) -> str:
    """The prefix of a smaller model's rungs: "pruned-30" -> "pruned 30% ", "distilled" -> "distilled "."""
    return f"pruned {name.removeprefix('pruned-')}% " if name.startswith("pruned-") else f"{name} "


def family_ladder(title: str, frame: pd.DataFrame, spec: Spec, args: argparse.Namespace, work_dir: Path) -> Ladder:
    """Train, shrink, export and quantize one family's model, and measure every rung on the test rows."""
    seed_everything(args.seed)
    training = TrainingConfig(seed=args.seed, max_epochs=QUICK_MAX_EPOCHS if args.quick else None)
    timing = Timing(QUICK_REPEATS, QUICK_BUDGET_S) if args.quick else Timing(args.repeats, args.budget_s)
    splits = split_dataset.fn(frame, spec.dataset, SplitConfig(seed=args.seed))
    trained = train_model.fn(splits, spec, training, work_dir / "teacher")
    shrunk = smaller_models(trained.checkpoint_path, splits, training, work_dir)
    notes = [f"trained {spec.model.family}: {len(trained.history)} epochs, {trained.seconds:.0f} s"]
    notes += [f"{m.name}: {m.how} ({m.seconds:.0f} s)" for m in shrunk.models]
    notes += [f"{s.name} skipped: {s.reason}" for s in shrunk.skipped]
    # Another busy process halves what 2 threads can do: this says whether the figures below were measured alone.
    notes.append(f"1-minute load average as timing began: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    eager, reference = torch_rung(trained.checkpoint_path, splits, timing)
    rungs = [eager]
    sources = [("", trained.checkpoint_path), *((shrunk_label(m.name), m.checkpoint_path) for m in shrunk.models)]
    for label, checkpoint in sources:
        fp32 = exported(checkpoint, work_dir / "onnx" / (label.strip().replace(" ", "-").replace("%", "") or "fp32"))
        rung, outputs = onnx_rung(f"{label}ORT fp32" if label else ORT_FP32, fp32, splits, timing)
        if not label:
            notes.append(parity_note(ORT_FP32, splits.spec.task, reference, outputs))
        int8, int8_notes = best_int8(label, fp32, splits, timing)
        rungs += [rung, *([int8] if int8 else [])]
        notes += int8_notes
    torch.set_num_threads(max(THREAD_COUNTS))  # the next family trains as it would alone
    metric = MAIN_METRIC[splits.spec.task].removeprefix("test_")
    return Ladder(title, spec.model.family, metric, splits.sizes(), tuple(rungs), tuple(notes))


def table_ladder(args: argparse.Namespace, work_dir: Path) -> Ladder:
    frame = load_breast_cancer(as_frame=True).frame
    spec, _ = infer_spec(frame, "target", name="breast_cancer")
    return family_ladder("table: scikit-learn breast_cancer", frame, spec, args, work_dir / "table")


def digits_ladder(args: argparse.Namespace, work_dir: Path) -> Ladder:
    return family_ladder("digits: bundled 8x8 digits", digits_frame(), digits_spec(), args, work_dir / "digits")


def text_ladder(args: argparse.Namespace, work_dir: Path) -> Ladder:
    rows = QUICK_REVIEWS if args.quick else args.reviews
    frame = product_reviews(rows, args.seed)
    spec, _ = infer_spec(frame, "sentiment", name="reviews")
    return family_ladder(f"text: {rows} generated reviews", frame, spec, args, work_dir / "text")


def size_unit(ladder: Ladder) -> tuple[str, int]:
    """KiB for the small families, MB where the largest rung passes 10 MB."""
    return ("MB", MB) if max(r.size_bytes for r in ladder.rungs) > 10 * MB else ("KiB", KIB)


def markdown_row(cells: list[str], widths: list[int]) -> str:
    """The rung's name left-aligned, the figures right-aligned."""
    padded = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
    return "| " + " | ".join(padded) + " |"


def ladder_rows(ladder: Ladder) -> list[list[str]]:
    """One row per rung and batch size; the threads side by side."""
    eager, (_, scale) = ladder.rungs[0], size_unit(ladder)
    rows = []
    for rung in ladder.rungs:
        for batch in BATCH_SIZES:
            first = batch == BATCH_SIZES[0]
            ms = [rung.latency_ms[batch, t] for t in THREAD_COUNTS]
            rows.append(
                [
                    rung.name if first else "",
                    str(batch),
                    f"{rung.size_bytes / scale:,.1f}" if first else "",
                    f"{eager.size_bytes / rung.size_bytes:.2f}" if first else "",
                    f"{rung.metric:.4f}" if first else "",
                    *(f"{m:.3f}" for m in ms),
                    *(f"{batch * 1000.0 / m:,.0f}" for m in ms),
                    *(f"{eager.latency_ms[batch, t] / m:.2f}" for t, m in zip(THREAD_COUNTS, ms, strict=True)),
                ]
            )
    return rows


def print_ladder(ladder: Ladder) -> None:
    unit, _ = size_unit(ladder)
    sizes = " / ".join(f"{part} {rows}" for part, rows in ladder.sizes.items())
    print(f"\n### {ladder.title}, {ladder.family} ({sizes} rows)\n")
    threads = [f"{t} thr" for t in THREAD_COUNTS]
    header = [
        "rung",
        "batch",
        f"size {unit}",
        "x smaller",
        f"test {ladder.metric_name}",
        *(f"ms {t}" for t in threads),
        *(f"rows/s {t}" for t in threads),
        *(f"x faster {t}" for t in threads),
    ]
    rows = ladder_rows(ladder)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(markdown_row(header, widths))
    print("|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
    for row in rows:
        print(markdown_row(row, widths))
    print(f"\nsize: {EAGER} = state_dict tensor bytes; every other rung = its .onnx file. Ratios are to {EAGER}.")
    for note in ladder.notes:
        print(f"- {note}")


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def small_family_target(ladder: Ladder) -> str:
    """Target 1: ONNX Runtime fp32 >= SMALL_SPEEDUP x torch eager at batch 1, 2 threads (1 thread shown)."""
    eager, ort = ladder.rungs[0], ladder.rung(ORT_FP32)
    speedup = {t: eager.latency_ms[1, t] / ort.latency_ms[1, t] for t in THREAD_COUNTS}
    return (
        f"  {ladder.title} ({ladder.family}): batch 1, 2 threads {eager.latency_ms[1, 2]:.3f} -> "
        f"{ort.latency_ms[1, 2]:.3f} ms = {speedup[2]:.2f}x (1 thread {eager.latency_ms[1, 1]:.3f} -> "
        f"{ort.latency_ms[1, 1]:.3f} ms = {speedup[1]:.2f}x): {verdict(speedup[2] >= SMALL_SPEEDUP)}"
    )


def student_target(ladder: Ladder) -> str:
    """Target 2: the distilled INT8 student against the teacher's fp32 ONNX file."""
    teacher = ladder.rung(ORT_FP32)
    student = next((r for r in ladder.rungs if r.name.startswith("distilled INT8")), None)
    if student is None:
        return f"  {ladder.title}: no distilled INT8 student was made (see the notes above): NOT MET"
    smaller = teacher.size_bytes / student.size_bytes
    faster = {t: teacher.latency_ms[1, t] / student.latency_ms[1, t] for t in THREAD_COUNTS}
    loss = (teacher.metric - student.metric) * 100.0
    met = smaller >= STUDENT_SMALLER and faster[2] >= STUDENT_SPEEDUP and loss <= STUDENT_LOSS_POINTS
    return (
        f"  {student.name}: {smaller:.2f}x smaller "
        f"({teacher.size_bytes / MB:.1f} -> {student.size_bytes / MB:.2f} MB), "
        f"batch 1 {faster[2]:.2f}x faster at 2 threads ({teacher.latency_ms[1, 2]:.3f} -> "
        f"{student.latency_ms[1, 2]:.3f} ms; 1 thread {faster[1]:.2f}x), test {ladder.metric_name} "
        f"{teacher.metric:.4f} -> {student.metric:.4f} ({-loss:+.1f} points): {verdict(met)}"
    )


def print_targets(ladders: list[Ladder]) -> None:
    print(f"\nTarget 1: ORT fp32 >= {SMALL_SPEEDUP:g}x torch eager at batch 1 (2 threads; 1 thread shown)")
    for ladder in ladders:
        if ladder.family in ("tabular_mlp", "image_cnn"):
            print(small_family_target(ladder))
    print(
        f"Target 2: pretrained_encoder's distilled INT8 student >= {STUDENT_SMALLER:g}x smaller and >= "
        f"{STUDENT_SPEEDUP:g}x faster at batch 1 (2 threads) than the teacher's fp32 ONNX, within "
        f"{STUDENT_LOSS_POINTS:g} accuracy point of it"
    )
    encoders = [ladder for ladder in ladders if ladder.family == "pretrained_encoder"]
    for ladder in encoders:
        print(student_target(ladder))
    if not encoders:
        print("  not measured: the text family was skipped, or inference proposed another family for it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=1500, help="generated reviews for the text family")
    parser.add_argument("--skip-text", action="store_true", help="skip the text family (minutes of fine-tuning)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 reviews, 3 epochs, 10 repeats")
    parser.add_argument("--seed", type=int, default=TrainingConfig().seed, help="the reviews, every split and model")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed calls per setting (at most)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="stop timing a setting after this")
    args = parser.parse_args()
    # The TorchScript exporter's notes on MiniLM's graph (a traced Python bool, advanced indexing); the test rows
    # are scored through each exported file itself, so an export that went wrong shows in the metric.
    warnings.filterwarnings("ignore", message=r"(Converting a tensor to a Python boolean|Exporting aten::index)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        makers = [table_ladder, digits_ladder, *([] if args.skip_text else [text_ladder])]
        ladders = [make(args, Path(tmp)) for make in makers]
    for ladder in ladders:
        print_ladder(ladder)
    print_targets(ladders)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
