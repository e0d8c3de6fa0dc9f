"""Time-series classification (UEA/UCR sets, `uea.py`) as the trainer sees it: `UEATask` (typed
config) and `UEAData` (batches). `train_batch(step)` is a pure function of (seed, step), so a
resumed run sees the same batches."""

from __future__ import annotations

import dataclasses

import numpy as np

from lcsm_jax.data import uea
from lcsm_jax.data.batching import epoch_rows

# Keeps the permutation stream of the classification batches apart from MQAR's (stream 2).
_STREAM = 3


@dataclasses.dataclass(frozen=True)
class UEATask:
    name: str = "BasicMotions"
    max_length: int | None = None  # truncate longer series (None: full length)
    seed: int = 0
    data_dir: str | None = None  # a local copy of the UEA/UCR archive (None: aeon's shipped sets)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"data.name must be a non-empty dataset name, got {self.name!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"data.max_length must be >= 1 or None, got {self.max_length}")


class UEAData:
    """The dataset's splits and its training batches {"x", "mask", "labels", "weight"}."""

    def __init__(self, task: UEATask, batch_size: int):
        self.task, self.batch_size = task, batch_size
        self.dataset = uea.load(task.name, max_length=task.max_length, data_dir=task.data_dir)
        if not 1 <= batch_size <= len(self.dataset.train):
            raise ValueError(
                f"train.batch_size={batch_size} exceeds the {len(self.dataset.train)} training "
                f"series of {task.name} (or is < 1)"
            )

    @property
    def steps_per_epoch(self) -> int:
        return max(len(self.dataset.train) // self.batch_size, 1)

    @property
    def seq_len(self) -> int:
        return self.dataset.length

    def train_batch(self, step: int) -> dict[str, np.ndarray]:
        split = self.dataset.train
        rows = epoch_rows(self.task.seed, _STREAM, step, len(split), self.batch_size)
        return arrays(split, rows)


def arrays(split: uea.Split, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The rows (all if None) of a split as a batch; `weight` is 1 for every real series (an
    evaluation pads with weight 0)."""
    rows = np.arange(len(split)) if rows is None else rows
    return {
        "x": split.x[rows],
        "mask": split.mask[rows],
        "labels": split.labels[rows],
        "weight": np.ones(len(rows), np.float32),
    }
