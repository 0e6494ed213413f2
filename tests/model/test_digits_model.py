"""Behavioural checks of the image_cnn family trained on the bundled digits: accuracy, invariance,
direction, and the same quality as the hard-wired CNN it replaced."""

import numpy as np
import torch

from tasks.core.config import TrainingConfig
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.training import train_model


def probabilities(model, pixels: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(predict_outputs(model, {"pixels": pixels})), dim=1).numpy()


def test_default_config_reaches_the_documented_accuracy(trained, digits_splits):
    model = load_checkpoint(trained.checkpoint_path)
    logits = predict_outputs(model, digits_splits.feeds("test"))
    accuracy = np.mean(logits.argmax(axis=1) == digits_splits.targets("test"))
    assert trained.family == "image_cnn"
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f} below 0.97"


def test_training_stops_early_and_keeps_the_best_epoch(trained):
    losses = [m.val_loss for m in trained.history]
    assert trained.best_epoch == 1 + int(np.argmin(losses))
    assert len(trained.history) < 40, "early stopping never triggered within the family's 40 epochs"


def test_predictions_are_invariant_to_small_pixel_noise(trained, digits_splits):
    model = load_checkpoint(trained.checkpoint_path)
    pixels = digits_splits.feeds("test")["pixels"]
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, pixels.shape).astype(np.float32)
    clean_labels = probabilities(model, pixels).argmax(axis=1)
    noisy_labels = probabilities(model, np.clip(pixels + noise, 0, 16)).argmax(axis=1)
    assert np.mean(clean_labels == noisy_labels) >= 0.98


def test_erasing_half_the_strokes_lowers_confidence_in_the_true_digit(trained, digits_splits):
    model = load_checkpoint(trained.checkpoint_path)
    pixels, labels = digits_splits.feeds("test")["pixels"], digits_splits.targets("test")
    images = pixels.reshape(-1, 8, 8).copy()
    images[:, :, 4:] = 0  # blank the right half of every image
    before = probabilities(model, pixels)[np.arange(len(labels)), labels]
    after = probabilities(model, images.reshape(-1, 64))[np.arange(len(labels)), labels]
    assert after.mean() < before.mean() - 0.2


def test_training_is_reproducible_for_a_seed(digits, digits_splits, tmp_path):
    short = TrainingConfig(max_epochs=2)
    first = train_model.fn(digits_splits, digits, short, tmp_path / "a")
    second = train_model.fn(digits_splits, digits, short, tmp_path / "b")
    assert [m.val_loss for m in first.history] == [m.val_loss for m in second.history]
