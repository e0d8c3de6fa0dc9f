"""grain pipelines over a corpus split: shuffle documents, tokenize, pack, batch.

Training repeats the split forever, reshuffled every epoch (grain reseeds its index shuffle per
epoch from the seed), so the batch sequence depends only on the seed; its iterator state goes
into the checkpoint. Evaluation reads the split once, in its stored order, with nothing dropped.
"""

from __future__ import annotations

import grain
import numpy as np

from lcsm_jax.data.text.corpora import text_of
from lcsm_jax.data.text.packing import PackIterDataset

# Tokenizing is fast (Rust); a few threads keep it ahead of a CPU train step without starving it.
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=32)


class Tokenize:
    """example -> its tokens followed by end-of-text."""

    def __init__(self, tokenizer, text_key: str):
        self.tokenizer, self.text_key = tokenizer, text_key

    def __call__(self, example) -> np.ndarray:
        tokens = self.tokenizer.encode(text_of(example, self.text_key))
        return np.append(tokens, np.int32(self.tokenizer.eos_id)).astype(np.int32)


def check_source(source, split: str) -> None:
    if len(source) == 0:
        raise ValueError(f"the {split} split is empty")


def train_dataset(
    source, text_key: str, tokenizer, *, seq_len: int, batch_size: int, seed: int
) -> grain.IterDataset:
    """Endless batches {"inputs", "labels"}: [batch_size, seq_len] int32."""
    check_source(source, "train")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    docs = grain.MapDataset.source(source).shuffle(seed=seed % 2**32).repeat()
    tokens = docs.map(Tokenize(tokenizer, text_key)).to_iter_dataset(READ_OPTIONS)
    return PackIterDataset(tokens, seq_len).batch(batch_size, drop_remainder=True)


def eval_windows(
    source, text_key: str, tokenizer, *, seq_len: int, max_windows: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) [N, seq_len] covering the split once (the first `max_windows` if > 0)."""
    check_source(source, "evaluation")
    tokens = grain.MapDataset.source(source).map(Tokenize(tokenizer, text_key))
    windows = PackIterDataset(tokens.to_iter_dataset(READ_OPTIONS), seq_len)
    inputs, labels = [], []
    for window in windows:
        inputs.append(window["inputs"])
        labels.append(window["labels"])
        if max_windows and len(inputs) == max_windows:
            break
    return np.stack(inputs), np.stack(labels)


def count_tokens(source, text_key: str, tokenizer, max_chars: int = 50_000_000) -> int:
    """Tokens of a split including one end-of-text per document: exact when the split has fewer
    than `max_chars` characters, else extrapolated from its first documents by document count
    (tfds stores examples in a hashed order, so they are a fair sample); tokenizing all of a
    large corpus (pg19: 11 GB) just to size an epoch would take hours."""
    tokens = chars = 0
    for i in range(len(source)):
        text = text_of(source[i], text_key)
        tokens += len(tokenizer.encode(text)) + 1
        chars += len(text)
        if chars >= max_chars and i + 1 < len(source):
            return round(tokens * len(source) / (i + 1))
    return tokens
