"""Tokenizers: plain UTF-8 bytes, or a byte-level BPE trained with `tokenizers` on the train split.

Both end every document with an end-of-text token and know how many UTF-8 bytes each token id
stands for (`token_bytes`), which turns a token-level loss into bits per byte, comparable across
tokenizers. The end-of-text token counts as one byte: it stands for the document boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

KINDS = ("bytes", "bpe")
EOS = "<|endoftext|>"
BYTE_VOCAB = 257  # 256 byte values and the end-of-text token


class ByteTokenizer:
    """Token id = UTF-8 byte value; id 256 ends a document."""

    vocab_size = BYTE_VOCAB
    eos_id = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

    def decode(self, ids) -> str:
        ids = np.asarray(ids)
        return bytes(ids[ids < 256].astype(np.uint8).tolist()).decode("utf-8", errors="replace")

    def token_bytes(self, vocab_size: int) -> np.ndarray:
        return np.ones((vocab_size,), np.int32)


class BPETokenizer:
    """A trained `tokenizers.Tokenizer` with a byte-level pre-tokenizer and decoder (lossless)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.token_to_id(EOS)
        if self.eos_id is None:
            raise ValueError(f"the tokenizer has no {EOS} token")
        self.vocab_size = tokenizer.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text).ids, np.int32)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in np.asarray(ids)], skip_special_tokens=True)

    def token_bytes(self, vocab_size: int) -> np.ndarray:
        # A byte-level token is a string over a 256-character alphabet, one character per byte.
        out = np.ones((vocab_size,), np.int32)
        for token, index in self.tokenizer.get_vocab().items():
            if index < vocab_size and token != EOS:
                out[index] = len(token)
        return out

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        self.tokenizer.save(str(tmp))
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))


def train_bpe(texts: Iterable[str], vocab_size: int) -> BPETokenizer:
    """A byte-level BPE of at most `vocab_size` tokens (the 256 bytes and EOS included)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < BYTE_VOCAB:
        raise ValueError(f"a byte-level BPE needs vocab_size >= {BYTE_VOCAB}, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return BPETokenizer(tokenizer)


def load_or_train(
    kind: str, vocab_size: int, cache_dir, train_texts: Callable[[], Iterable[str]]
) -> ByteTokenizer | BPETokenizer:
    """The tokenizer of `kind`; a BPE is trained once and cached as `cache_dir/bpe_<V>.json`."""
    if kind == "bytes":
        return ByteTokenizer()
    if kind != "bpe":
        raise ValueError(f"unknown tokenizer {kind!r}; valid: {', '.join(KINDS)}")
    path = Path(cache_dir) / f"bpe_{vocab_size}.json"
    if path.is_file():
        return BPETokenizer.load(path)
    tokenizer = train_bpe(train_texts(), vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(path)
    return tokenizer
