"""From an experiment `ConfigDict` (configs/*.py) to the library's typed configs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import ml_collections

from lcsm_jax.data.mqar_task import MQARData, MQARTask
from lcsm_jax.data.text.evaluate import LMEvaluator
from lcsm_jax.data.text.task import LMData, LMTask
from lcsm_jax.models.lm import LMConfig
from lcsm_jax.train.evaluate import Evaluator
from lcsm_jax.train.optim import OptimConfig
from lcsm_jax.train.step import StepConfig


def _options(value) -> tuple[tuple[str, object], ...]:
    if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
    return tuple(sorted(dict(value or {}).items()))


def mqar_task(config) -> MQARTask:
    d = config.data
    return MQARTask(
        vocab_size=d.vocab_size,
        seq_len=d.seq_len,
        num_kv=d.num_kv,
        num_train=d.num_train,
        num_test=d.num_test,
        power_a=d.power_a,
        random_non_queries=d.random_non_queries,
        seed=config.seed,
        test_slices=tuple(tuple(s) for s in d.get("test_slices", ())),
    )


def lm_task(config) -> LMTask:
    d = config.data
    return LMTask(
        corpus=d.corpus,
        source=d.source,
        data_dir=d.data_dir,
        tokenizer=d.tokenizer,
        bpe_vocab_size=d.vocab_size,
        seq_len=d.seq_len,
        seed=config.seed,
        validation=d.validation,
        test=d.test,
        eval_max_windows=d.eval_max_windows,
    )


@dataclasses.dataclass(frozen=True)
class TaskKind:
    """What the training loop needs of a task: the typed task from the config, its batches
    (`steps_per_epoch`, `train_batch(step)`, optionally `get_state`/`set_state`) and its
    evaluator (called with the params, returns {name: value})."""

    make_task: Callable  # config -> task
    make_data: Callable  # (task, batch_size) -> data
    make_evaluator: Callable  # (params, mesh, params_shardings, data, batch_size) -> evaluator


def _mqar_evaluator(params, mesh, params_shardings, data, batch_size):
    return Evaluator(params, mesh, params_shardings, data.test, batch_size)


TASKS = {
    "mqar": TaskKind(mqar_task, MQARData, _mqar_evaluator),
    "lm": TaskKind(lm_task, LMData, LMEvaluator),
}


def task_kind(config) -> TaskKind:
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; valid: {', '.join(TASKS)}")
    return TASKS[config.task]


def model_config(config, vocab_size: int) -> LMConfig:
    m = config.model
    return LMConfig(
        vocab_size=vocab_size,
        d_model=m.d_model,
        num_layers=m.num_layers,
        mixer=m.mixer,
        mixer_options=_options(m.get("mixer_options")),
        channel_mixer=m.channel_mixer,
        num_heads=m.get("num_heads", 1),
        max_len=m.get("max_len", 2048),
        embed_dropout=m.get("embed_dropout", 0.0),
        short_conv=m.get("short_conv", 0),
    )


def optim_config(config, total_steps: int) -> OptimConfig:
    o = config.optim
    return OptimConfig(
        lr=o.lr,
        weight_decay=o.weight_decay,
        warmup_steps=o.warmup_steps,
        total_steps=total_steps,
        b1=o.b1,
        b2=o.b2,
        clip_norm=o.clip_norm,
    )


def step_config(config, model: LMConfig) -> StepConfig:
    t = config.train
    return StepConfig(
        compute_dtype=t.compute_dtype,
        grad_accum=t.grad_accum,
        dropout=model.embed_dropout > 0,
        seed=config.seed,
    )


def total_steps(config, steps_per_epoch: int) -> int:
    t = config.train
    steps = t.num_steps if t.get("num_steps", 0) else t.num_epochs * steps_per_epoch
    if steps < 1:
        raise ValueError(f"the run has {steps} steps: set train.num_steps or train.num_epochs")
    return steps


def fingerprint(config) -> str:
    """The config as JSON, stored in checkpoints to refuse resuming a different experiment."""
    return json.dumps(config.to_dict(), sort_keys=True, default=str)
