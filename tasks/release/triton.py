"""Triton export: a model repository serving a registered version's ONNX file with Triton's ONNX Runtime backend.

`export_triton` writes NAME/config.pbtxt (inputs and outputs from the graph, checked against the spec),
NAME/1/model.onnx (its sha256, and its signature where a verify key is set, checked as a service checks them:
handoff.verified_onnx), and labels.txt or tokenizer.json where the model has them.
"""

import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import onnx
from google.protobuf import text_format
from google.protobuf.message import Message

from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.core.spec import CATEGORICAL_INPUT, NUMERIC_INPUT, PIXELS_INPUT, TEXT_INPUT, DatasetSpec
from tasks.core.text import TEXT_IDS, TEXT_MASK, TOKENIZER_KEY
from tasks.registry.client import read_version_spec
from tasks.release.handoff import ExportedVersion, staged_folder, verified_onnx

# ONNX element type -> Triton's (model_config.proto DataType); the rest (complex, float8, ...) Triton cannot take.
TRITON_TYPES = {
    "FLOAT": "TYPE_FP32",
    "DOUBLE": "TYPE_FP64",
    "FLOAT16": "TYPE_FP16",
    "BFLOAT16": "TYPE_BF16",
    "INT64": "TYPE_INT64",
    "INT32": "TYPE_INT32",
    "INT16": "TYPE_INT16",
    "INT8": "TYPE_INT8",
    "UINT64": "TYPE_UINT64",
    "UINT32": "TYPE_UINT32",
    "UINT16": "TYPE_UINT16",
    "UINT8": "TYPE_UINT8",
    "BOOL": "TYPE_BOOL",
    "STRING": "TYPE_STRING",
}

# The spec's hand-off (tasks.core.spec) as Triton types; a text feature reaches the graph as int64 token ids.
INPUT_TYPES = {NUMERIC_INPUT: "TYPE_FP32", CATEGORICAL_INPUT: "TYPE_STRING", PIXELS_INPUT: "TYPE_FP32"}


class TritonRefused(GreenlightError):
    """The graph has an input or output Triton's ONNX Runtime backend cannot serve as written."""


@dataclass(frozen=True)
class TritonTensor:
    """One input or output as config.pbtxt states it: dims without the batch axis (-1: any size)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class TritonOptions:
    # 64 rows is the batch the gate's serving check and the compression stage time the served file at.
    max_batch_size: int = 64
    # A request waits at most 0.1 ms for others: the small families answer a row in ~0.01-0.04 ms on a CPU.
    max_queue_delay_us: int = 100
    instances: int = 1
    gpu: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise ConfigRejected(
                f"--max-batch-size ({self.max_batch_size}) and --instances ({self.instances}) must be >= 1, "
                f"--max-queue-delay-us ({self.max_queue_delay_us}) >= 0"
            )


@dataclass(frozen=True)
class TritonExport:
    out: Path
    config: Path
    model: Path
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]


def triton_tensor(value: onnx.ValueInfoProto, kind: str) -> TritonTensor:
    """A graph input or output as Triton sees it; refused with the reason when Triton could not batch or type it."""
    tensor = value.type.tensor_type
    type_name = onnx.TensorProto.DataType.Name(tensor.elem_type)
    if type_name not in TRITON_TYPES:
        raise TritonRefused(f"{kind} '{value.name}' is {type_name}, a type Triton's ONNX Runtime backend does not take")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    if not dims or dims[0] != -1:
        raise TritonRefused(
            f"{kind} '{value.name}' has shape {dims or '[]'}, not a dynamic batch axis first: Triton batches along it"
        )
    return TritonTensor(value.name, TRITON_TYPES[type_name], tuple(dims[1:]))


def graph_tensors(model: onnx.ModelProto) -> tuple[tuple[TritonTensor, ...], tuple[TritonTensor, ...]]:
    """The graph's inputs (initializers excluded: older exporters list weights as inputs) and outputs."""
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = tuple(triton_tensor(value, "input") for value in model.graph.input if value.name not in weights)
    return inputs, tuple(triton_tensor(value, "output") for value in model.graph.output)


def check_against_spec(inputs: tuple[TritonTensor, ...], outputs: tuple[TritonTensor, ...], spec: DatasetSpec) -> None:
    """The graph takes the spec's hand-off (tasks.core.spec) and answers its output, with the spec's widths."""
    expected = {
        name: (INPUT_TYPES[name], (spec.onnx_input_width(name),)) for name in spec.onnx_inputs() if name != TEXT_INPUT
    }
    if TEXT_INPUT in spec.onnx_inputs():
        expected |= {TEXT_IDS: ("TYPE_INT64", (-1,)), TEXT_MASK: ("TYPE_INT64", (-1,))}  # [batch, sequence]
    found = {tensor.name: (tensor.data_type, tensor.dims) for tensor in inputs}
    if found != expected:
        raise TritonRefused(f"the graph takes inputs {found} but its spec describes {expected} (name: type, dims)")
    if spec.onnx_output not in {tensor.name for tensor in outputs}:
        raise TritonRefused(f"the graph answers {[t.name for t in outputs]}, not its spec's '{spec.onnx_output}'")


@cache
def model_config_schema() -> ModuleType:
    """Triton's model-config protobuf module (model_config.proto, generated) as tritonclient ships it.

    Loaded by path: importing tritonclient.grpc imports grpcio, which the schema does not need (and tritonclient's
    grpc extra pins protobuf < 7, where onnx and mlflow run on 7)."""
    try:
        import tritonclient
    except ImportError as missing:
        raise GreenlightError(
            "the Triton export writes config.pbtxt with tritonclient's model-config schema, and tritonclient is not"
            " installed: pip install tritonclient (no extra needed)"
        ) from missing
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_config(
    name: str, inputs: tuple[TritonTensor, ...], outputs: tuple[TritonTensor, ...], options: TritonOptions, labels: bool
) -> str:
    """config.pbtxt: the ModelConfig message in protobuf text format, after a comment on where it came from."""
    notes = ["# Written by `greenlight export triton`: inputs and outputs are the graph's, checked against its spec."]
    if any(tensor.name == TEXT_IDS for tensor in inputs):
        notes.append("# text_ids / text_mask: token ids and attention mask made with tokenizer.json. Triton batches")
        notes.append("# requests of equal sequence length together: pad every text to one length to batch them all.")
    message = model_config_message(name, inputs, outputs, options, labels)
    return "\n".join(notes) + "\n" + text_format.MessageToString(message)


def model_config_message(
    name: str, inputs: tuple[TritonTensor, ...], outputs: tuple[TritonTensor, ...], options: TritonOptions, labels: bool
) -> Message:
    """Triton's ModelConfig for the graph: the ONNX Runtime backend, dynamic batching, one instance group."""
    schema = model_config_schema()
    config = schema.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=options.max_batch_size)
    for tensor in inputs:
        add_tensor(config.input, tensor, schema)
    for tensor in outputs:
        entry = add_tensor(config.output, tensor, schema)
        if labels and tensor.dims:  # Triton's classification extension names the logits by labels.txt's lines
            entry.label_filename = "labels.txt"
    config.dynamic_batching.SetInParent()  # present even at a zero delay: its presence turns batching on
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    kind = schema.ModelInstanceGroup.KIND_GPU if options.gpu else schema.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=options.instances, kind=kind)
    return config


def add_tensor(entries, tensor: TritonTensor, schema: ModuleType) -> Message:
    """Append a ModelInput or ModelOutput for the tensor to the config's repeated field; returns it."""
    entry = entries.add(name=tensor.name, data_type=schema.DataType.Value(tensor.data_type))
    # A graph tensor of shape [batch] has no other axis: Triton wants dims [1] reshaped to [].
    entry.dims.extend(tensor.dims or (1,))
    if not tensor.dims:
        entry.reshape.SetInParent()
    return entry


def export_triton(exported: ExportedVersion, options: TritonOptions, out: Path) -> TritonExport:
    """Write the model repository for the version into `out`, whole or not at all."""
    ref = exported.ref
    spec = read_version_spec(ref)
    if spec is None:
        raise GreenlightError(f"{ref.uri} records no spec, so its inputs cannot be checked; re-run the pipeline")
    with tempfile.TemporaryDirectory(prefix="greenlight-triton-") as download, staged_folder(out) as staging:
        source = verified_onnx(exported, Path(download))
        graph = onnx.load(str(source), load_external_data=False)
        inputs, outputs = graph_tensors(graph)
        check_against_spec(inputs, outputs, spec.dataset)
        model_dir = staging / ref.name
        (model_dir / "1").mkdir(parents=True)
        shutil.copyfile(source, model_dir / "1" / "model.onnx")
        labels = spec.dataset.task == "classification"
        (model_dir / "config.pbtxt").write_text(model_config(ref.name, inputs, outputs, options, labels))
        if labels:
            (model_dir / "labels.txt").write_text("".join(f"{label}\n" for label in spec.dataset.label_texts()))
        metadata = {entry.key: entry.value for entry in graph.metadata_props}
        if TOKENIZER_KEY in metadata:
            (model_dir / "tokenizer.json").write_text(metadata[TOKENIZER_KEY])
    model_dir = out / ref.name
    return TritonExport(out, model_dir / "config.pbtxt", model_dir / "1" / "model.onnx", inputs, outputs)
