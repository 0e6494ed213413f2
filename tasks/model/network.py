"""The whole model as one torch module: learned preprocessing, the family's network, the output in the
target's units. What is trained is what is exported, so the ONNX graph carries the preprocessing too.

The checkpoint holds the spec, the preprocessing, the weights and every module's sizes (a pruned model is
narrower than its options say), so load_checkpoint rebuilds the model from the file alone.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tasks.core.errors import GreenlightError
from tasks.core.spec import CATEGORICAL_INPUT, NUMERIC_INPUT, PIXELS_INPUT, TEXT_INPUT, Spec
from tasks.core.text import TEXT_IDS, TEXT_MASK
from tasks.model.families import InputDescription, TextDescription, build_network
from tasks.model.preprocess import OOV_CODE, ImageScale, NumericStats, Preprocessing, TargetScale

CHECKPOINT_FORMAT = "greenlight-checkpoint/1"
# Share of training codes replaced by the out-of-vocabulary code, so that code's embedding learns "a value
# not seen in training" instead of keeping its random initialisation; 2% barely dents the known categories.
OOV_TRAINING_RATE = 0.02


class NumericInput(nn.Module):
    """Median imputation, standardisation, then a 0/1 missing indicator per nullable column."""

    def __init__(self, stats: NumericStats) -> None:
        super().__init__()
        self.register_buffer("median", torch.tensor(stats.median, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(stats.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(stats.std, dtype=torch.float32))
        nullable = [i for i, flag in enumerate(stats.nullable) if flag]
        self.register_buffer("nullable", torch.tensor(nullable, dtype=torch.int64))
        self.has_indicators = bool(nullable)  # a Python flag: the exported graph has no branch

    def forward(self, values: Tensor) -> Tensor:
        missing = torch.isnan(values)
        scaled = (torch.where(missing, self.median, values) - self.mean) / self.std
        if not self.has_indicators:
            return scaled
        return torch.cat([scaled, missing[:, self.nullable].to(scaled.dtype)], dim=1)


class ImageInput(nn.Module):
    """An image grid's raw values to 0..1 with the spec's domain."""

    def __init__(self, scale: ImageScale) -> None:
        super().__init__()
        self.low, self.span = scale.low, scale.high - scale.low

    def forward(self, pixels: Tensor) -> Tensor:
        return (pixels - self.low) / self.span


def describe_inputs(spec: Spec, preprocessing: Preprocessing) -> InputDescription:
    """What the family's network receives, from the spec and what was learned from the training split."""
    dataset, image, text = spec.dataset, preprocessing.image, preprocessing.text
    numeric_width = preprocessing.numeric.width if preprocessing.numeric else 0
    return InputDescription(
        task=dataset.task,
        n_outputs=len(dataset.label_texts()) if dataset.task == "classification" else 1,
        numeric_width=image.channels * image.height * image.width if image else numeric_width,
        categorical_cardinalities=tuple(v.cardinality for v in preprocessing.vocabularies),
        image_shape=(image.channels, image.height, image.width) if image else None,
        options=dict(spec.model.options),
        text=TextDescription(text.kind, text.vocab_size, text.max_length) if text else None,
        training_rows=preprocessing.rows,
    )


def graph_input_names(spec: Spec) -> list[str]:
    """The torch model's inputs: the ONNX hand-off's names, a text feature as its ids and mask."""
    names = []
    for name in spec.dataset.onnx_inputs():
        names += [TEXT_IDS, TEXT_MASK] if name == TEXT_INPUT else [name]
    return names


class GreenlightModel(nn.Module):
    """Preprocessing + network + output layer; forward(*inputs) in input_names order -> ONNX's output."""

    def __init__(self, spec: Spec, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.spec, self.preprocessing = spec, preprocessing
        self.input_names = graph_input_names(spec)
        self.numeric = NumericInput(preprocessing.numeric) if preprocessing.numeric else None
        self.image = ImageInput(preprocessing.image) if preprocessing.image else None
        self.network = build_network(spec.model, describe_inputs(spec, preprocessing))
        # How a regression output becomes the target's units (classification: the identity, never used).
        self.target = preprocessing.target or TargetScale(mean=0.0, std=1.0)
        # Subtracted from the logits: zeros, or a binary model's tuned decision threshold t as [0, logit(t)]
        # (tasks.model.threshold), so argmax over what is served answers class 1 when p1 > t. A buffer: the
        # checkpoint and the ONNX graph carry it, and the loss (on network_output) never sees it.
        self.register_buffer("logit_offset", torch.zeros(len(spec.dataset.label_texts())))

    def network_output(self, *inputs: Tensor) -> Tensor:
        """The network's own output: logits, or the standardised target (what the loss is computed on)."""
        return self.network(*self.network_inputs(*inputs))

    def network_inputs(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """What the family's network is called with (contract.py): (numeric, codes), plus (ids, mask) for text."""
        named = dict(zip(self.input_names, inputs, strict=True))
        rows = inputs[0].shape[0]
        if self.numeric is not None:
            numeric = self.numeric(named[NUMERIC_INPUT])
        elif self.image is not None:
            numeric = self.image(named[PIXELS_INPUT])
        else:
            numeric = inputs[0].new_zeros((rows, 0), dtype=torch.float32)
        codes = named.get(CATEGORICAL_INPUT)
        if codes is None:
            codes = torch.zeros((rows, 0), dtype=torch.int64, device=inputs[0].device)
        elif self.training and OOV_TRAINING_RATE > 0:
            codes = torch.where(torch.rand(codes.shape, device=codes.device) < OOV_TRAINING_RATE, OOV_CODE, codes)
        if TEXT_IDS in named:
            return numeric, codes, named[TEXT_IDS], named[TEXT_MASK]
        return numeric, codes

    def in_target_units(self, output: Tensor) -> Tensor:
        """Logits less the decision threshold's offset; a regression output as [n] in the target's own units."""
        if self.spec.dataset.task == "classification":
            return output - self.logit_offset
        prediction = output.reshape(-1) * self.target.std + self.target.mean
        # Under log the network learns log(1 + y): exp(x) - 1, not expm1, which ONNX lacks (the trace fails).
        return torch.exp(prediction) - 1.0 if self.target.log else prediction

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.in_target_units(self.network_output(*inputs))


def model_tensors(model: GreenlightModel, feeds: dict[str, np.ndarray]) -> list[Tensor]:
    """The torch inputs for ONNX feeds (categorical texts encoded by the model's own vocabularies)."""
    inputs = model.preprocessing.model_inputs(feeds)
    return [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in model.input_names]


def predict_outputs(model: GreenlightModel, feeds: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """fp32 outputs on the CPU (logits [n, labels] or predictions [n]): the reference for ONNX parity."""
    model = model.to("cpu").eval()
    tensors = model_tensors(model, feeds)
    rows = len(tensors[0])
    with torch.inference_mode():
        chunks = [model(*(t[i : i + batch_size] for t in tensors)) for i in range(0, max(rows, 1), batch_size)]
    return torch.cat(chunks).numpy()


def save_checkpoint(model: GreenlightModel, state: dict[str, Tensor], path: Path) -> Path:
    """Spec, family, preprocessing and weights in one file that load_checkpoint rebuilds alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "family": model.spec.model.family,
        "options": dict(model.spec.model.options),
        "spec": model.spec.model_dump(mode="json"),
        "preprocessing": model.preprocessing.to_dict(),
        "state_dict": {k: v.detach().to("cpu") for k, v in state.items()},
        "sizes": size_attributes(model),
    }
    torch.save(checkpoint, path)
    return path


def size_attributes(model: nn.Module) -> dict[str, dict[str, int | tuple[int, ...]]]:
    """Every module's size attributes (in_features, out_channels, normalized_shape, an attention's heads, ...)
    by module name: what structured pruning changes, and what a rebuilt model must take back."""
    sizes = {}
    for name, module in model.named_modules():
        found = {key: value for key, value in vars(module).items() if not key.startswith("_") and is_size(value)}
        if found:
            sizes[name] = found
    return sizes


def is_size(value: Any) -> bool:
    if isinstance(value, tuple):
        return bool(value) and all(is_size(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool)


def take_sizes(model: nn.Module, sizes: dict[str, dict], state: dict[str, Tensor]) -> None:
    """Give a freshly built model a pruned checkpoint's sizes: its modules' attributes, and each parameter and
    buffer the shape of its saved value (load_state_dict then fills them)."""
    modules = dict(model.named_modules())
    for name, attributes in sizes.items():
        for key, value in attributes.items():
            if name in modules:
                setattr(modules[name], key, value)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, value in state.items():
        if name in tensors and tensors[name].shape != value.shape:
            tensors[name].data = torch.empty(value.shape, dtype=value.dtype)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents; a file that is not a Greenlight checkpoint is refused by name."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise GreenlightError(f"checkpoint {path} could not be read: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise GreenlightError(f"{path} is not a {CHECKPOINT_FORMAT} file; train it again with this version")
    return checkpoint


def load_checkpoint(path: Path) -> GreenlightModel:
    """Rebuild the full model (preprocessing + network) from a checkpoint, in eval mode on the CPU."""
    checkpoint = read_checkpoint(path)
    spec = Spec.model_validate(checkpoint["spec"])
    model = GreenlightModel(spec, Preprocessing.from_dict(checkpoint["preprocessing"]))
    take_sizes(model, checkpoint.get("sizes", {}), checkpoint["state_dict"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
