"""Behavioural checks of the default CNN trained on digits: accuracy, invariance, direction."""

import numpy as np
import torch

from tasks.model.training import load_checkpoint, predict_logits


def probabilities(model, pixels: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(predict_logits(model, pixels)), dim=1).numpy()


def test_default_config_reaches_the_documented_accuracy(trained, digits_splits):
    model = load_checkpoint(trained.checkpoint_path)
    accuracy = np.mean(predict_logits(model, digits_splits.x_test).argmax(axis=1) == digits_splits.y_test)
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f} below 0.97"


def test_training_stops_early_and_keeps_the_best_epoch(trained):
    losses = [m.val_loss for m in trained.history]
    assert trained.best_epoch == 1 + int(np.argmin(losses))
    assert len(trained.history) < 40, "early stopping never triggered within max_epochs"


def test_predictions_are_invariant_to_small_pixel_noise(trained, digits_splits):
    model = load_checkpoint(trained.checkpoint_path)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, digits_splits.x_test.shape).astype(np.float32)
    noisy = np.clip(digits_splits.x_test + noise, 0, 16)
    clean_labels = predict_logits(model, digits_splits.x_test).argmax(axis=1)
    noisy_labels = predict_logits(model, noisy).argmax(axis=1)
    assert np.mean(clean_labels == noisy_labels) >= 0.98


def test_erasing_half_the_strokes_lowers_confidence_in_the_true_digit(trained, digits_splits):
    model = load_checkpoint(trained.checkpoint_path)
    images = digits_splits.x_test.reshape(-1, 8, 8).copy()
    images[:, :, 4:] = 0  # blank the right half of every image
    labels = digits_splits.y_test
    before = probabilities(model, digits_splits.x_test)[np.arange(len(labels)), labels]
    after = probabilities(model, images.reshape(-1, 64))[np.arange(len(labels)), labels]
    assert after.mean() < before.mean() - 0.2


def test_training_is_reproducible_for_a_seed(trained, digits_splits, tmp_path):
    from tasks.core.config import TrainingConfig
    from tasks.model.training import train_model

    short = TrainingConfig(max_epochs=2)
    first = train_model.fn(digits_splits, short, tmp_path / "a")
    second = train_model.fn(digits_splits, short, tmp_path / "b")
    assert [m.val_loss for m in first.history] == [m.val_loss for m in second.history]
