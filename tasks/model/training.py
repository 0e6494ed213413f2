"""Training stage: a small CNN on 8x8 digits, one loop you can read top to bottom."""

import copy
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from torch import nn
from tqdm.auto import tqdm

from tasks.core.config import TrainingConfig
from tasks.core.schema import IMAGE_SIDE, N_CLASSES, PIXEL_MAX
from tasks.data.files import DataSplits


class DigitsCNN(nn.Module):
    """Two 3x3 conv layers and a small head; takes raw rows of 64 pixel values (0..16)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, N_CLASSES)
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # Scaling lives in the graph so the ONNX model and the endpoint take the raw 0..16 values.
        images = (pixels / PIXEL_MAX).reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
        return self.head(self.features(images))


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True)
class TrainedModel:
    """A reference to the best checkpoint and how training went."""

    checkpoint_path: Path
    best_epoch: int
    history: tuple[EpochMetrics, ...]
    device: str
    seconds: float


def pick_device() -> torch.device:
    """CUDA when present, else CPU; there is nothing to configure."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_checkpoint(path: Path) -> DigitsCNN:
    """Rebuild the CNN from a saved state dict, in eval mode on the CPU."""
    model = DigitsCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def predict_logits(model: nn.Module, pixels: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """fp32 logits for rows of pixels, computed on the CPU (the reference for ONNX parity)."""
    model = model.to("cpu").eval()
    with torch.inference_mode():
        chunks = [model(torch.from_numpy(pixels[i : i + batch_size])) for i in range(0, len(pixels), batch_size)]
    return torch.cat(chunks).numpy()


def run_epoch(model, loader, optimizer, device, autocast) -> float:
    """One pass over the training loader; returns the mean loss."""
    model.train()
    total, count = 0.0, 0
    for pixels, labels in loader:
        pixels, labels = pixels.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast():
            loss = nn.functional.cross_entropy(model(pixels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        count += len(labels)
    return total / count


def evaluate_loss(model, pixels: torch.Tensor, labels: torch.Tensor, autocast) -> tuple[float, float]:
    """Validation loss and accuracy over tensors already on the device."""
    model.eval()
    with torch.inference_mode(), autocast():
        logits = model(pixels).float()
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(dim=1) == labels).float().mean().item()


def training_loader(splits: DataSplits, config: TrainingConfig) -> torch.utils.data.DataLoader:
    """Seeded, shuffled mini-batches; labels permuted when the config asks for a useless model."""
    y_train = splits.y_train
    if config.shuffle_labels:
        y_train = np.random.default_rng(config.seed).permutation(y_train)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(splits.x_train), torch.from_numpy(y_train))
    return torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(config.seed)
    )


@task(name="train_model", cache_policy=NO_CACHE)
def train_model(splits: DataSplits, config: TrainingConfig, work_dir: Path) -> TrainedModel:
    """Train with AdamW and early stopping on validation loss; keep the best checkpoint."""
    seed_everything(config.seed)
    device = pick_device()
    # bf16 autocast only on CUDA: on CPU it is slower than fp32 for a model this small.
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    loader = training_loader(splits, config)
    x_val = torch.from_numpy(splits.x_val).to(device)
    y_val = torch.from_numpy(splits.y_val).to(device)
    model = DigitsCNN().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    started, history = time.perf_counter(), []
    best_loss, best_epoch, best_state = float("inf"), 0, None
    progress = tqdm(range(1, config.max_epochs + 1), desc="training", unit="epoch")
    for epoch in progress:
        train_loss = run_epoch(model, loader, optimizer, device, autocast)
        val_loss, val_accuracy = evaluate_loss(model, x_val, y_val, autocast)
        history.append(EpochMetrics(epoch, train_loss, val_loss, val_accuracy))
        progress.set_postfix(train_loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", val_acc=f"{val_accuracy:.4f}")
        if val_loss < best_loss:
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            progress.write(f"early stop at epoch {epoch}: no lower validation loss since epoch {best_epoch}")
            break
    progress.close()

    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = work_dir / "best.pt"
    torch.save({k: v.to("cpu") for k, v in best_state.items()}, checkpoint_path)
    seconds = time.perf_counter() - started
    return TrainedModel(checkpoint_path, best_epoch, tuple(history), device.type, seconds)
