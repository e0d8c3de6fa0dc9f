"""The training loop: build everything from the config, resume, train, evaluate, checkpoint.

Metrics of step n are fetched after step n+1 is dispatched, so the host never stalls the device.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx
from tqdm import tqdm

from lcsm_jax.models.lm import LanguageModel
from lcsm_jax.nn.params import ModelParams
from lcsm_jax.train import experiment, optim, sharding
from lcsm_jax.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from lcsm_jax.train.metrics import MetricWriter
from lcsm_jax.train.step import make_train_step


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss or gradient; the last good checkpoint is kept."""


def maybe_initialize_distributed() -> None:
    """Multi-host: initialise when the launcher's environment describes a cluster."""
    cluster_vars = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_STEP_NUM_TASKS")
    if any(os.environ.get(v) for v in cluster_vars) and not jax.distributed.is_initialized():
        jax.distributed.initialize()


class Run:
    """Everything a run (or its evaluation) needs, built from the config."""

    def __init__(self, config, workdir, *, create: bool = True):
        kind = experiment.task_kind(config)
        self.config, self.workdir = config, Path(workdir)
        self.checkpoints = Checkpointer(
            self.workdir / "checkpoints",
            keep=config.train.keep_checkpoints,
            use_async=config.train.async_checkpoints,
            create=create,
        )
        self.task = kind.make_task(config)
        self.model_config = experiment.model_config(config, self.task.vocab_size)
        seed = config.seed
        self.params = ModelParams(lambda: LanguageModel(self.model_config, rngs=nnx.Rngs(seed)))
        self.mesh = sharding.make_mesh(config.mesh.fsdp, config.mesh.get("num_devices", 0))
        self.params_shardings = sharding.tree_shardings(self.params.abstract, self.mesh)
        self.data = kind.make_data(self.task, config.train.batch_size)
        self.total_steps = experiment.total_steps(config, self.data.steps_per_epoch)
        self.optim_config = experiment.optim_config(config, self.total_steps)
        self.tx = optim.make(self.optim_config)
        abstract_opt = jax.eval_shape(self.tx.init, self.params.abstract)
        self.state_shardings = {
            "params": self.params_shardings,
            "opt_state": sharding.tree_shardings(abstract_opt, self.mesh),
            "step": sharding.replicated(self.mesh),
        }
        self.abstract_state = {
            "params": self.params.abstract,
            "opt_state": abstract_opt,
            "step": jax.ShapeDtypeStruct((), jnp.int32),
        }
        self.evaluator = kind.make_evaluator(
            self.params, self.mesh, self.params_shardings, self.data, config.train.eval_batch_size
        )

    def init_state(self):
        def init():
            p = self.params.init()
            return {"params": p, "opt_state": self.tx.init(p), "step": jnp.zeros((), jnp.int32)}

        return jax.jit(init, out_shardings=self.state_shardings)()

    def restore(self, step: int | None = None, *, same_config: bool = True):
        """Latest (or `step`) checkpoint; training insists on the config it was written with."""
        target = abstract_like(self.abstract_state, self.state_shardings)
        state, meta = self.checkpoints.restore(target, step)
        if same_config and meta.get("config") != experiment.fingerprint(self.config):
            raise CheckpointError(
                f"the checkpoint in {self.checkpoints.directory} was written by a different "
                "config; use another --workdir (nothing was changed)"
            )
        return state, meta

    def meta(self, finished: bool = False) -> dict:
        # MQAR batches are a pure function of (seed, step): the step is the iterator state.
        meta = {"config": experiment.fingerprint(self.config), "finished": finished}
        if hasattr(self.data, "get_state"):  # a data iterator (grain): saved to resume exactly
            meta["data"] = self.data.get_state()
        return meta


def train(config, workdir) -> dict:
    """Trains (resuming from the latest checkpoint in `workdir`); returns the final summary."""
    maybe_initialize_distributed()
    run = Run(config, workdir)
    t = config.train
    finished = False
    if run.checkpoints.latest_step() is not None:
        state, meta = run.restore()
        finished = bool(meta.get("finished"))
        if "data" in meta:
            run.data.set_state(meta["data"])
    else:
        state = run.init_state()
    schedule = optim.schedule(run.optim_config)
    step_config = experiment.step_config(config, run.model_config)
    train_step = make_train_step(
        run.params, run.tx, step_config, run.mesh, run.state_shardings, schedule
    )
    writer = MetricWriter(run.workdir, enabled=jax.process_index() == 0)
    start = int(state["step"])
    tokens_per_batch = t.batch_size * run.task.seq_len
    summary = {"start_step": start, "stopped": "completed"}
    end = start if finished else run.total_steps
    saved_step = start
    pending = None
    bar = tqdm(
        total=run.total_steps, initial=start, disable=jax.process_index() != 0, dynamic_ncols=True
    )
    last_time = time.perf_counter()

    def report(step, metrics, seconds):
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not values.pop("finite"):
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {step} (loss={values['loss']}, "
                f"grad_norm={values['grad_norm']}); stopped, the last good checkpoint "
                f"(step {saved_step}) in {run.checkpoints.directory} is kept"
            )
        values["tokens_per_s"] = tokens_per_batch / max(seconds, 1e-9)
        if step % t.log_every == 0 or step == run.total_steps:
            writer.write(step, "train", values)
        bar.set_postfix(
            loss=f"{values['loss']:.3f}",
            acc=f"{values['accuracy']:.3f}",
            tok_s=f"{values['tokens_per_s']:.0f}",
        )
        return values

    try:
        for step in range(start, end):
            batch = sharding.put_batch(run.data.train_batch(step), run.mesh)
            state, metrics = train_step(state, batch)
            if pending is not None:
                report(*pending)
            now = time.perf_counter()
            pending = (step + 1, metrics, now - last_time)
            last_time = now
            bar.update(1)
            done = step + 1 == run.total_steps
            if (step + 1) % t.eval_every == 0 or done:
                report(*pending)
                pending = None
                accuracies = run.evaluator(state["params"])
                writer.write(step + 1, "test", accuracies)
                summary["test"] = accuracies
                first = next(iter(accuracies.values()))
                if t.get("target_accuracy") is not None and first >= t.target_accuracy:
                    summary["stopped"] = f"target accuracy {t.target_accuracy} reached"
                    done = True
            if (step + 1) % t.save_every == 0 or done:
                run.checkpoints.save(step + 1, state, run.meta(finished=done))
                saved_step = step + 1
            if done:
                break
        if pending is not None:
            report(*pending)
    finally:
        bar.close()
        run.checkpoints.close()
        writer.close()
    summary["final_step"] = int(state["step"])
    if "test" not in summary:
        summary["test"] = run.evaluator(state["params"])
    if jax.process_index() == 0:
        (run.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
