"""config.pbtxt as `greenlight export triton` writes it, parsed with Triton's own model-config schema (the protobuf
module tritonclient ships) and checked against the ONNX graph it describes; graphs Triton cannot batch or type
are refused by name."""

import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper

from tasks.core.errors import ConfigRejected
from tasks.core.spec import DatasetSpec, FeatureSpec, TargetSpec
from tasks.core.text import TEXT_IDS, TEXT_MASK
from tasks.release.triton import (
    TritonOptions,
    TritonRefused,
    check_against_spec,
    graph_tensors,
    model_config,
)

ONNX_TO_TRITON = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.STRING: "TYPE_STRING", TensorProto.INT64: "TYPE_INT64"}


def graph(inputs: list[tuple[str, int, list]], outputs: list[tuple[str, int, list]]) -> onnx.ModelProto:
    """A graph with these inputs and outputs (name, element type, shape); the nodes do not matter here."""
    values = [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in inputs]
    answers = [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in outputs]
    nodes = [helper.make_node("Constant", [], [name], value_float=0.0) for name, _, _ in outputs]
    return helper.make_model(helper.make_graph(nodes, "g", values, answers))


def table_spec(task: str = "classification") -> DatasetSpec:
    labels = ["no", "yes", "maybe"] if task == "classification" else None
    features = [FeatureSpec(name=f"n{i}", type="numeric") for i in range(3)]
    features += [FeatureSpec(name=f"c{i}", type="categorical", values=["a", "b"]) for i in range(2)]
    return DatasetSpec(target=TargetSpec(name="y", task=task, labels=labels), features=features)


def text_spec() -> DatasetSpec:
    review = FeatureSpec(name="review", type="text", tokenizer="bpe", vocab_size=1000, max_length=64)
    return DatasetSpec(target=TargetSpec(name="y", task="classification", labels=["neg", "pos"]), features=[review])


TABLE = graph(
    [("numeric", TensorProto.FLOAT, ["batch", 3]), ("categorical", TensorProto.STRING, ["batch", 2])],
    [("logits", TensorProto.FLOAT, ["batch", 3])],
)
REGRESSION = graph(
    [("numeric", TensorProto.FLOAT, ["batch", 3]), ("categorical", TensorProto.STRING, ["batch", 2])],
    [("prediction", TensorProto.FLOAT, ["batch"])],
)
TEXT = graph(
    [(TEXT_IDS, TensorProto.INT64, ["batch", "sequence"]), (TEXT_MASK, TensorProto.INT64, ["batch", "sequence"])],
    [("logits", TensorProto.FLOAT, ["batch", 2])],
)


@pytest.fixture(scope="module")
def parsed_config(triton_model_config):
    """config.pbtxt for a graph and its spec, parsed into Triton's ModelConfig."""

    def parse(model: onnx.ModelProto, spec: DatasetSpec, options: TritonOptions | None = None):
        inputs, outputs = graph_tensors(model)
        check_against_spec(inputs, outputs, spec)
        text = model_config("churn", inputs, outputs, options or TritonOptions(), labels=spec.task == "classification")
        return text_format.Parse(text, triton_model_config.ModelConfig())

    return parse


def full_shape(tensor) -> list[int]:
    """A config entry's shape as the graph sees it: the batch axis (-1), then dims (or its reshape)."""
    dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
    return [-1, *dims]


def graph_shape(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize(
    ("model", "spec"), [(TABLE, table_spec()), (REGRESSION, table_spec("regression")), (TEXT, text_spec())]
)
def test_every_input_and_output_matches_the_onnx_graph(
    model: onnx.ModelProto, spec: DatasetSpec, parsed_config, triton_model_config
) -> None:
    config = parsed_config(model, spec)
    assert (config.name, config.platform, config.max_batch_size) == ("churn", "onnxruntime_onnx", 64)
    for entries, values in ((config.input, model.graph.input), (config.output, model.graph.output)):
        assert [entry.name for entry in entries] == [value.name for value in values]
        for entry, value in zip(entries, values, strict=True):
            assert (
                triton_model_config.DataType.Name(entry.data_type) == ONNX_TO_TRITON[value.type.tensor_type.elem_type]
            )
            assert full_shape(entry) == graph_shape(value), entry.name


def test_categorical_values_go_to_triton_as_strings_and_labels_name_the_logits(parsed_config, triton_model_config):
    config = parsed_config(TABLE, table_spec())
    assert triton_model_config.DataType.Name(config.input[1].data_type) == "TYPE_STRING"
    assert config.output[0].label_filename == "labels.txt"
    regression = parsed_config(REGRESSION, table_spec("regression"))
    assert list(regression.output[0].dims) == [1] and not regression.output[0].label_filename


def test_batching_waits_at_most_the_queue_delay_on_the_instances_asked_for(parsed_config, triton_model_config):
    config = parsed_config(TABLE, table_spec())
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    (group,) = config.instance_group
    assert (group.count, triton_model_config.ModelInstanceGroup.Kind.Name(group.kind)) == (1, "KIND_CPU")
    options = TritonOptions(max_batch_size=256, max_queue_delay_us=500, instances=2, gpu=True)
    config = parsed_config(TABLE, table_spec(), options)
    (group,) = config.instance_group
    assert (group.count, triton_model_config.ModelInstanceGroup.Kind.Name(group.kind)) == (2, "KIND_GPU")
    assert config.max_batch_size == 256 and config.dynamic_batching.max_queue_delay_microseconds == 500


def test_a_graph_triton_cannot_batch_or_type_is_refused_by_name() -> None:
    fixed = graph([("numeric", TensorProto.FLOAT, [8, 3])], [("logits", TensorProto.FLOAT, ["batch", 3])])
    with pytest.raises(TritonRefused, match=r"input 'numeric' has shape \[8, 3\], not a dynamic batch axis"):
        graph_tensors(fixed)
    complex_input = graph([("numeric", TensorProto.COMPLEX64, ["batch", 3])], [("logits", TensorProto.FLOAT, ["b", 3])])
    with pytest.raises(TritonRefused, match=r"input 'numeric' is COMPLEX64, a type Triton's ONNX Runtime backend"):
        graph_tensors(complex_input)


def test_a_graph_that_is_not_its_specs_is_refused() -> None:
    inputs, outputs = graph_tensors(TABLE)
    with pytest.raises(TritonRefused, match=r"the graph takes inputs .* but its spec describes"):
        check_against_spec(inputs, outputs, text_spec())
    with pytest.raises(TritonRefused, match=r"not its spec's 'prediction'"):
        check_against_spec(inputs, outputs, table_spec("regression"))


def test_options_out_of_range_are_refused() -> None:
    with pytest.raises(ConfigRejected, match=r"--instances \(0\) must be >= 1"):
        TritonOptions(instances=0)
