"""Packing token streams into fixed-length training windows, as a grain transformation.

Documents (token arrays, each ending in EOS) are concatenated into one stream; window k holds
stream[k L : k L + L + 1], so `inputs` = its first L tokens and `labels` = its last L: every token
of the stream is predicted exactly once and none is dropped. A finite stream ends in a partial
window whose missing positions are padded (input 0, label `IGNORE`).

The iterator state is the parent's state before the document holding the next window's first
token plus the offset into it: small, JSON-able, and exact to restore.
"""

from __future__ import annotations

import collections

import grain
import numpy as np

from lcsm_jax.data.batching import IGNORE


class _PackIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, seq_len: int):
        super().__init__(parent)
        self._seq_len = seq_len
        self._docs = collections.deque()  # (parent state before the document, its tokens)
        self._offset = 0  # position of the next window's first token in the first document
        self._exhausted = False

    def _available(self) -> int:
        return sum(len(tokens) for _, tokens in self._docs) - self._offset

    def _fill(self, needed: int) -> None:
        while not self._exhausted and self._available() < needed:
            state = self._parent.get_state()
            try:
                tokens = np.asarray(next(self._parent), np.int32)
            except StopIteration:
                self._exhausted = True
                return
            self._docs.append((state, tokens))

    def __next__(self):
        L = self._seq_len
        self._fill(L + 1)
        available = self._available()
        if available <= 1:  # a last lone token has nothing to predict
            raise StopIteration
        pieces, offset, needed = [], self._offset, L + 1
        for _, tokens in self._docs:  # copy only the window: a document may be a whole book
            pieces.append(tokens[offset : offset + needed])
            needed -= len(pieces[-1])
            offset = 0
            if not needed:
                break
        window = np.concatenate(pieces)
        self._offset += L
        while self._docs and self._offset >= len(self._docs[0][1]):
            self._offset -= len(self._docs[0][1])
            self._docs.popleft()
        if self._exhausted and not self._docs:
            self._offset = 0
        n = len(window) - 1
        inputs = np.zeros((L,), np.int32)
        labels = np.full((L,), IGNORE, np.int32)
        inputs[:n], labels[:n] = window[:-1], window[1:]
        return {"inputs": inputs, "labels": labels}

    def get_state(self) -> dict:
        parent = self._docs[0][0] if self._docs else self._parent.get_state()
        return {"parent": parent, "offset": int(self._offset)}

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self._docs.clear()
        self._offset = int(state["offset"])
        self._exhausted = False


class PackIterDataset(grain.IterDataset):
    """Token arrays -> {"inputs": [L], "labels": [L]} windows of the concatenated stream."""

    def __init__(self, parent: grain.IterDataset, seq_len: int):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        super().__init__(parent)
        self._seq_len = seq_len

    def __iter__(self) -> _PackIterator:
        return _PackIterator(self._parent.__iter__(), self._seq_len)

    def __str__(self) -> str:
        return f"PackIterDataset(seq_len={self._seq_len})"
