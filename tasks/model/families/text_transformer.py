"""text_transformer: a small Transformer encoder trained from scratch on the spec's tokens.

Token and position embeddings, a few pre-norm encoder layers, the mean of the real tokens (the attention
mask drops the padding), then the table side (numeric and categorical features, if the spec has any) and a
linear head. It needs no download, trains in seconds on a CPU for thousands of short texts, and is the
student that compression distils a pretrained encoder into.
"""

import torch
from pydantic import Field
from torch import Tensor, nn

from tasks.core.errors import ConfigRejected
from tasks.core.spec import ModelSpec
from tasks.model.families.contract import Family, FamilyOptions, InputDescription, parse_options, require_text
from tasks.model.families.tabular_mlp import TableInputs


class TextTransformerOptions(FamilyOptions):
    """model.options of text_transformer."""

    # 128 wide, 2 layers, 4 heads: ~0.3M weights besides the embeddings; enough for sentiment or topic labels
    # on thousands of texts, small enough to train on 2 CPU cores in a minute.
    width: int = Field(128, ge=8)
    layers: int = Field(2, ge=1, le=24)
    heads: int = Field(4, ge=1)
    feedforward: int = Field(256, ge=8)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_embedding_dim: int = Field(16, ge=1, le=512)


class EncoderLayer(nn.Module):
    """Pre-norm self-attention and feed-forward. Written out because torch's TransformerEncoderLayer traces its
    batch and sequence sizes into constants, so its ONNX graph would only take the tracing example's shape."""

    def __init__(self, width: int, heads: int, feedforward: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.attention_norm, self.feedforward_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.feedforward = nn.Sequential(
            nn.Linear(width, feedforward), nn.GELU(), nn.Dropout(dropout), nn.Linear(feedforward, width)
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, states: Tensor, padding: Tensor) -> Tensor:
        """states [n, sequence, width]; padding [n, 1, 1, sequence] additive (0 for tokens, -inf-like for padding)."""
        query, key, value = (
            part.unflatten(-1, (self.heads, -1)).transpose(1, 2)
            for part in self.qkv(self.attention_norm(states)).chunk(3, dim=-1)
        )
        dropout = self.dropout if self.training else 0.0
        attended = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=padding, dropout_p=dropout)
        states = states + self.residual_dropout(self.out(attended.transpose(1, 2).flatten(2)))
        return states + self.residual_dropout(self.feedforward(self.feedforward_norm(states)))


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """The mean of each text's real token states [n, width]; padding (mask 0) is left out."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class TextTransformer(nn.Module):
    def __init__(self, inputs: InputDescription, options: TextTransformerOptions) -> None:
        super().__init__()
        text = inputs.text
        self.tokens = nn.Embedding(text.vocab_size, options.width, padding_idx=0)
        self.positions = nn.Embedding(text.max_length, options.width)
        self.layers = nn.ModuleList(
            EncoderLayer(options.width, options.heads, options.feedforward, options.dropout)
            for _ in range(options.layers)
        )
        self.norm = nn.LayerNorm(options.width)
        self.table = TableInputs(inputs, options.max_embedding_dim)
        self.head = nn.Sequential(
            nn.Dropout(options.dropout), nn.Linear(options.width + self.table.width, inputs.n_outputs)
        )

    def attention_heads(self) -> dict[nn.Module, int]:
        """Each layer's query/key/value projection and its heads: structured pruning removes heads whole."""
        return {layer.qkv: layer.heads for layer in self.layers}

    def after_pruning(self, heads: dict[nn.Module, int]) -> None:
        for layer in self.layers:
            layer.heads = heads[layer.qkv]

    def forward(self, numeric: Tensor, codes: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        states = self.tokens(ids) + self.positions(positions)
        # A large negative rather than -inf: a row of padding only (an empty text) must not turn into NaN.
        padding = ((1 - mask) * -1e4).to(states.dtype)[:, None, None, :]
        for layer in self.layers:
            states = layer(states, padding)
        pooled = masked_mean(self.norm(states), mask)
        return self.head(torch.cat([pooled, self.table(numeric, codes)], dim=1))


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    options = parse_options(TextTransformerOptions, model.family, model.options)
    require_text(model.family, inputs)
    if options.width % options.heads:
        raise ConfigRejected(
            f"model.options of '{model.family}': width {options.width} must divide by heads {options.heads}"
        )
    return TextTransformer(inputs, options)


def student(teacher: ModelSpec) -> ModelSpec:
    """The distilled student: half the width, heads, layers and feed-forward (128 / 4 / 2 / 256 -> 64 / 2 / 1 / 128)."""
    options = parse_options(TextTransformerOptions, teacher.family, teacher.options)
    heads = max(1, options.heads // 2)
    smaller = {
        "heads": heads,
        "width": max(heads * 8, options.width // 2 // heads * heads),
        "layers": max(1, options.layers // 2),
        "feedforward": max(8, options.feedforward // 2),
    }
    return ModelSpec(family="text_transformer", options={**teacher.options, **smaller})


FAMILY = Family(
    name="text_transformer",
    build=build,
    # From scratch on a few thousand texts: most of the gain comes in 10-20 epochs, patience stops the rest.
    max_epochs=40,
    patience=5,
    summary="a small Transformer encoder trained from scratch on the text's tokens (no download)",
    student=student,
    max_model_bytes=60_000_000,  # ~1-16 MB with a trained or the pretrained vocabulary's embeddings
    options=TextTransformerOptions,
)
