"""Smaller models of a trained one: structured pruning really narrows each family (fewer weights, a smaller
ONNX file that matches its own torch model), distillation trains a smaller student on the teacher's outputs,
and what cannot be made is skipped with its reason instead of failing the run."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from corpora import product_reviews

from tasks.core.config import (
    CompressionConfig,
    DistillationConfig,
    PruningConfig,
    SplitConfig,
    TrainingConfig,
)
from tasks.core.spec import ModelSpec, Spec, digits_frame, digits_spec
from tasks.data.infer import infer_spec
from tasks.data.split import DataSplits, split_dataset
from tasks.model.distillation import altered_texts, distill_model, distillation_loss, transfer_set
from tasks.model.loop import part_tensors, train_targets
from tasks.model.network import load_checkpoint, predict_outputs
from tasks.model.pruning import count_parameters, prune_model
from tasks.model.training import train_model
from tasks.onnx.export import check_parity, export_onnx

QUICK = TrainingConfig(max_epochs=3, seed=0)


def table_rows(rows: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "y": rng.normal(size=rows), "kind": rng.choice(["a", "b"], rows)})
    frame["label"] = np.where(frame.x + 0.5 * frame.y > 0, "high", "low")
    return frame


def text_spec(frame: pd.DataFrame) -> Spec:
    """The reviews with a small BPE vocabulary trained on them, for a text transformer (seconds on a CPU)."""
    raw = infer_spec(frame, "sentiment")[0].model_dump()
    for feature in raw["dataset"]["features"]:
        if feature["type"] == "text":
            feature.update(tokenizer="bpe", vocab_size=500)
    raw["model"] = {"family": "text_transformer"}
    return Spec.model_validate(raw)


def trained(spec: Spec, frame: pd.DataFrame, tmp_path: Path) -> tuple[DataSplits, Path]:
    splits = split_dataset.fn(frame, spec.dataset, SplitConfig())
    return splits, train_model.fn(splits, spec, QUICK, tmp_path).checkpoint_path


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[DataSplits, Path]]:
    table = table_rows()
    table_spec, _ = infer_spec(table, "label")
    table_spec = table_spec.model_copy(update={"model": ModelSpec(family="tabular_mlp")})  # the network, to prune
    reviews = product_reviews(160)
    return {
        "table": trained(table_spec, table, tmp_path_factory.mktemp("table")),
        "digits": trained(digits_spec(), digits_frame().iloc[:400], tmp_path_factory.mktemp("digits")),
        "text": trained(text_spec(reviews), reviews, tmp_path_factory.mktemp("text")),
    }


@pytest.mark.parametrize("case", ["table", "digits", "text"])
def test_pruning_narrows_every_family_and_the_file_matches_its_own_torch_model(cases, case, tmp_path):
    splits, checkpoint = cases[case]
    config = CompressionConfig(pruning=PruningConfig(levels=(0.5,), fine_tune_epochs=1))
    result = prune_model.fn(checkpoint, splits, config, QUICK, tmp_path)
    assert result.skipped == ()
    (pruned,) = result.models
    teacher = load_checkpoint(checkpoint)
    assert pruned.name == "pruned-50"
    embeddings = sum(m.weight.numel() for m in teacher.modules() if isinstance(m, torch.nn.Embedding))
    # Half of every prunable layer's width: about a quarter to a half of the weights outside the embeddings left.
    assert pruned.parameters - embeddings < 0.6 * (count_parameters(teacher) - embeddings)
    rebuilt = load_checkpoint(pruned.checkpoint_path)  # the checkpoint alone rebuilds the narrower network
    assert count_parameters(rebuilt) == pruned.parameters
    path = export_onnx(rebuilt, tmp_path / "pruned.onnx")
    assert path.stat().st_size < export_onnx(teacher, tmp_path / "fp32.onnx").stat().st_size
    parity = check_parity.fn(path, pruned.checkpoint_path, splits)
    assert parity.agreement == 1.0 and parity.max_abs_diff < 1e-4


def test_pruning_a_text_transformer_removes_whole_attention_heads(cases, tmp_path):
    splits, checkpoint = cases["text"]
    config = CompressionConfig(pruning=PruningConfig(levels=(0.5,), fine_tune_epochs=0))
    (pruned,) = prune_model.fn(checkpoint, splits, config, QUICK, tmp_path).models
    layers = load_checkpoint(pruned.checkpoint_path).network.layers
    assert [layer.heads for layer in layers] == [2, 2]  # of 4
    assert all(layer.qkv.out_features == 3 * 64 for layer in layers)  # 2 heads x 32 dims, for q, k and v


def custom_linear(tmp_path: Path) -> tuple[DataSplits, Path]:
    """A user's own family: one Linear layer from the inputs to the outputs (tests/custom_networks.py)."""
    frame = table_rows()
    spec, _ = infer_spec(frame, "label")
    spec = spec.model_copy(update={"model": ModelSpec(family="custom", custom="custom_networks:linear")})
    return trained(spec, frame, tmp_path)


def test_a_network_with_nothing_to_narrow_is_skipped_with_the_reason(tmp_path):
    splits, checkpoint = custom_linear(tmp_path)
    result = prune_model.fn(checkpoint, splits, CompressionConfig(), QUICK, tmp_path)
    assert result.models == ()
    assert [s.name for s in result.skipped] == ["pruned-30", "pruned-60"]
    assert "no layer it could narrow" in result.skipped[0].reason


@pytest.mark.parametrize("case", ["table", "digits", "text"])
def test_distillation_trains_a_smaller_student_that_beats_chance(cases, case, tmp_path):
    splits, checkpoint = cases[case]
    config = DistillationConfig(max_epochs=8, text_copies=1)
    (student,) = distill_model.fn(checkpoint, splits, config, QUICK, tmp_path).models
    assert student.parameters < count_parameters(load_checkpoint(checkpoint)) / 2
    model = load_checkpoint(student.checkpoint_path)
    predicted = predict_outputs(model, splits.feeds("validation")).argmax(axis=1)
    truth = splits.targets("validation")
    majority = np.bincount(truth).max() / len(truth)
    assert (predicted == truth).mean() > majority
    parity = check_parity.fn(export_onnx(model, tmp_path / "student.onnx"), student.checkpoint_path, splits)
    assert parity.agreement == 1.0


def test_distillation_loss_follows_the_teacher_at_alpha_one_and_the_labels_at_zero(cases):
    splits, checkpoint = cases["table"]
    model = load_checkpoint(checkpoint)
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    labels, index = torch.tensor([1, 0]), torch.arange(2)
    teacher_only = distillation_loss(logits.clone(), DistillationConfig(alpha=1.0))
    assert teacher_only(model, logits, labels, index).item() == pytest.approx(0.0, abs=1e-6)
    assert teacher_only(model, -logits, labels, index).item() > 0.1
    labels_only = distillation_loss(-logits, DistillationConfig(alpha=0.0))
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert labels_only(model, logits, labels, index).item() == pytest.approx(expected)


def test_altered_texts_keep_the_first_token_and_change_about_a_sixth_of_the_rest(cases):
    splits, checkpoint = cases["text"]
    model = load_checkpoint(checkpoint)
    part = part_tensors(model, splits, "train", splits.targets("train"), torch.device("cpu"))
    altered = altered_texts(part, copies=3)
    rows = len(part.targets)
    assert len(altered.targets) == 4 * rows
    ids_at, mask_at = part.token_inputs
    ids, copies = part.inputs[ids_at], altered.inputs[ids_at][rows:].reshape(3, rows, -1)
    assert torch.equal(altered.inputs[ids_at][:rows], ids)  # the originals come first, unchanged
    assert torch.equal(copies[:, :, 0], ids[:, 0].expand(3, -1))
    real = part.inputs[mask_at].bool()
    changed = (copies != ids) & real
    assert 0.05 < changed.sum().item() / (3 * real.sum().item()) < 0.2


def test_a_custom_family_names_its_student_or_distillation_says_why_not(tmp_path):
    splits, checkpoint = custom_linear(tmp_path)
    result = distill_model.fn(checkpoint, splits, DistillationConfig(), QUICK, tmp_path)
    assert result.models == () and "set compression.distillation.student" in result.skipped[0].reason
    student = ModelSpec(family="tabular_mlp", options={"hidden": [8]})
    result = distill_model.fn(checkpoint, splits, DistillationConfig(student=student, max_epochs=3), QUICK, tmp_path)
    assert [m.name for m in result.models] == ["distilled"] and "tabular_mlp" in result.models[0].how


def test_a_shuffled_labels_drill_reaches_the_student_too(cases):
    # A deliberately useless teacher (gate drills) must not get a student that learned the real labels.
    splits, checkpoint = cases["table"]
    drill = TrainingConfig(shuffle_labels=True, seed=0)
    transfer, _ = transfer_set(load_checkpoint(checkpoint), splits, DistillationConfig(), drill)
    assert np.array_equal(transfer.targets.numpy(), train_targets(splits, drill))
    assert not np.array_equal(transfer.targets.numpy(), splits.targets("train"))
