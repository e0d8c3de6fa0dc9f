"""Language modelling as the trainer sees it: `LMTask` (typed config) and `LMData` (batches).

`LMData.train_batch(step)` pulls the next batch of a grain iterator; its state
(`get_state`/`set_state`) is saved in the checkpoint, so a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from lcsm_jax.data.text import corpora, pipeline, sources
from lcsm_jax.data.text import tokenizer as tokenizers


@dataclasses.dataclass(frozen=True)
class LMTask:
    corpus: str = corpora.LOCAL  # "local" (reads `source`) or a standard corpus name
    source: str = sources.DEFAULT_SOURCE  # "kjv", a text file or a folder (corpus "local")
    data_dir: str = "~/tensorflow_datasets"
    tokenizer: str = "bpe"  # "bpe" (trained on the train split) or "bytes"
    bpe_vocab_size: int = 4096
    seq_len: int = 128
    seed: int = 0
    validation: float = 0.05  # local text: fractions of documents held out
    test: float = 0.05
    eval_max_windows: int = 0  # evaluate on the first N windows of a split (0: all)
    tokenizer_max_chars: int = 50_000_000  # BPE training reads at most this much train text

    def __post_init__(self):
        if self.tokenizer not in tokenizers.KINDS:
            raise ValueError(
                f"unknown tokenizer {self.tokenizer!r}; valid: {', '.join(tokenizers.KINDS)}"
            )
        if self.corpus not in corpora.names():
            raise ValueError(f"unknown corpus {self.corpus!r}; valid: {', '.join(corpora.names())}")
        if self.seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {self.seq_len}")
        if self.tokenizer == "bpe" and self.bpe_vocab_size < tokenizers.BYTE_VOCAB:
            raise ValueError(
                f"bpe_vocab_size must be >= {tokenizers.BYTE_VOCAB}, got {self.bpe_vocab_size}"
            )

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary: every id the tokenizer can produce."""
        return tokenizers.BYTE_VOCAB if self.tokenizer == "bytes" else self.bpe_vocab_size

    @property
    def tokenizer_name(self) -> str:
        return "bytes" if self.tokenizer == "bytes" else f"bpe_{self.bpe_vocab_size}"


def _train_texts(source, text_key: str, max_chars: int):
    total = 0
    for i in range(len(source)):
        text = corpora.text_of(source[i], text_key)
        yield text
        total += len(text)
        if total >= max_chars:
            return


class LMData:
    def __init__(self, task: LMTask, batch_size: int):
        self.task, self.batch_size = task, batch_size
        self.corpus = corpora.open_corpus(
            task.corpus,
            task.data_dir,
            source=task.source,
            validation=task.validation,
            test=task.test,
        )
        train = self.corpus.splits["train"]
        self.tokenizer = tokenizers.load_or_train(
            task.tokenizer,
            task.bpe_vocab_size,
            self.corpus.cache_dir,
            lambda: _train_texts(train, self.corpus.text_key, task.tokenizer_max_chars),
        )
        if self.tokenizer.vocab_size > task.vocab_size:
            raise ValueError(
                f"the tokenizer has {self.tokenizer.vocab_size} tokens, more than the model's "
                f"vocab_size {task.vocab_size}"
            )
        self.token_bytes = self.tokenizer.token_bytes(task.vocab_size)
        self._dataset = pipeline.train_dataset(
            train,
            self.corpus.text_key,
            self.tokenizer,
            seq_len=task.seq_len,
            batch_size=batch_size,
            seed=task.seed,
        )
        self._iterator = iter(self._dataset)
        self._step = 0

    @property
    def steps_per_epoch(self) -> int:
        """Batches per pass over the train split (its token count is cached after one count)."""
        path = Path(self.corpus.cache_dir) / f"train_tokens_{self.task.tokenizer_name}.json"
        if path.is_file():
            count = json.loads(path.read_text())["tokens"]
        else:
            count = pipeline.count_tokens(
                self.corpus.splits["train"], self.corpus.text_key, self.tokenizer
            )
            path.write_text(json.dumps({"tokens": count}))
        return max(1, count // (self.batch_size * self.task.seq_len))

    def train_batch(self, step: int) -> dict[str, np.ndarray]:
        """The batch of `step`: the iterator's next one (steps must come in order)."""
        if step != self._step:
            raise ValueError(
                f"LM batches come in order: asked for step {step}, the iterator is at step "
                f"{self._step} (restore its state with set_state first)"
            )
        batch = next(self._iterator)
        self._step += 1
        return batch

    def get_state(self) -> dict:
        return {"step": self._step, "iterator": self._iterator.get_state()}

    def set_state(self, state: dict) -> None:
        self._iterator.set_state(state["iterator"])
        self._step = int(state["step"])

    def eval_windows(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self.corpus.splits:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(self.corpus.splits)}")
        return pipeline.eval_windows(
            self.corpus.splits[split],
            self.corpus.text_key,
            self.tokenizer,
            seq_len=self.task.seq_len,
            max_windows=self.task.eval_max_windows,
        )
