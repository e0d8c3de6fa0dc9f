"""The `Task` protocol: everything the one training loop needs of a task, and nothing more.

A task owns its data (batches as a pure function of (seed, step), or an iterator whose state is
saved in each checkpoint), builds its model, defines its loss as batch sums and evaluates. The
loop (`loop.py`) names no task; `tasks/` holds mqar, lm and uea.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from flax import nnx

from lcsm_jax.nn.params import ModelParams


class Evaluator(Protocol):
    metric_names: tuple[str, ...]  # the keys __call__ returns

    def __call__(self, params) -> dict[str, float]:
        """The metrics evaluated during training (and in the run's summary)."""

    def report(self, params) -> dict[str, float]:
        """Everything `eval.py` reports (e.g. the test split besides validation)."""


class Task(Protocol):
    data: Any  # the task's data object (splits, tokenizer, ...), for launchers and tests
    main_metric: str  # what early stop watches by default
    maximize: bool  # the main metric's direction
    steps_per_epoch: int
    tokens_per_batch: int  # positions per batch (throughput)

    def make_model(self, rngs: nnx.Rngs) -> nnx.Module: ...

    def train_batch(self, step: int) -> dict[str, np.ndarray]: ...

    def loss(self, model: nnx.Module, batch: dict, dropout_key) -> tuple[dict, dict]:
        """(sums, peaks): sums of "nll", "correct", "count" over the batch (see step.py)."""

    def make_evaluator(self, params: ModelParams, mesh, params_shardings, batch_size: int):
        """An `Evaluator` with eval steps jitted over the mesh."""

    def data_state(self) -> dict | None:
        """The data iterator's state to save (None: batches are a function of the step)."""

    def restore_data_state(self, state: dict) -> None: ...


class DataTask:
    """The parts of a `Task` that only pass through to `self.data` (set by the subclass): its
    epoch length and batches; no iterator state unless the subclass saves one."""

    def __init__(self, experiment):
        self.experiment = experiment

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch

    def train_batch(self, step: int):
        return self.data.train_batch(step)

    def data_state(self) -> dict | None:
        return None

    def restore_data_state(self, state: dict) -> None:
        del state


def eval_batch_size(batch_size: int, mesh) -> int:
    """`batch_size` rounded up to a multiple of the device count (batches split over all)."""
    n = mesh.devices.size
    return -(-batch_size // n) * n
