"""MQAR evaluation: per-example accuracy averaged over examples, per (seq_len, num_kv) slice."""

from __future__ import annotations

import numpy as np

from lcsm_jax.data.mqar import IGNORE
from lcsm_jax.train import sharding
from lcsm_jax.train.step import make_eval_step


def slice_name(seq_len: int, num_kv: int) -> str:
    return f"seq{seq_len}_kv{num_kv}"


def padded_batches(inputs: np.ndarray, labels: np.ndarray, batch_size: int):
    """Fixed-size batches (x, y) over the rows; the last one is padded with rows whose labels are
    all IGNORE, so one compiled eval step serves every batch and padding is never counted."""
    for start in range(0, len(inputs), batch_size):
        x, y = inputs[start : start + batch_size], labels[start : start + batch_size]
        pad = batch_size - len(x)
        if pad:
            x = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)])
            y = np.concatenate([y, np.full((pad, y.shape[1]), IGNORE, y.dtype)])
        yield x, y


class Evaluator:
    def __init__(self, params, mesh, params_shardings, test_sets: dict, batch_size: int):
        n = mesh.devices.size
        self.batch_size = -(-batch_size // n) * n  # a multiple of the device count
        self.mesh, self.test_sets = mesh, test_sets
        self._step = make_eval_step(params, mesh, params_shardings)

    def accuracy(self, p, inputs: np.ndarray, labels: np.ndarray) -> float:
        total, count = 0.0, 0
        for x, y in padded_batches(inputs, labels, self.batch_size):
            batch = sharding.put_batch(
                {"inputs": x.astype(np.int32), "labels": y.astype(np.int32)}, self.mesh
            )
            acc, has = (np.asarray(a) for a in self._step(p, batch))
            total += float(np.sum(acc[has]))
            count += int(np.sum(has))
        return total / max(count, 1)

    def __call__(self, p) -> dict[str, float]:
        """{"seq64_kv4": accuracy, ...}; the first slice is the training one."""
        return {slice_name(*key): self.accuracy(p, *data) for key, data in self.test_sets.items()}
