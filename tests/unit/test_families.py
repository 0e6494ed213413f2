"""Model families: each builds for a spec, exports to the ONNX hand-off, and refuses what it cannot build
with a message naming what was wrong; the checkpoint rebuilds the whole model alone (training one:
tests/model/test_training_loop.py)."""

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.core.spec import DatasetSpec, FeatureSpec, ModelSpec, Spec, TargetSpec, digits_spec
from tasks.model.network import GreenlightModel, load_checkpoint, predict_outputs, save_checkpoint
from tasks.model.preprocess import TargetScale, fit_preprocessing
from tasks.onnx.export import export_onnx
from tasks.onnx.runtime import run_model

ROWS = pd.DataFrame(
    {
        "tenure": [1.0, 5.0, np.nan, 12.0, 30.0, 2.0],
        "charges": [70.1, 20.5, 55.0, 99.9, 35.2, 80.0],
        "contract": ["monthly", "yearly", "monthly", None, "two-year", "monthly"],
        "paperless": [True, False, True, True, False, False],
    }
)


def table_spec(task: str = "classification", family: str = "tabular_mlp", **model) -> Spec:
    features = [
        FeatureSpec(name="tenure", type="numeric", nullable=True),
        FeatureSpec(name="charges", type="numeric"),
        FeatureSpec(name="contract", type="categorical", nullable=True),
        FeatureSpec(name="paperless", type="binary"),
    ]
    labels = {"labels": ["stays", "leaves"]} if task == "classification" else {}
    dataset = DatasetSpec(target=TargetSpec(name="churn", task=task, **labels), features=features)
    return Spec(dataset=dataset, model=ModelSpec(family=family, **model))


def build(spec: Spec, frame: pd.DataFrame = ROWS) -> GreenlightModel:
    feeds = spec.dataset.feeds(frame)
    targets = np.arange(len(frame), dtype=float)
    return GreenlightModel(spec, fit_preprocessing(spec.dataset, feeds, targets)).eval()


def digits_rows() -> pd.DataFrame:
    pixels = np.random.default_rng(0).integers(0, 17, (4, 64))
    return pd.DataFrame(pixels, columns=digits_spec().dataset.input_columns)


@pytest.mark.parametrize(
    ("spec", "frame", "output_shape"),
    [
        (table_spec(), ROWS, (6, 2)),
        (table_spec("regression"), ROWS, (6,)),
        (table_spec(family="custom", custom="custom_networks:linear"), ROWS, (6, 2)),
        (digits_spec(), digits_rows(), (4, 10)),
    ],
    ids=["tabular_mlp", "tabular_mlp-regression", "custom", "image_cnn"],
)
def test_each_family_exports_the_spec_hand_off_and_matches_pytorch(spec, frame, output_shape, tmp_path):
    model = build(spec, frame)
    feeds = spec.dataset.feeds(frame)
    path = export_onnx(model, tmp_path / "model.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == list(spec.dataset.onnx_inputs())
    assert [o.name for o in graph.output] == [spec.dataset.onnx_output]
    onnx_out = run_model(path, feeds)
    assert onnx_out.shape == output_shape
    np.testing.assert_allclose(onnx_out, predict_outputs(model, feeds), atol=1e-5)


def test_regression_prediction_is_in_the_target_units(tmp_path):
    spec = table_spec("regression")
    model = build(spec)
    model.target = TargetScale(mean=1000.0, std=10.0)  # as if learned from targets around 1,000
    path = export_onnx(model, tmp_path / "model.onnx")
    predictions = run_model(path, spec.dataset.feeds(ROWS))
    assert np.all(np.abs(predictions - 1000.0) < 100.0)


def test_the_checkpoint_rebuilds_the_whole_model_alone(tmp_path):
    model = build(table_spec(family="tabular_mlp", options={"hidden": [16], "dropout": 0.0}))
    path = save_checkpoint(model, model.state_dict(), tmp_path / "best.pt")
    loaded = load_checkpoint(path)
    assert loaded.spec == model.spec and loaded.preprocessing == model.preprocessing
    feeds = model.spec.dataset.feeds(ROWS)
    np.testing.assert_array_equal(predict_outputs(loaded, feeds), predict_outputs(model, feeds))
    assert torch.load(path, weights_only=True)["family"] == "tabular_mlp"


def test_an_unknown_option_is_refused_by_name():
    with pytest.raises(ConfigRejected, match="hiden") as refused:
        build(table_spec(options={"hiden": [32]}))
    assert "known options: hidden, dropout, max_embedding_dim" in str(refused.value)


def test_an_unknown_family_is_refused_with_the_known_ones():
    with pytest.raises(ConfigRejected, match=r"unknown model family 'xgboost'.*tabular_mlp"):
        build(table_spec(family="xgboost"))


def test_the_cnn_refuses_a_table():
    with pytest.raises(ConfigRejected, match="needs an image or image_grid feature"):
        build(table_spec(family="image_cnn"))


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_such_module:linear", "module 'no_such_module' could not be imported"),
        ("custom_networks:missing", "has no function 'missing'"),
        ("custom_networks:not_a_module", "returned a str; it must return a torch.nn.Module"),
        ("custom_networks:raises", "raised ValueError: needs at least 3 numeric columns"),
        ("custom_networks:takes_one_input", "failed on a probe batch"),
    ],
)
def test_a_custom_builder_that_does_not_keep_the_contract_is_refused(reference, message):
    with pytest.raises(ConfigRejected, match=message) as refused:
        build(table_spec(family="custom", custom=reference))
    assert reference in str(refused.value)


def test_a_custom_output_of_the_wrong_shape_is_refused():
    with pytest.raises(ConfigRejected, match=r"returned shape \[3, 3\] for 3 rows; expected \[3, 2\]"):
        build(table_spec(family="custom", custom="custom_networks:one_output_too_many"))


def test_a_custom_network_onnx_cannot_express_is_refused_at_export_naming_it(tmp_path):
    model = build(table_spec(family="custom", custom="custom_networks:not_exportable"))
    with pytest.raises(GreenlightError, match=r"'custom' \(custom_networks:not_exportable\) could not be exported.*i0"):
        export_onnx(model, tmp_path / "model.onnx")
