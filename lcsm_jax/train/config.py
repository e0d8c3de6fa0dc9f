"""The typed, frozen description of an experiment that everything in `train/` takes.

`experiment.translate` builds it from a config file's ConfigDict (the only place that reads one);
a user may also build it directly in Python.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from lcsm_jax.data.mqar_task import MQARTask
from lcsm_jax.data.text.task import LMTask
from lcsm_jax.data.uea_task import UEATask
from lcsm_jax.models.classifier import ClassifierConfig
from lcsm_jax.models.lm import LMConfig
from lcsm_jax.train.optim import OptimConfig
from lcsm_jax.train.step import StepConfig

MODES = ("max", "min")


@dataclasses.dataclass(frozen=True)
class EarlyStop:
    """Stop once evaluation metric `metric` reaches `target` (>= for mode "max", <= for "min").
    An empty metric means the task's main metric (MQAR: the training slice's accuracy; LM:
    validation_loss; UEA: the test accuracy), with the task's direction when mode is empty."""

    target: float
    metric: str = ""
    mode: str = ""

    def __post_init__(self):
        if self.mode not in ("", *MODES):
            raise ValueError(f"train.early_stop.mode={self.mode!r}; valid: {', '.join(MODES)}")

    def reached(self, value: float) -> bool:
        return value >= self.target if self.mode == "max" else value <= self.target


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int
    num_steps: int = 0  # 0: num_epochs over the training set
    num_epochs: int = 1
    eval_every: int = 100
    eval_batch_size: int = 256
    log_every: int = 25
    save_every: int = 500
    keep_checkpoints: int = 3
    async_checkpoints: bool = True
    step: StepConfig = StepConfig()
    early_stop: EarlyStop | None = None

    def __post_init__(self):
        for name in ("batch_size", "eval_every", "eval_batch_size", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")

    def total_steps(self, steps_per_epoch: int) -> int:
        steps = self.num_steps if self.num_steps else self.num_epochs * steps_per_epoch
        if steps < 1:
            raise ValueError(f"the run has {steps} steps: set train.num_steps or train.num_epochs")
        return steps


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    fsdp: int = 1
    num_devices: int = 0  # 0: every device of every host
    seq: int = 1  # sequence parallelism: T split over this many devices


@dataclasses.dataclass(frozen=True)
class Experiment:
    """task: "mqar", "lm" or "uea" (`train.tasks.TASKS`); data: that task's typed data config;
    model: `LMConfig` for the token tasks, `ClassifierConfig` for classification; optim's
    total_steps is filled in by the run (it depends on the data's epoch length when
    train.num_steps is 0)."""

    task: str
    data: MQARTask | LMTask | UEATask
    model: LMConfig | ClassifierConfig
    optim: OptimConfig
    train: TrainConfig
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def fingerprint(self) -> str:
        """The experiment as JSON, stored in checkpoints to refuse resuming a different one.

        The mesh is left out: a checkpoint holds the global arrays, so a run may continue on
        another mesh (say one written with mesh.seq = 4 on one device) and computes the same."""
        fields = dataclasses.asdict(self)
        del fields["mesh"]
        return json.dumps(fields, sort_keys=True, default=_json)


def _json(value: Any) -> str:
    return str(value)
