"""The MQAR task as the trainer sees it: a fixed train set, test sets per (seq_len, num_kv) slice,
and `train_batch(step)`, a pure function of (seed, step), so a resumed run sees the same batches."""

from __future__ import annotations

import dataclasses

import numpy as np

from lcsm_jax.data import mqar
from lcsm_jax.data.batching import epoch_rows


@dataclasses.dataclass(frozen=True)
class MQARTask:
    vocab_size: int = 8192
    seq_len: int = 64
    num_kv: int = 4
    num_train: int = 100_000
    num_test: int = 3_000
    power_a: float = 0.01
    random_non_queries: bool = False
    seed: int = 0
    # Extra (seq_len, num_kv) slices to evaluate on besides the training one.
    test_slices: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        for seq_len, num_kv in self.slices:
            mqar.check(
                vocab_size=self.vocab_size,
                seq_len=seq_len,
                num_kv_pairs=num_kv,
                power_a=self.power_a,
            )
        if self.num_train < 1 or self.num_test < 1:
            raise ValueError(
                f"num_train and num_test must be >= 1, got {self.num_train}, {self.num_test}"
            )

    @property
    def slices(self) -> tuple[tuple[int, int], ...]:
        extra = tuple(tuple(s) for s in self.test_slices if tuple(s) != (self.seq_len, self.num_kv))
        return ((self.seq_len, self.num_kv), *extra)


class MQARData:
    def __init__(self, task: MQARTask, batch_size: int):
        if batch_size < 1 or batch_size > task.num_train:
            raise ValueError(f"batch_size={batch_size} must be in [1, num_train={task.num_train}]")
        self.task, self.batch_size = task, batch_size
        common = dict(
            vocab_size=task.vocab_size,
            power_a=task.power_a,
            random_non_queries=task.random_non_queries,
        )
        self.train = mqar.generate(
            task.num_train,
            seq_len=task.seq_len,
            num_kv_pairs=task.num_kv,
            seed=mqar.split_seed(task.seed, "train"),
            **common,
        )
        self.test = {}
        for index, (seq_len, num_kv) in enumerate(task.slices):
            seed = mqar.split_seed(task.seed + 7919 * index, "test")
            self.test[(seq_len, num_kv)] = mqar.generate(
                task.num_test, seq_len=seq_len, num_kv_pairs=num_kv, seed=seed, **common
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.task.num_train // self.batch_size

    def train_batch(self, step: int) -> dict[str, np.ndarray]:
        """Batch `step`: a slice of the epoch's permutation, seeded by (seed, epoch)."""
        rows = epoch_rows(self.task.seed, 2, step, self.task.num_train, self.batch_size)
        inputs, labels = self.train
        return {"inputs": inputs[rows].astype(np.int32), "labels": labels[rows].astype(np.int32)}
