"""Knowledge distillation: a smaller student of the same task trained on the trained model's outputs.

The student is the family's own smaller network (Family.student) or compression.distillation.student, reading the
same inputs through the same preprocessing; the teacher's outputs on the training rows are computed once.
The loss (Hinton et al. 2015 for classification, squared errors for regression): docs/compression.md.
"""

import time
from pathlib import Path

import numpy as np
import torch
from prefect import task
from torch import Tensor, nn

from tasks.core.cache import stage_cache_key
from tasks.core.config import DistillationConfig, TrainingConfig
from tasks.core.spec import ModelSpec
from tasks.data.split import DataSplits
from tasks.model.families import get_family
from tasks.model.loop import (
    BatchLoss,
    FitSchedule,
    PartTensors,
    compute_loss,
    fit_model,
    part_tensors,
    pick_device,
    seed_everything,
    train_targets,
)
from tasks.model.network import GreenlightModel, load_checkpoint, save_checkpoint
from tasks.model.pruning import ShrinkResult, ShrunkModel, SkippedCandidate, checkpoints_of, count_parameters

TEACHER_CHUNK_ROWS = 256  # the teacher's outputs are computed in chunks (an encoder over thousands of texts)
TOKEN_REPLACE_SHARE = 0.15  # of an altered text's tokens (BERT's masking rate)


def student_spec(teacher: GreenlightModel, config: DistillationConfig) -> ModelSpec | None:
    """compression.distillation.student, or the teacher family's own student (None: the family has none)."""
    if config.student is not None:
        return config.student
    make = get_family(teacher.spec.model.family).student
    return make(teacher.spec.model) if make else None


def teacher_outputs(teacher: GreenlightModel, part: PartTensors) -> Tensor:
    """The teacher's network outputs (logits, or the standardised prediction) on every row of a part, once."""
    teacher = teacher.to(part.targets.device).eval()
    rows = len(part.targets)
    with torch.inference_mode():
        chunks = [
            teacher.network_output(*part.batch(torch.arange(i, min(i + TEACHER_CHUNK_ROWS, rows)))[0]).float()
            for i in range(0, rows, TEACHER_CHUNK_ROWS)
        ]
    return torch.cat(chunks).detach().clone()


def altered_texts(part: PartTensors, copies: int, share: float = TOKEN_REPLACE_SHARE) -> PartTensors:
    """`copies` altered versions of every row of a part with text: `share` of each text's tokens (never the
    first, [CLS]) replaced by tokens drawn from the whole corpus. Targets are filled in by the teacher later."""
    if not part.token_inputs or copies == 0:
        return part
    ids_at, mask_at = part.token_inputs
    ids, mask = part.inputs[ids_at], part.inputs[mask_at]
    corpus = ids[mask.bool()]
    replaceable = mask.bool().clone()
    replaceable[:, 0] = False
    inputs = [list(part.inputs)]
    for _ in range(copies):
        altered = ids.clone()
        chosen = replaceable & (torch.rand(ids.shape, device=ids.device) < share)
        altered[chosen] = corpus[torch.randint(len(corpus), (int(chosen.sum()),), device=ids.device)]
        inputs.append([altered if i == ids_at else t for i, t in enumerate(part.inputs)])
    joined = tuple(torch.cat([copy[i] for copy in inputs]) for i in range(len(part.inputs)))
    targets = part.targets.repeat(copies + 1)
    return PartTensors(joined, targets, np.tile(part.raw_targets, copies + 1), part.token_inputs)


def transfer_set(
    teacher: GreenlightModel, splits: DataSplits, config: DistillationConfig, training: TrainingConfig
) -> tuple[PartTensors, Tensor]:
    """The student's training rows (the training split, plus altered copies of its texts) and the teacher's
    outputs on them; an altered text's target is the teacher's answer, as its label may no longer hold."""
    device = pick_device()
    # The teacher's own training targets (permuted too in a shuffled-labels drill: the student must not learn
    # the real labels the teacher never saw).
    train = part_tensors(teacher.to(device), splits, "train", train_targets(splits, training), device)
    rows, transfer = len(train.targets), altered_texts(train, config.text_copies)
    soft = teacher_outputs(teacher, transfer)
    if len(transfer.targets) > rows:
        answers = soft.argmax(dim=1) if teacher.spec.dataset.task == "classification" else soft.reshape(-1)
        targets = torch.cat([transfer.targets[:rows], answers[rows:].to(transfer.targets.dtype)])
        transfer = PartTensors(transfer.inputs, targets, transfer.raw_targets, transfer.token_inputs)
    return transfer, soft


def distillation_loss(soft: Tensor, config: DistillationConfig) -> BatchLoss:
    """The batch loss against the teacher's outputs `soft` (indexed by the batch's rows) and the labels."""
    temperature, alpha = config.temperature, config.alpha

    def loss(model: GreenlightModel, output: Tensor, targets: Tensor, index: Tensor) -> Tensor:
        teacher, hard = soft[index], compute_loss(model, output, targets)
        if model.spec.dataset.task == "classification":
            student_log = nn.functional.log_softmax(output.float() / temperature, dim=1)
            teacher_log = nn.functional.log_softmax(teacher / temperature, dim=1)
            kl = nn.functional.kl_div(student_log, teacher_log, log_target=True, reduction="batchmean")
            return alpha * temperature**2 * kl + (1 - alpha) * hard
        return alpha * nn.functional.mse_loss(output.float().reshape(-1), teacher.reshape(-1)) + (1 - alpha) * hard

    return loss


def train_student(
    teacher: GreenlightModel,
    student_model: ModelSpec,
    splits: DataSplits,
    config: DistillationConfig,
    training: TrainingConfig,
) -> tuple[GreenlightModel, object]:
    """The student (same spec and preprocessing, the student's network) fitted to the teacher and the labels."""
    device = pick_device()
    transfer, soft = transfer_set(teacher, splits, config, training)
    student = GreenlightModel(teacher.spec.model_copy(update={"model": student_model}), teacher.preprocessing)
    with torch.no_grad():  # the teacher's decision threshold (tasks.model.threshold) is the student's too
        student.logit_offset.copy_(teacher.logit_offset)
    seed = getattr(teacher.network, "seed_student", None)
    if callable(seed):
        seed(student.network)
    student = student.to(device)
    family = get_family(student_model.family)
    schedule = FitSchedule(
        f"distilling into {family.name}", config.max_epochs or family.max_epochs, training.patience or family.patience
    )
    loss = distillation_loss(soft, config)
    fit = fit_model(student, splits, transfer.raw_targets, training, schedule, loss, train=transfer)
    return student, fit


@task(
    name="distill_model",
    cache_key_fn=stage_cache_key("distillation", ignore=["out_dir"], files_of=checkpoints_of),
    persist_result=True,
)
def distill_model(
    checkpoint_path: Path, splits: DataSplits, config: DistillationConfig, training: TrainingConfig, out_dir: Path
) -> ShrinkResult:
    """A student distilled from the trained checkpoint; none when distillation is off or the family has no
    student (a custom family: compression.distillation.student names one)."""
    if not config.enabled:
        return ShrinkResult(())
    seed_everything(training.seed)
    started, teacher = time.perf_counter(), load_checkpoint(checkpoint_path)
    spec = student_spec(teacher, config)
    if spec is None:
        reason = f"family '{teacher.spec.model.family}' names no student: set compression.distillation.student"
        return ShrinkResult((), (SkippedCandidate("distilled", reason),))
    try:
        student, fit = train_student(teacher, spec, splits, config, training)
    except Exception as error:  # noqa: BLE001 - a student that cannot be built or trained is reported, not fatal
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        return ShrinkResult((), (SkippedCandidate("distilled", f"{type(error).__name__}: {reason}"),))
    path = save_checkpoint(student, fit.best_state, out_dir / "distilled.pt")
    student.load_state_dict(fit.best_state)
    how = (
        f"student {spec.family} {dict(spec.options)} ({count_parameters(teacher):,} -> {count_parameters(student):,}"
        f" weights), T={config.temperature:g}, alpha={config.alpha:g}, {len(fit.history)} epochs"
    )
    model = ShrunkModel("distilled", path, how, count_parameters(student), time.perf_counter() - started, fit.history)
    return ShrinkResult((model,))
