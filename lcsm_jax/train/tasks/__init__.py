"""The tasks the training loop runs, by `Experiment.task` name."""

from __future__ import annotations

from lcsm_jax.train.config import Experiment
from lcsm_jax.train.tasks.classification import ClassificationTask
from lcsm_jax.train.tasks.lm import LMTextTask
from lcsm_jax.train.tasks.mqar import MQARRecallTask

TASKS = {"mqar": MQARRecallTask, "lm": LMTextTask, "uea": ClassificationTask}


def make(experiment: Experiment):
    """The `Task` for the experiment (its data loaded)."""
    if experiment.task not in TASKS:
        raise ValueError(f"unknown task {experiment.task!r}; valid: {', '.join(TASKS)}")
    return TASKS[experiment.task](experiment)
