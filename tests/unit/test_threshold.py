"""A binary model's decision threshold: tuned on the validation rows for the minority class's F1, kept only when
it gains enough over argmax, and served inside the model (checkpoint and ONNX graph) as a logit offset."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.core.spec import DatasetSpec, FeatureSpec, ModelSpec, Spec, TargetSpec
from tasks.data.parts import DataSplits
from tasks.model.network import GreenlightModel, load_checkpoint, predict_outputs, save_checkpoint
from tasks.model.preprocess import fit_preprocessing
from tasks.model.threshold import MIN_F1_GAIN, choose_threshold, set_threshold, tune_decision_threshold
from tasks.model.training import TrainedModel
from tasks.onnx.export import export_onnx
from tasks.onnx.runtime import run_model

LABELS = ["stays", "leaves"]


def probabilities(majority: int, minority: int, low: float, high: float, seed: int = 0):
    """Class-1 probabilities: the majority's spread under 0.2, the minority's between low and high."""
    rng = np.random.default_rng(seed)
    class1 = np.concatenate([rng.uniform(0.01, 0.2, majority), rng.uniform(low, high, minority)])
    return class1, np.array([0] * majority + [1] * minority)


def test_a_threshold_that_catches_a_minority_argmax_misses_is_kept_and_says_why():
    class1, targets = probabilities(54, 6, 0.3, 0.45)  # argmax (0.5) answers 'leaves' for none of them
    choice = choose_threshold(class1, targets, 1, LABELS)
    assert choice.tuned and 0.2 < choice.threshold <= 0.3
    assert choice.f1_at_argmax == 0.0 and choice.f1_at_best == 1.0
    assert choice.reason.startswith(
        f"threshold {choice.threshold:.3f} on p(leaves): minority F1 0.000 -> 1.000, accuracy 0.9000 -> 1.0000"
    )
    assert choice.reason.endswith("on 60 validation rows, 6 of minority class 'leaves'")


def test_argmax_stays_when_it_is_already_best_or_a_threshold_gains_less_than_the_margin():
    class1, targets = probabilities(54, 6, 0.6, 0.9)
    best = choose_threshold(class1, targets, 1, LABELS)
    assert not best.tuned and best.threshold == 0.5 and best.reason.startswith("argmax:")
    class1, targets = probabilities(200, 200, 0.9, 0.99)
    class1[-2:] = 0.45  # two of 200 minority rows just under 0.5: F1 0.995 at argmax, 1.0 at 0.3
    small = choose_threshold(class1, targets, 1, LABELS)
    assert small.f1_at_best - small.f1_at_argmax < MIN_F1_GAIN and small.f1_at_best == 1.0
    assert small.threshold == 0.5 and f"under {MIN_F1_GAIN}" in small.reason


def test_a_cut_that_costs_more_than_half_a_point_of_accuracy_is_not_taken_however_much_f1_it_gains():
    # 1,000 rows, 50 'leaves' and 100 'stays' all scored 0.4: a cut that catches those 50 'leaves' answers
    # 'leaves' for the 100 'stays' too (minority F1 0 -> 0.5, accuracy 0.95 -> 0.90).
    class1, targets = probabilities(950, 50, 0.4, 0.4)
    class1[:100] = 0.4
    assert choose_threshold(class1, targets, 1, LABELS).threshold == 0.5
    from tasks.model import threshold

    unconstrained = threshold.MAX_ACCURACY_COST
    try:
        threshold.MAX_ACCURACY_COST = 1.0
        assert choose_threshold(class1, targets, 1, LABELS).tuned  # the F1-best cut alone would have moved
    finally:
        threshold.MAX_ACCURACY_COST = unconstrained


def test_when_the_minority_is_class_0_the_cut_moves_above_one_half():
    class1, targets = probabilities(54, 6, 0.3, 0.45)
    choice = choose_threshold(1 - class1, 1 - targets, 0, LABELS)  # 'stays' rare, its class-1 probability 0.55+
    assert choice.tuned and 0.7 <= choice.threshold < 0.8 and choice.minority == "stays"


def churn_splits(seed: int = 0) -> DataSplits:
    """A score column where 'leaves' (10 %) scores higher, in train / validation / test frames."""
    rng = np.random.default_rng(seed)
    rows = 300
    leaves = rng.random(rows) < 0.1
    frame = pd.DataFrame(
        {"score": np.where(leaves, 1.2, -0.2) + rng.normal(0, 0.3, rows), "churn": np.where(leaves, *LABELS[::-1])}
    )
    dataset = DatasetSpec(
        target=TargetSpec(name="churn", task="classification", labels=LABELS),
        features=[FeatureSpec(name="score", type="numeric")],
    )
    return DataSplits(dataset, frame.iloc[:150], frame.iloc[150:225], frame.iloc[225:])


def timid_model(splits: DataSplits) -> GreenlightModel:
    """A linear model that ranks 'leaves' right but answers it only far above the training mean (bias -4)."""
    spec = Spec(dataset=splits.spec, model=ModelSpec(family="custom", custom="custom_networks:linear"))
    model = GreenlightModel(spec, fit_preprocessing(splits.spec, splits.feeds("train"), splits.targets("train")))
    with torch.no_grad():
        model.network.linear.weight.copy_(torch.tensor([[0.0], [1.0]]))
        model.network.linear.bias.copy_(torch.tensor([0.0, -4.0]))
    return model.eval()


def test_the_tuned_threshold_is_written_into_the_checkpoint_and_the_onnx_graph_answers_with_it(tmp_path):
    splits = churn_splits()
    model = timid_model(splits)
    feeds, targets = splits.feeds("validation"), splits.targets("validation")
    raw = predict_outputs(model, feeds)
    assert raw.argmax(axis=1).sum() < (targets == 1).sum() / 2  # argmax answers 'leaves' for under half of them
    path = save_checkpoint(model, model.state_dict(), tmp_path / "best.pt")
    trained = TrainedModel(path, "custom", 1, (), "cpu", 0.1, "accuracy")

    served_model, choice = tune_decision_threshold.fn(trained, splits)
    assert choice.tuned and choice.minority == "leaves" and choice.f1_at_best >= choice.f1_at_argmax + MIN_F1_GAIN
    assert served_model.checkpoint_path == tmp_path / "thresholded.pt" and served_model.family == "custom"
    assert load_checkpoint(path).logit_offset.tolist() == [0.0, 0.0]  # the trained checkpoint is left as it was
    tuned = load_checkpoint(served_model.checkpoint_path)
    offset = math.log(choice.threshold / (1 - choice.threshold))
    assert tuned.logit_offset.tolist() == pytest.approx([0.0, offset])
    served = predict_outputs(tuned, feeds)
    class1 = torch.softmax(torch.from_numpy(raw), dim=1).numpy()[:, 1]
    np.testing.assert_array_equal(served.argmax(axis=1), (class1 > choice.threshold).astype(int))
    assert served.argmax(axis=1)[targets == 1].mean() > 0.5  # most 'leaves' rows are now answered 'leaves'

    onnx_path = export_onnx(tuned, tmp_path / "model.onnx")
    onnx_outputs = run_model(onnx_path, feeds)
    np.testing.assert_allclose(onnx_outputs, served, atol=1e-5)
    np.testing.assert_array_equal(onnx_outputs.argmax(axis=1), served.argmax(axis=1))


def test_set_threshold_one_half_is_argmax_and_the_loss_never_sees_the_offset():
    splits = churn_splits()
    model = set_threshold(timid_model(splits), 0.2)
    inputs = [
        torch.from_numpy(np.ascontiguousarray(v))
        for v in model.preprocessing.model_inputs(splits.feeds("test")).values()
    ]
    with torch.no_grad():
        network, served = model.network_output(*inputs), model(*inputs)
    np.testing.assert_allclose((network - served).numpy(), np.tile([0.0, math.log(0.2 / 0.8)], (len(network), 1)))
    assert set_threshold(model, 0.5).logit_offset.tolist() == [0.0, 0.0]


def test_a_three_class_model_keeps_argmax_and_its_checkpoint(tmp_path):
    splits = churn_splits()
    three = DatasetSpec(
        target=TargetSpec(name="churn", task="classification", labels=[*LABELS, "paused"]),
        features=splits.spec.features,
    )
    three_splits = DataSplits(three, splits.train, splits.validation, splits.test)
    spec = Spec(dataset=three, model=ModelSpec(family="custom", custom="custom_networks:linear"))
    model = GreenlightModel(spec, fit_preprocessing(three, three_splits.feeds("train"), three_splits.targets("train")))
    path = save_checkpoint(model, model.state_dict(), tmp_path / "best.pt")
    trained = TrainedModel(path, "custom", 1, (), "cpu", 0.1, "accuracy")
    served_model, choice = tune_decision_threshold.fn(trained, three_splits)
    assert served_model is trained and not choice.tuned and "two classes" in choice.reason


@pytest.mark.parametrize("minority", [0, 1])
def test_the_f1_the_cut_is_chosen_on_is_sklearns(minority):
    from sklearn.metrics import f1_score

    from tasks.model.threshold import minority_f1

    class1, targets = probabilities(80, 20, 0.1, 0.7, seed=3)
    cuts = np.array([0.0, 0.15, 0.3, 0.5, 0.99])
    expected = [
        f1_score(targets, (class1 > cut).astype(int), labels=[minority], average=None, zero_division=0)[0]
        for cut in cuts
    ]
    np.testing.assert_allclose(minority_f1(class1, targets, cuts, minority), expected)


def test_a_refit_that_learned_the_validation_rows_serves_the_cut_its_held_out_twin_chose(tmp_path):
    splits = churn_splits()
    held_out = timid_model(splits)
    refit = timid_model(splits)
    with torch.no_grad():  # surer of itself, as a model is on rows it learned
        refit.network.linear.weight.copy_(torch.tensor([[0.0], [3.0]]))
    twin = save_checkpoint(held_out, held_out.state_dict(), tmp_path / "train-only" / "best.pt")
    served = save_checkpoint(refit, refit.state_dict(), tmp_path / "refit" / "best.pt")
    trained = TrainedModel(served, "custom", 1, (), "cpu", 0.1, "accuracy", held_out_checkpoint=twin)

    answer, choice = tune_decision_threshold.fn(trained, splits)
    from tasks.model.threshold import tune_threshold

    assert choice == tune_threshold(held_out, splits) and choice.tuned
    assert tune_threshold(refit, splits).threshold != choice.threshold  # its own rows would have cut elsewhere
    assert answer.checkpoint_path == tmp_path / "refit" / "thresholded.pt" and answer.held_out_checkpoint == twin
    thresholded = load_checkpoint(answer.checkpoint_path)
    assert thresholded.network.linear.weight[1, 0].item() == 3.0  # the refit's network serves the twin's cut
    assert thresholded.logit_offset[1].item() == pytest.approx(math.log(choice.threshold / (1 - choice.threshold)))
