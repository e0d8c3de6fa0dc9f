"""The one training loop: any `Task`, built from a typed `Experiment`; resume, train, evaluate,
checkpoint.

Metrics of step n are fetched after step n+1 is dispatched, so the host never stalls the device;
every step's finiteness is checked (one step late), so no diverged step goes unnoticed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx
from tqdm import tqdm

from lcsm_jax.nn.params import ModelParams
from lcsm_jax.train import experiment as experiments
from lcsm_jax.train import optim, sharding, tasks
from lcsm_jax.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from lcsm_jax.train.config import EarlyStop
from lcsm_jax.train.metrics import MetricWriter
from lcsm_jax.train.step import make_train_step

# Bumped whenever what a checkpoint holds changes meaning; older checkpoints are refused.
CHECKPOINT_FORMAT = 2
# Seconds between progress-bar refreshes when stderr is not a terminal (a log file).
LOG_INTERVAL_S = 30.0


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss or gradient; the last good checkpoint is kept. Raised by
    `train` with `.summary`: the run's summary so far (task, main metric, start step)."""

    summary: dict | None = None


def maybe_initialize_distributed() -> None:
    """Multi-host: initialise when the launcher's environment describes a cluster."""
    cluster_vars = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_STEP_NUM_TASKS")
    if any(os.environ.get(v) for v in cluster_vars) and not jax.distributed.is_initialized():
        jax.distributed.initialize()


class Run:
    """Everything a run (or its evaluation) needs, built from the experiment (a typed
    `Experiment`, or a config file's ConfigDict, translated once)."""

    def __init__(self, experiment, workdir, *, create: bool = True):
        self.experiment = exp = experiments.translate(experiment)
        self.workdir = Path(workdir)
        self.checkpoints = Checkpointer(
            self.workdir / "checkpoints",
            keep=exp.train.keep_checkpoints,
            use_async=exp.train.async_checkpoints,
            create=create,
        )
        self.task = tasks.make(exp)
        self.data = self.task.data
        self.params = ModelParams(lambda: self.task.make_model(nnx.Rngs(exp.seed)))
        self.mesh = sharding.make_mesh(exp.mesh.fsdp, exp.mesh.num_devices, exp.mesh.seq)
        n = sharding.batch_devices(self.mesh)
        if exp.train.batch_size % n:
            raise ValueError(f"train.batch_size={exp.train.batch_size} must split over {n} devices")
        self.params_shardings = sharding.tree_shardings(self.params.abstract, self.mesh)
        self.total_steps = exp.train.total_steps(self.task.steps_per_epoch)
        self.optim_config = dataclasses.replace(exp.optim, total_steps=self.total_steps)
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
        self.evaluator = self.task.make_evaluator(
            self.params, self.mesh, self.params_shardings, exp.train.eval_batch_size
        )
        self.early_stop = self._early_stop(exp.train.early_stop)

    def _early_stop(self, stop: EarlyStop | None) -> EarlyStop | None:
        if stop is None:
            return None
        metric = stop.metric or self.task.main_metric
        if metric not in self.evaluator.metric_names:
            raise ValueError(
                f"train.early_stop.metric={metric!r} is not evaluated by task "
                f"{self.experiment.task!r}; valid: {', '.join(self.evaluator.metric_names)}"
            )
        mode = stop.mode or ("max" if self.task.maximize else "min")
        return dataclasses.replace(stop, metric=metric, mode=mode)

    def init_state(self):
        def init():
            p = self.params.init()
            return {"params": p, "opt_state": self.tx.init(p), "step": jnp.zeros((), jnp.int32)}

        return jax.jit(init, out_shardings=self.state_shardings)()

    def restore(self, step: int | None = None, *, same_config: bool = True):
        """Latest (or `step`) checkpoint; training insists on the experiment it was written with."""
        target = abstract_like(self.abstract_state, self.state_shardings)
        where = self.checkpoints.directory
        meta = self.checkpoints.meta(step)
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"the checkpoint in {where} was written by an earlier version of lcsm_jax "
                f"(checkpoint format {meta.get('format', 1)}, this version reads "
                f"{CHECKPOINT_FORMAT}); it was not loaded and is left untouched: train again "
                "in another --workdir"
            )
        if same_config and meta.get("experiment") != self.experiment.fingerprint():
            raise CheckpointError(
                f"the checkpoint in {where} was written by a different config; use another "
                "--workdir (nothing was changed)"
            )
        return self.checkpoints.restore(target, step)

    def meta(self, finished: bool = False) -> dict:
        meta = {
            "format": CHECKPOINT_FORMAT,
            "experiment": self.experiment.fingerprint(),
            "finished": finished,
        }
        data_state = self.task.data_state()
        if data_state is not None:
            meta["data"] = data_state
        return meta


def _progress_bar(total: int, initial: int) -> tqdm:
    terminal = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=initial,
        disable=jax.process_index() != 0,
        dynamic_ncols=terminal,
        mininterval=0.1 if terminal else LOG_INTERVAL_S,
        maxinterval=LOG_INTERVAL_S if terminal else 10 * LOG_INTERVAL_S,
    )


def train(experiment, workdir) -> dict:
    """Trains (resuming from the latest checkpoint in `workdir`); returns the final summary."""
    maybe_initialize_distributed()
    run = Run(experiment, workdir)
    t = run.experiment.train
    finished = False
    if run.checkpoints.latest_step() is not None:
        state, meta = run.restore()
        finished = bool(meta.get("finished"))
        if "data" in meta:
            run.task.restore_data_state(meta["data"])
    else:
        state = run.init_state()
    train_step = make_train_step(
        run.task.loss,
        run.params,
        run.tx,
        t.step,
        run.mesh,
        run.state_shardings,
        optim.schedule(run.optim_config),
    )
    writer = MetricWriter(run.workdir, enabled=jax.process_index() == 0)
    start = int(state["step"])
    summary = {
        "task": run.experiment.task,
        "main_metric": run.task.main_metric,
        "maximize": run.task.maximize,
        "start_step": start,
        "stopped": "completed",
    }
    end = start if finished else run.total_steps
    saved_step = start
    pending = None
    bar = _progress_bar(run.total_steps, start)
    began = last_time = time.perf_counter()

    def report(step, metrics, seconds):
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not values.pop("finite"):
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {step} (loss={values['loss']}, "
                f"grad_norm={values['grad_norm']}); stopped, the last good checkpoint "
                f"(step {saved_step}) in {run.checkpoints.directory} is kept"
            )
        values["tokens_per_s"] = run.task.tokens_per_batch / max(seconds, 1e-9)
        if step % t.log_every == 0 or step == run.total_steps:
            writer.write(step, "train", values)
        bar.set_postfix(
            loss=f"{values['loss']:.3f}",
            acc=f"{values['accuracy']:.3f}",
            tok_s=f"{values['tokens_per_s']:.0f}",
            refresh=False,  # the bar's own interval decides when to print
        )

    try:
        for step in range(start, end):
            batch = sharding.put_batch(run.task.train_batch(step), run.mesh)
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
                results = run.evaluator(state["params"])
                writer.write(step + 1, "test", results)
                summary["test"] = results
                stop = run.early_stop
                if stop is not None and stop.reached(results[stop.metric]):
                    summary["stopped"] = f"early stop: {stop.metric} reached {stop.target}"
                    done = True
            if (step + 1) % t.save_every == 0 or done:
                run.checkpoints.save(step + 1, state, run.meta(finished=done))
                saved_step = step + 1
            if done:
                break
        if pending is not None:
            report(*pending)
    except NonFiniteLossError as err:
        err.summary = summary  # what the run is (task, main metric) for a caller's record
        raise
    finally:
        bar.close()
        run.checkpoints.close()
        writer.close()
    summary["final_step"] = int(state["step"])
    summary["seconds"] = time.perf_counter() - began
    if "test" not in summary:
        summary["test"] = run.evaluator(state["params"])
    if jax.process_index() == 0:
        (run.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
