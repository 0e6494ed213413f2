"""ONNX export stage: one .onnx file taking the spec's raw inputs, checked against PyTorch with ONNX Runtime.

Categorical text -> code lookups are prepended as ai.onnx.ml LabelEncoder nodes built from the training vocabulary;
a text feature's tokenizer goes into the file's metadata (tasks.core.text). The hand-off: docs/pipeline.md.
"""

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.cache import stage_cache_key
from tasks.core.errors import GreenlightError
from tasks.core.spec import CATEGORICAL_INPUT
from tasks.core.text import MAX_LENGTH_KEY, TEXT_IDS, TEXT_MASK, TOKENIZER_KEY
from tasks.data.split import DataSplits
from tasks.model.network import GreenlightModel, load_checkpoint, predict_outputs
from tasks.model.preprocess import MISSING_CODE, OOV_CODE, Vocabulary
from tasks.model.pruning import ShrinkResult, SkippedCandidate
from tasks.onnx.runtime import ParityReport, compare_outputs, run_model

# torch.onnx.export keeps exporter state in module globals: two flows exporting at once in one
# process (threads of a worker, concurrent test runs) fail with "GLOBALS.in_onnx_export must be False".
_EXPORT_LOCK = threading.Lock()
# Opset 17 is read by every ONNX Runtime release of the last three years and has all ops the families need.
OPSET = 17
# LabelEncoder with string keys and int64 values is in ai.onnx.ml since version 2.
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 2
CODES_INPUT = "categorical_codes"  # the torch graph's input, fed by the prepended LabelEncoders
BATCH, SEQUENCE = "batch", "sequence"
# Example token sequences for tracing: long enough that no shape is special-cased as 1.
EXAMPLE_TOKENS = 8


def torch_input_name(name: str) -> str:
    return CODES_INPUT if name == CATEGORICAL_INPUT else name


def example_input(model: GreenlightModel, name: str) -> torch.Tensor:
    """Two rows of one input: zeros, the missing code for categoricals (valid in every vocabulary), and for text
    a full mask over ids 1 (a valid id in every vocabulary)."""
    if name in (TEXT_IDS, TEXT_MASK):
        return torch.ones(2, EXAMPLE_TOKENS, dtype=torch.int64)
    width = model.spec.dataset.onnx_input_width(name)
    if name == CATEGORICAL_INPUT:
        return torch.full((2, width), MISSING_CODE, dtype=torch.int64)
    return torch.zeros(2, width, dtype=torch.float32)


def example_inputs(model: GreenlightModel) -> tuple[torch.Tensor, ...]:
    return tuple(example_input(model, name) for name in model.input_names)


def dynamic_axes(names: list[str], output: str) -> dict[str, dict[int, str]]:
    """Batch is dynamic everywhere; a text's sequence length too."""
    return {name: {0: BATCH, 1: SEQUENCE} if name in (TEXT_IDS, TEXT_MASK) else {0: BATCH} for name in [*names, output]}


def export_torch_graph(model: GreenlightModel, path: Path) -> onnx.ModelProto:
    """The torch model as ONNX with a dynamic batch axis; an exporter failure names the family."""
    names = [torch_input_name(name) for name in model.input_names]
    output = model.spec.dataset.onnx_output
    axes = dynamic_axes(names, output)
    try:
        # The TorchScript exporter: the dynamo one needs onnxscript and gains nothing for these static graphs.
        with _EXPORT_LOCK, warnings.catch_warnings():
            # The exporter's notes on a BERT graph (a traced Python bool in its mask code, advanced indexing):
            # harmless here, and check_parity compares the file with PyTorch on real rows anyway.
            warnings.filterwarnings(
                "ignore", message=r"(Converting a tensor to a Python boolean|Exporting aten::index)"
            )
            torch.onnx.export(
                model.to("cpu").eval(),
                example_inputs(model),
                str(path),
                input_names=names,
                output_names=[output],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as error:  # custom networks can hold anything; the exporter's reason is the answer
        reason = (str(error).strip().splitlines() or [""])[0]
        raise GreenlightError(
            f"model family '{model.spec.model.family}'{describe_custom(model)} could not be exported to ONNX: "
            f"{type(error).__name__}: {reason}. Use operations the TorchScript ONNX exporter supports "
            f"(opset {OPSET}), or another family"
        ) from error
    return onnx.load(str(path))


def describe_custom(model: GreenlightModel) -> str:
    return f" ({model.spec.model.custom})" if model.spec.model.custom else ""


def category_encoder_nodes(vocabularies: tuple[Vocabulary, ...]) -> tuple[list, list]:
    """Per column: Gather the column's texts, LabelEncoder them to codes; then Concat into CODES_INPUT."""
    nodes, initializers, codes = [], [], []
    for i, vocabulary in enumerate(vocabularies):
        mapping = vocabulary.mapping()
        index, texts, code = f"categorical_index_{i}", f"categorical_text_{i}", f"categorical_code_{i}"
        initializers.append(helper.make_tensor(index, TensorProto.INT64, [1], [i]))
        nodes.append(helper.make_node("Gather", [CATEGORICAL_INPUT, index], [texts], axis=1))
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [texts],
                [code],
                domain=ML_DOMAIN,
                name=f"encode_{vocabulary.column}",
                keys_strings=list(mapping),
                values_int64s=list(mapping.values()),
                default_int64=OOV_CODE,
            )
        )
        codes.append(code)
    nodes.append(helper.make_node("Concat", codes, [CODES_INPUT], axis=1))
    return nodes, initializers


def prepend_category_encoders(graph_model: onnx.ModelProto, vocabularies: tuple[Vocabulary, ...]) -> None:
    """Replace the graph's int64 codes input by a string [batch, m] input and the lookups that encode it."""
    graph = graph_model.graph
    nodes, initializers = category_encoder_nodes(vocabularies)
    texts = helper.make_tensor_value_info(CATEGORICAL_INPUT, TensorProto.STRING, [BATCH, len(vocabularies)])
    inputs = [texts if i.name == CODES_INPUT else i for i in graph.input]
    if CODES_INPUT not in {i.name for i in graph.input}:
        inputs.append(texts)  # a network that ignores its codes still takes the spec's input
    del graph.input[:]
    graph.input.extend(inputs)
    graph.initializer.extend(initializers)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    graph_model.opset_import.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))


def export_onnx(model: GreenlightModel, path: Path) -> Path:
    """One self-contained .onnx file (weights inline) taking the spec's raw inputs, checked by onnx."""
    path.parent.mkdir(parents=True, exist_ok=True)
    graph_model = export_torch_graph(model, path)
    if model.preprocessing.vocabularies:
        prepend_category_encoders(graph_model, model.preprocessing.vocabularies)
    if model.preprocessing.text is not None:
        text = model.preprocessing.text
        onnx.helper.set_model_props(
            graph_model, {TOKENIZER_KEY: text.tokenizer_json, MAX_LENGTH_KEY: f"{text.max_length}:{text.truncation}"}
        )
    onnx.checker.check_model(graph_model, full_check=True)
    onnx.save(graph_model, str(path))
    return path


@task(
    name="export_model",
    cache_key_fn=stage_cache_key("export", ignore=["out_dir"], files_of=lambda path: [path]),
    persist_result=True,
)
def export_model(checkpoint_path: Path, out_dir: Path) -> Path:
    """Export the best checkpoint to out_dir/model.onnx with a dynamic batch axis."""
    return export_onnx(load_checkpoint(checkpoint_path), out_dir / "model.onnx")


@dataclass(frozen=True)
class ExportedModel:
    """A smaller torch model (pruned or distilled) as an ONNX file, with its parity against itself."""

    name: str
    onnx_path: Path
    checkpoint_path: Path
    parity: ParityReport
    how: str  # what made it (ShrunkModel.how)
    seconds: float  # pruning + fine-tuning, or distillation


@task(
    name="export_smaller_models",
    cache_key_fn=stage_cache_key("export-smaller", ignore=["out_dir"], files_of=lambda r: [m.onnx_path for m in r[0]]),
    persist_result=True,
)
def export_smaller_models(
    shrunk: list[ShrinkResult], splits: DataSplits, out_dir: Path
) -> tuple[tuple[ExportedModel, ...], tuple[SkippedCandidate, ...]]:
    """Each pruned or distilled model exported like the trained one and checked against its own torch model;
    one the exporter refuses is skipped with its reason. The skipped ones of pruning and distillation pass on."""
    exported, skipped = [], [s for result in shrunk for s in result.skipped]
    for model in (m for result in shrunk for m in result.models):
        torch_model = load_checkpoint(model.checkpoint_path)  # once, for the export and its parity
        try:
            path = export_onnx(torch_model, out_dir / f"{model.name}.onnx")
        except GreenlightError as error:
            skipped.append(SkippedCandidate(model.name, str(error)))
            continue
        parity = parity_against(torch_model, path, splits)
        exported.append(ExportedModel(model.name, path, model.checkpoint_path, parity, model.how, model.seconds))
    return tuple(exported), tuple(skipped)


@task(name="check_parity", cache_policy=NO_CACHE)
def check_parity(onnx_path: Path, checkpoint_path: Path, splits: DataSplits) -> ParityReport:
    """ONNX Runtime on the test rows' raw feeds against PyTorch on the same rows (codes from the vocabulary)."""
    return parity_against(load_checkpoint(checkpoint_path), onnx_path, splits)


def parity_against(model: GreenlightModel, onnx_path: Path, splits: DataSplits) -> ParityReport:
    """The ONNX file's outputs on the test rows against this torch model's."""
    feeds = splits.feeds("test")
    reference = predict_outputs(model, feeds)
    return compare_outputs(splits.spec.task, reference, run_model(onnx_path, feeds), model.target.units_std)
