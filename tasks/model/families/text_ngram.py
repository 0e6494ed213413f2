"""text_ngram: a fastText-style bag of word n-grams, the fast text candidate on a CPU.

Tokens and hashed bigrams (trigrams when asked) are averaged from one embedding table with learned weights, beside
the table side, into a small head; the n-gram ids are computed inside the graph, so the file takes the same ids and
mask as every text family (docs/text-and-images.md).
"""

import torch
from pydantic import Field
from torch import Tensor, nn

from tasks.core.spec import ModelSpec
from tasks.model.families.contract import Family, FamilyOptions, InputDescription, parse_options, require_text
from tasks.model.families.tabular_mlp import TableInputs

# Multipliers of the n-gram hash, one per position: primes, so neighbouring token ids spread over the buckets;
# small enough that id x prime stays far inside int64 for any vocabulary the spec allows (250,000 ids); and
# first and second differing by 2 x an odd number, so with power-of-two buckets "a b" and "b a" collide only
# when a - b is a multiple of buckets / 2 (1,000,003 and 2,000,003 differ by 2^6 x 15,625: "not good" and
# "good not" shared a row in every 64-bucket table).
HASH_PRIMES = (1_000_003, 2_000_029, 3_000_017)


class TextNgramOptions(FamilyOptions):
    """model.options of text_ngram."""

    # Figures below: test / validation accuracy on news articles by outlet (benchmarks/text_and_images.py's
    # split: 2,461 training texts, BPE 16k, 512 tokens, 8 epochs). Bigrams carry negation and phrases ("not
    # good", "prime minister"); trigrams cost accuracy there (0.872 / 0.891 against 0.893 / 0.905).
    ngrams: int = Field(2, ge=1, le=3)
    # Hashed n-gram rows shared by bigrams and trigrams: 2^18 scored no better (0.879 / 0.907) at four times the
    # file (2^16: 21 MB with a 16,000-piece vocabulary and 64 floats a row) and a slower step.
    buckets: int = Field(2**16, ge=256, le=2**22)
    # Width of each gram's vector: 32 scored 0.888 / 0.903 at half the file.
    dim: int = Field(64, ge=2, le=1024)
    # Learned per-gram weights in the average (True), or fastText's plain mean (False): 0.877 against 0.826
    # (WordPiece 16k, within the 60 s budget).
    weighted: bool = True
    # Hidden units between the pooled text (+ table side) and the output; 0 = a linear head, as fastText.
    hidden: int = Field(0, ge=0, le=4096)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # Share of grams dropped from each training text: the bag learns not to lean on a few words.
    token_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # The step as a multiple of training.learning_rate (2e-3, set for deep networks): a shallow bag of grams sees
    # each row in a few texts an epoch and needs larger steps (fastText trains at 0.1-1.0 with SGD); the head and
    # the table side take the same, or a number beside the text is learnt too slowly for early stopping. 10 scored
    # 0.883 / 0.896; 5 needed 20+ epochs for 0.880.
    learning_rate_scale: float = Field(25.0, gt=0.0, le=1000.0)
    max_embedding_dim: int = Field(16, ge=1, le=512)


def ngram_ids(ids: Tensor, mask: Tensor, order: int, vocab_size: int, buckets: int) -> tuple[Tensor, Tensor]:
    """The hashed ids of each text's n-grams of this order [n, sequence - order + 1] (offset past the vocabulary,
    so they index the same table as the tokens) and their mask (1 where every token of the gram is real)."""
    length = ids.shape[1] - order + 1
    key = torch.zeros_like(ids[:, :length])
    gram_mask = torch.ones_like(mask[:, :length])
    for position in range(order):
        key = key + ids[:, position : position + length] * HASH_PRIMES[position]
        gram_mask = gram_mask * mask[:, position : position + length]
    return torch.remainder(key, buckets) + vocab_size, gram_mask


class TextNgram(nn.Module):
    """Tokens and hashed n-grams -> one embedding table -> weighted mean -> (with the table side) a small head."""

    def __init__(self, inputs: InputDescription, options: TextNgramOptions) -> None:
        super().__init__()
        text = inputs.text
        self.vocab_size, self.buckets, self.ngrams = text.vocab_size, options.buckets, options.ngrams
        self.token_dropout, self.learning_rate_scale = options.token_dropout, options.learning_rate_scale
        rows = text.vocab_size + (options.buckets if options.ngrams > 1 else 0)
        self.grams = nn.Embedding(rows, options.dim)
        # fastText's start: small vectors, so the first steps are driven by the words that matter.
        nn.init.uniform_(self.grams.weight, -1.0 / options.dim, 1.0 / options.dim)
        self.importance = nn.Embedding(rows, 1) if options.weighted else None
        if self.importance is not None:
            nn.init.zeros_(self.importance.weight)  # every gram starts equal: the plain mean
        self.table = TableInputs(inputs, options.max_embedding_dim)
        # Dropout on the pooled text only: the table side's few columns are each worth keeping in every step.
        self.text_dropout = nn.Dropout(options.dropout)
        width = options.dim + self.table.width
        layers: list[nn.Module] = []
        if options.hidden:
            layers += [nn.Linear(width, options.hidden), nn.ReLU(), nn.Dropout(options.dropout)]
            width = options.hidden
        self.head = nn.Sequential(*layers, nn.Linear(width, inputs.n_outputs))

    def optimizer_groups(self, learning_rate: float) -> list[dict]:
        """Everything at learning_rate_scale x the run's step; the gram tables without weight decay (a row seen in
        one text an epoch would be decayed at every step) and with AdamW's fused step."""
        tables = [p for name, p in self.named_parameters() if name.startswith(("grams.", "importance."))]
        rest = [p for name, p in self.named_parameters() if not name.startswith(("grams.", "importance."))]
        step = learning_rate * self.learning_rate_scale
        # fused: AdamW's one-kernel step. The default steps tensor by tensor and spends ~10x longer on a table
        # of millions of rows on a CPU (320 ms against 29 ms a step for 2^18 buckets x 64 on 2 cores).
        return [
            {"params": tables, "lr": step, "weight_decay": 0.0, "fused": True},
            {"params": rest, "lr": step},
        ]

    def gram_ids(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Every gram of each text: its tokens, then its hashed bigrams (and trigrams), with their mask."""
        grams, masks = [ids], [mask]
        for order in range(2, self.ngrams + 1):
            # Texts carry [CLS] and [SEP], so a batch is never shorter than a bigram; a trigram of two tokens
            # is none.
            gram, gram_mask = ngram_ids(ids, mask, order, self.vocab_size, self.buckets)
            grams.append(gram)
            masks.append(gram_mask)
        return torch.cat(grams, dim=1), torch.cat(masks, dim=1)

    def pooled(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Each text's grams averaged [n, dim], weighted by their learned importance; padding left out."""
        grams, weights = self.gram_ids(ids, mask)
        weights = weights.to(self.grams.weight.dtype)
        if self.training and self.token_dropout > 0:
            weights = weights * (torch.rand(weights.shape, device=weights.device) >= self.token_dropout)
        if self.importance is not None:
            # Clamped: a gram can count up to e^8 (~3,000) times another, and no step can overflow the average.
            weights = weights * torch.exp(self.importance(grams).squeeze(-1).clamp(-8.0, 8.0))
        # One batched product [n, 1, grams] x [n, grams, dim]: no [n, grams, dim] temporary of weighted vectors.
        summed = torch.bmm(weights.unsqueeze(1), self.grams(grams)).squeeze(1)
        return summed / weights.sum(dim=1, keepdim=True).clamp(min=1e-6)

    def forward(self, numeric: Tensor, codes: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        return self.head(torch.cat([self.text_dropout(self.pooled(ids, mask)), self.table(numeric, codes)], dim=1))


def build(model: ModelSpec, inputs: InputDescription) -> nn.Module:
    options = parse_options(TextNgramOptions, model.family, model.options)
    require_text(model.family, inputs)
    return TextNgram(inputs, options)


FAMILY = Family(
    name="text_ngram",
    build=build,
    # At its large step the bag is near its best in 2-5 epochs (news articles: 0.87 validation accuracy after one);
    # patience stops it once validation stalls.
    max_epochs=30,
    patience=5,
    summary="a fastText-style bag of tokens and hashed n-grams with a linear head (seconds on a CPU)",
    max_model_bytes=300_000_000,  # default 21 MB fp32; 2^20 buckets x 64 floats: ~270 MB
    options=TextNgramOptions,
)
