"""Preprocessing learned from the training rows: imputation + indicators, scaling, vocabularies with an
out-of-vocabulary code, and the ONNX LabelEncoders computing the very codes numpy computes for training."""

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from onnx import TensorProto, helper

from tasks.core.spec import DatasetSpec, FeatureSpec, TargetSpec
from tasks.model.network import NumericInput
from tasks.model.preprocess import MISSING_CODE, OOV_CODE, Vocabulary, fit_preprocessing
from tasks.onnx.export import CODES_INPUT, ML_DOMAIN, ML_OPSET, category_encoder_nodes
from tasks.onnx.runtime import open_session, run_model


def spec(task: str = "classification") -> DatasetSpec:
    features = [
        FeatureSpec(name="income", type="numeric", nullable=True),
        FeatureSpec(name="age", type="numeric"),
        FeatureSpec(name="plan", type="categorical", nullable=True),
        FeatureSpec(name="member", type="binary"),
    ]
    labels = {"labels": ["no", "yes"]} if task == "classification" else {}
    return DatasetSpec(target=TargetSpec(name="churn", task=task, **labels), features=features)


TRAIN = pd.DataFrame(
    {
        "income": [10.0, np.nan, 30.0, 50.0],
        "age": [40, 40, 40, 40],
        "plan": ["basic", "pro", None, "basic"],
        "member": [True, False, True, True],
    }
)


def fitted(task: str = "classification", targets=(0, 1, 0, 1)):
    dataset = spec(task)
    return dataset, fit_preprocessing(dataset, dataset.feeds(TRAIN), np.array(targets, dtype=float))


def test_numeric_missing_values_are_imputed_with_the_training_median_and_flagged():
    _, preprocessing = fitted()
    stats = preprocessing.numeric
    assert stats.median[0] == 30.0  # median of 10, 30, 50: the NaN row does not count
    assert stats.nullable == (True, False) and stats.width == 3  # one indicator, for the nullable column only
    layer = NumericInput(stats)
    out = layer(torch.tensor([[np.nan, 40.0], [30.0, 40.0]], dtype=torch.float32)).numpy()
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[0, :2], out[1, :2])  # imputed exactly like the median itself
    assert out[:, 2].tolist() == [1.0, 0.0]


def test_a_nullable_datetime_is_imputed_and_flagged_part_by_part():
    when = FeatureSpec(name="when", type="datetime", nullable=True, parts=["month", "elapsed"], min="2024-01-01")
    dataset = DatasetSpec(target=TargetSpec(name="y", task="regression"), features=[when, spec().features[1]])
    frame = TRAIN.assign(when=["2024-02-01", None, "2024-04-01", "2024-03-01T12:00:00"])
    stats = fit_preprocessing(dataset, dataset.feeds(frame), np.zeros(4)).numeric
    assert stats.columns == ("when.month", "when.elapsed", "age") and stats.nullable == (True, True, False)
    assert stats.median[:2] == (3.0, 60.5) and stats.width == 5  # 1 Mar noon: 60.5 days after 1 Jan 2024


def test_a_constant_column_is_scaled_by_one_not_divided_by_zero():
    _, preprocessing = fitted()
    assert preprocessing.numeric.std[1] == 1.0
    out = NumericInput(preprocessing.numeric)(torch.tensor([[20.0, 40.0]])).numpy()
    assert np.isfinite(out).all() and out[0, 1] == 0.0


def test_vocabulary_codes_unseen_missing_and_known_values():
    _, preprocessing = fitted()
    plan, member = preprocessing.vocabularies
    assert plan.categories == ("basic", "pro") and member.categories == ("false", "true")
    codes = plan.codes(np.array(["pro", "", "enterprise", "basic"], dtype=object))
    assert codes.tolist() == [3, MISSING_CODE, OOV_CODE, 2]


def test_regression_target_scale_comes_from_the_training_targets():
    _, preprocessing = fitted("regression", targets=(100.0, 200.0, 300.0, 400.0))
    assert preprocessing.target.mean == 250.0 and preprocessing.target.std == pytest.approx(111.803, rel=1e-4)
    assert fitted()[1].target is None


def test_the_checkpoint_form_reads_back_to_the_same_values():
    _, preprocessing = fitted("regression", targets=(1.0, 2.0, 3.0, 5.0))
    assert type(preprocessing).from_dict(preprocessing.to_dict()) == preprocessing


def encoder_session(vocabularies: tuple[Vocabulary, ...]):
    nodes, initializers = category_encoder_nodes(vocabularies)
    graph = helper.make_graph(
        nodes,
        "encode",
        [helper.make_tensor_value_info("categorical", TensorProto.STRING, ["batch", len(vocabularies)])],
        [helper.make_tensor_value_info(CODES_INPUT, TensorProto.INT64, ["batch", len(vocabularies)])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(ML_DOMAIN, ML_OPSET)]
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.checker.check_model(model, full_check=True)
    return open_session(model.SerializeToString())


def test_onnx_label_encoders_compute_the_same_codes_as_training():
    dataset, preprocessing = fitted()
    serving = pd.DataFrame(
        {
            "income": [1.0] * 5,
            "age": [1] * 5,
            "plan": ["pro", None, "enterprise", " basic ", np.nan],
            "member": [False, True, None, "true", 1],
        }
    )
    feeds = dataset.feeds(serving)
    expected = preprocessing.codes(feeds)
    assert expected[:, 0].tolist() == [3, MISSING_CODE, OOV_CODE, 2, MISSING_CODE]
    assert expected[:, 1].tolist() == [2, 3, MISSING_CODE, 3, OOV_CODE]  # 1 is not a value seen in training
    got = run_model(encoder_session(preprocessing.vocabularies), {"categorical": feeds["categorical"]})
    np.testing.assert_array_equal(got, expected)
