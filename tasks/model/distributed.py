"""Data-parallel training: torchrun starts training.distributed.nproc_per_node processes of this module.

`train_distributed` writes the job to the run's folder, runs torchrun, and names a failed rank and its last words;
each process (`python -m tasks.model.distributed JOB`) trains its shard in tasks.model.loop, and the first rank
alone writes the checkpoint. Nothing here logs to MLflow.
"""

import os
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from tasks.core.config import TrainingConfig
from tasks.core.errors import GreenlightError
from tasks.core.locations import PROJECT_ROOT
from tasks.core.spec import Spec
from tasks.data.parts import DataSplits
from tasks.model.loop import DataParallel, FitResult, train_on_device
from tasks.model.network import save_checkpoint

RESULT_FILE = "result.pkl"
COLLATERAL = re.compile(r"Connection closed by peer|Connection reset by peer|remote worker crashing|NCCL.*abort", re.I)


@dataclass(frozen=True)
class DistributedJob:
    """What every process needs, written once by the launcher."""

    splits: DataSplits
    spec: Spec
    config: TrainingConfig
    checkpoint_path: Path


@dataclass(frozen=True)
class DistributedFit:
    """The first rank's fit; its weights are in the checkpoint, not here."""

    checkpoint_path: Path
    fit: FitResult
    device: str
    processes: int


def torchrun_command(job_path: Path, processes: int, log_dir: Path) -> list[str]:
    """torchrun on this machine (a free rendezvous port on localhost), no restarts: a failed rank fails the
    training. Every rank's output goes to log_dir; rank 0's also to the console (its progress bar)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "--max-restarts=0", f"--log-dir={log_dir}", "--redirects=3", "--tee=3", "--local-ranks-filter=0",
        "-m", "tasks.model.distributed", str(job_path),
    ]  # fmt: skip


def process_environment(processes: int) -> dict[str, str]:
    """The machine's cores shared among the processes (torchrun would give each one thread); rank 0's progress
    bar redrawn every 5 s (through torchrun each redraw is a new line of the log)."""
    cores = len(os.sched_getaffinity(0))
    threads = str(max(1, cores // processes)) if not torch.cuda.is_available() else "1"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"}
    return {**environment, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}


def rank_failure(job_dir: Path, log_dir: Path, processes: int) -> GreenlightError | str:
    """A rank's own error (bad settings, divergence: the same on every rank) to raise as it was, or the last
    lines of each failed rank's output."""
    for rank in range(processes):
        raised = job_dir / f"rank{rank}-error.pkl"
        if raised.exists():
            return pickle.loads(raised.read_bytes())
    words = {}
    for rank in range(processes):
        for stderr in sorted(log_dir.glob(f"*/attempt_*/{rank}/stderr.log")):
            lines = [line for line in stderr.read_text(errors="replace").splitlines() if line.strip()]
            if lines and any("Error" in line or "Traceback" in line for line in lines):
                words[rank] = lines[-1].strip()
    # The other ranks then fail in their next collective ("Connection closed by peer"): effects, not causes.
    causes = {rank: text for rank, text in words.items() if not COLLATERAL.search(text)} or words
    return "; ".join(f"rank {rank}: {text}" for rank, text in causes.items()) or "no rank left an error message"


def train_distributed(splits: DataSplits, spec: Spec, config: TrainingConfig, work_dir: Path) -> DistributedFit:
    """Train in training.distributed.nproc_per_node processes with torchrun; the first rank's best checkpoint."""
    processes = config.distributed.nproc_per_node
    job_dir = work_dir / "distributed"
    job_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*job_dir.glob("rank*-error.pkl"), job_dir / RESULT_FILE]:
        stale.unlink(missing_ok=True)
    job_path = job_dir / "job.pkl"
    job_path.write_bytes(pickle.dumps(DistributedJob(splits, spec, config, work_dir / "best.pt")))
    log_dir = job_dir / "logs"
    print(f"training in {processes} processes (torchrun); each rank's output in {log_dir}")
    command = torchrun_command(job_path, processes, log_dir)
    try:
        finished = subprocess.run(command, cwd=PROJECT_ROOT, env=process_environment(processes))
    finally:
        job_path.unlink(missing_ok=True)  # a second copy of the data, needed only while the processes start
    if finished.returncode != 0:
        failure = rank_failure(job_dir, log_dir, processes)
        if isinstance(failure, GreenlightError):
            raise failure
        raise GreenlightError(
            f"distributed training failed: torchrun exited with code {finished.returncode} ({failure});"
            f" no model was registered. Each rank's output is in {log_dir}"
        )
    return pickle.loads((job_dir / RESULT_FILE).read_bytes())


def rank_device(local_rank: int) -> torch.device:
    """One GPU per process when there are GPUs, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise GreenlightError(
            f"training.distributed.nproc_per_node asks for more processes than the {torch.cuda.device_count()}"
            " GPUs of this machine (one GPU per process)"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def train_rank(job: DistributedJob, rank: int, world_size: int, device: torch.device) -> None:
    """This process's part of the training; the first rank writes the checkpoint and the result."""
    model, fit = train_on_device(job.splits, job.spec, job.config, device, DataParallel(rank, world_size, device))
    if rank == 0:
        save_checkpoint(model, fit.best_state, job.checkpoint_path)
        result = DistributedFit(job.checkpoint_path, replace(fit, best_state={}), device.type, world_size)
        (job.checkpoint_path.parent / "distributed" / RESULT_FILE).write_bytes(pickle.dumps(result))


@record  # torchrun's agent records the traceback of an unexpected failure in the rank's log folder
def main(job_path: Path) -> None:
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    job: DistributedJob = pickle.loads(job_path.read_bytes())
    try:
        device = rank_device(int(os.environ["LOCAL_RANK"]))
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        try:
            train_rank(job, rank, world_size, device)
        finally:
            torch.distributed.destroy_process_group()
    except GreenlightError as error:  # a message for the user, raised again by the launcher as it was
        (job_path.parent / f"rank{rank}-error.pkl").write_bytes(pickle.dumps(error))
        sys.exit(error.exit_code)


if __name__ == "__main__":
    # Through the module's own name, so what it pickles (DistributedFit) unpickles in the launcher.
    from tasks.model import distributed

    distributed.main(Path(sys.argv[1]))
