"""From an experiment `ConfigDict` (configs/*.py) to the typed `Experiment`: the one place that
reads a ConfigDict. Launchers call `translate`; the training loop and everything below it only
ever see the frozen dataclasses of `train/config.py`."""

from __future__ import annotations

import ml_collections

from lcsm_jax.data.mqar_task import MQARTask
from lcsm_jax.data.text.task import LMTask
from lcsm_jax.data.uea_task import UEATask
from lcsm_jax.lrcssm.solver import SolverConfig
from lcsm_jax.models.classifier import ClassifierConfig
from lcsm_jax.models.lm import LMConfig
from lcsm_jax.train.config import EarlyStop, Experiment, MeshConfig, TrainConfig
from lcsm_jax.train.optim import OptimConfig
from lcsm_jax.train.step import StepConfig


def _plain(value):
    """ConfigDicts (and FrozenConfigDicts) as plain dicts, recursively."""
    if isinstance(value, ml_collections.ConfigDict | ml_collections.FrozenConfigDict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _options(value) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(dict(_plain(value) or {}).items()))


def _mqar_data(c) -> MQARTask:
    d = c.data
    return MQARTask(
        vocab_size=d.vocab_size,
        seq_len=d.seq_len,
        num_kv=d.num_kv,
        num_train=d.num_train,
        num_test=d.num_test,
        power_a=d.power_a,
        random_non_queries=d.random_non_queries,
        seed=c.seed,
        test_slices=tuple(tuple(s) for s in d.get("test_slices", ())),
    )


def _lm_data(c) -> LMTask:
    d = c.data
    return LMTask(
        corpus=d.corpus,
        source=d.source,
        data_dir=d.data_dir,
        tokenizer=d.tokenizer,
        bpe_vocab_size=d.vocab_size,
        seq_len=d.seq_len,
        seed=c.seed,
        validation=d.validation,
        test=d.test,
        eval_max_windows=d.eval_max_windows,
    )


def _uea_data(c) -> UEATask:
    return UEATask(
        name=c.data.name,
        max_length=c.data.get("max_length"),
        seed=c.seed,
        data_dir=c.data.get("data_dir") or None,
    )


def _lm_model(c, vocab_size: int) -> LMConfig:
    m = c.model
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


def _classifier(c) -> ClassifierConfig:
    m = c.model
    options = dict(_options(m.get("mixer_options")))
    if m.mixer == "lrcssm" and "solver" in c:  # the Newton solve's settings (configs/uea.py)
        s = c.solver
        options["solver"] = SolverConfig(
            tol=s.tol,
            max_iter=s.max_iter,
            clip=s.clip,
            backend=s.backend,
            max_jacobian=s.get("max_jacobian", float("inf")),
        )
    return ClassifierConfig(
        hidden=m.hidden,
        num_blocks=m.num_blocks,
        mixer=m.mixer,
        mixer_options=tuple(sorted(options.items())),
    )


def _early_stop(t) -> EarlyStop | None:
    e = t.get("early_stop")
    if e is None or e.get("target") is None:
        return None
    return EarlyStop(target=float(e.target), metric=e.get("metric", ""), mode=e.get("mode", ""))


def _train(c, dropout: bool) -> TrainConfig:
    t = c.train
    return TrainConfig(
        batch_size=t.batch_size,
        num_steps=t.get("num_steps", 0),
        num_epochs=t.get("num_epochs", 1),
        eval_every=t.eval_every,
        eval_batch_size=t.eval_batch_size,
        log_every=t.log_every,
        save_every=t.save_every,
        keep_checkpoints=t.keep_checkpoints,
        async_checkpoints=t.get("async_checkpoints", True),
        step=StepConfig(
            compute_dtype=t.get("compute_dtype", "float32"),
            grad_accum=t.get("grad_accum", 1),
            dropout=dropout,
            seed=c.seed,
        ),
        early_stop=_early_stop(t),
    )


def _optim(c) -> OptimConfig:
    o = c.optim
    return OptimConfig(
        lr=o.lr,
        weight_decay=o.weight_decay,
        warmup_steps=o.warmup_steps,
        b1=o.b1,
        b2=o.b2,
        clip_norm=o.clip_norm,
    )


def translate(config) -> Experiment:
    """The typed experiment a config file describes. Already typed experiments pass through.

    Raises:
      ValueError: unknown task, or an invalid setting (the message names the field).
    """
    if isinstance(config, Experiment):
        return config
    task = config.task
    if task == "mqar":
        data = _mqar_data(config)
        model = _lm_model(config, data.vocab_size)
    elif task == "lm":
        data = _lm_data(config)
        model = _lm_model(config, data.vocab_size)
    elif task == "uea":
        data, model = _uea_data(config), _classifier(config)
    else:
        raise ValueError(f"unknown task {task!r}; valid: mqar, lm, uea")
    dropout = isinstance(model, LMConfig) and model.embed_dropout > 0
    return Experiment(
        task=task,
        data=data,
        model=model,
        optim=_optim(config),
        train=_train(config, dropout),
        mesh=MeshConfig(
            fsdp=config.mesh.fsdp,
            num_devices=config.mesh.get("num_devices", 0),
            seq=config.mesh.get("seq", 1),
        ),
        seed=config.seed,
    )
