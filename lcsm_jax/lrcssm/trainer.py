"""Time-series classification training (task "uea") with the project's training pieces.

The language-model loop (`lcsm_jax/train/loop.py`) is built around token batches and per-token
cross-entropy; classification needs masks, one label per series and an evaluation over a whole
test split, so it gets this small loop instead. It reuses the rest: the AdamW optimizer with
clipping (`train/optim.py`, configured through `experiment.optim_config`), the mesh and sharding
rules (`train/sharding.py`), `ModelParams`, orbax checkpoints with resume and the metric writer.
Batches are a pure function of (seed, step), so a resumed run sees the same batches.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcsm_jax.data import uea
from lcsm_jax.lrcssm.network import LrcSSM, LrcSSMConfig
from lcsm_jax.lrcssm.solver import SolverConfig
from lcsm_jax.nn.params import ModelParams
from lcsm_jax.train import experiment, optim, sharding
from lcsm_jax.train.checkpoint import Checkpointer, CheckpointError, abstract_like
from lcsm_jax.train.metrics import MetricWriter
from lcsm_jax.train.step import guarded_update


class NonFiniteLossError(RuntimeError):
    """A NaN/Inf loss or gradient; the last good checkpoint is kept."""


def model_config(config, dataset: uea.Dataset) -> LrcSSMConfig:
    m, s = config.model, config.solver
    return LrcSSMConfig(
        num_inputs=dataset.num_channels,
        num_classes=dataset.num_classes,
        hidden=m.hidden,
        state=m.state,
        num_blocks=m.num_blocks,
        mode=m.mode,
        complex_state=m.complex_state,
        solver=SolverConfig(
            tol=s.tol,
            max_iter=s.max_iter,
            clip=s.clip,
            backend=s.backend,
            max_jacobian=s.get("max_jacobian", float("inf")),
        ),
    )


def batch_rows(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
    """Rows of batch `step`: a slice of the epoch's permutation seeded by (seed, epoch)."""
    per_epoch = max(num_examples // batch_size, 1)
    epoch, index = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, 3, epoch]).permutation(num_examples)
    return perm[index * batch_size : (index + 1) * batch_size]


def _loss(model, batch):
    logits, iterations = model(batch["x"], batch["mask"])
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, batch["labels"][:, None], axis=1)[:, 0]
    weight = batch["weight"]
    count = jnp.maximum(jnp.sum(weight), 1.0)
    correct = (jnp.argmax(logits, -1) == batch["labels"]) * weight
    return jnp.sum(nll * weight) / count, {"correct": jnp.sum(correct), "iterations": iterations}


class Run:
    def __init__(self, config, workdir):
        if config.task != "uea":
            raise ValueError(f"the classification trainer runs task 'uea', got {config.task!r}")
        self.config, self.workdir = config, Path(workdir)
        self.dataset = uea.load(config.data.name, max_length=config.data.get("max_length"))
        self.model_config = model_config(config, self.dataset)
        self.params = ModelParams(lambda: LrcSSM(self.model_config, rngs=nnx.Rngs(config.seed)))
        self.mesh = sharding.make_mesh(config.mesh.fsdp, config.mesh.get("num_devices", 0))
        t = config.train
        n = self.mesh.devices.size
        if t.batch_size % n:
            raise ValueError(f"train.batch_size={t.batch_size} must split over the {n} devices")
        if t.batch_size > len(self.dataset.train):
            raise ValueError(
                f"train.batch_size={t.batch_size} exceeds the {len(self.dataset.train)} training "
                f"series of {self.dataset.name}"
            )
        self.steps_per_epoch = max(len(self.dataset.train) // t.batch_size, 1)
        self.total_steps = experiment.total_steps(config, self.steps_per_epoch)
        self.optim_config = experiment.optim_config(config, self.total_steps)
        self.tx = optim.make(self.optim_config)
        p_shardings = sharding.tree_shardings(self.params.abstract, self.mesh)
        abstract_opt = jax.eval_shape(self.tx.init, self.params.abstract)
        self.shardings = {
            "params": p_shardings,
            "opt_state": sharding.tree_shardings(abstract_opt, self.mesh),
            "step": sharding.replicated(self.mesh),
        }
        self.abstract = {
            "params": self.params.abstract,
            "opt_state": abstract_opt,
            "step": jax.ShapeDtypeStruct((), jnp.int32),
        }
        self.checkpoints = Checkpointer(
            self.workdir / "checkpoints", keep=t.keep_checkpoints, use_async=False
        )
        self.eval_batch = -(-t.eval_batch_size // n) * n
        self._train_step = jax.jit(
            self._step,
            in_shardings=(self.shardings, sharding.batch_sharding(self.mesh)),
            out_shardings=(self.shardings, sharding.replicated(self.mesh)),
            donate_argnums=0,
        )
        self._eval_step = jax.jit(
            lambda p, batch: _loss(self.params.model(p), batch)[1],
            in_shardings=(p_shardings, sharding.batch_sharding(self.mesh)),
            out_shardings=sharding.replicated(self.mesh),
        )

    def init_state(self):
        def init():
            p = self.params.init()
            return {"params": p, "opt_state": self.tx.init(p), "step": jnp.zeros((), jnp.int32)}

        return jax.jit(init, out_shardings=self.shardings)()

    def _step(self, state, batch):
        def loss_fn(p):
            return _loss(self.params.model(p), batch)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        new, grad_norm, finite = guarded_update(self.tx, state, grads, loss)
        metrics = {
            "loss": loss,
            "accuracy": aux["correct"] / jnp.maximum(jnp.sum(batch["weight"]), 1.0),
            "newton_iterations": aux["iterations"],
            "grad_norm": grad_norm,
            "finite": finite,
        }
        return new, metrics

    def _batch(self, split: uea.Split, rows: np.ndarray, size: int):
        pad = size - len(rows)
        take = np.concatenate([rows, np.zeros(pad, rows.dtype)]) if pad else rows
        weight = np.concatenate([np.ones(len(rows)), np.zeros(pad)]).astype(np.float32)
        host = {
            "x": split.x[take],
            "mask": split.mask[take],
            "labels": split.labels[take],
            "weight": weight,  # padded rows count for nothing
        }
        return sharding.put_batch(host, self.mesh)

    def train_batch(self, step: int):
        t = self.config.train
        rows = batch_rows(self.config.seed, step, len(self.dataset.train), t.batch_size)
        return self._batch(self.dataset.train, rows, t.batch_size)

    def evaluate(self, params, split: uea.Split) -> dict[str, float]:
        correct, iterations = 0.0, 0
        for start in range(0, len(split), self.eval_batch):
            rows = np.arange(start, min(start + self.eval_batch, len(split)))
            out = jax.device_get(self._eval_step(params, self._batch(split, rows, self.eval_batch)))
            correct += float(out["correct"])
            iterations = max(iterations, int(out["iterations"]))
        return {"accuracy": correct / len(split), "newton_iterations": iterations}

    def restore(self):
        state, meta = self.checkpoints.restore(abstract_like(self.abstract, self.shardings))
        if meta.get("config") != experiment.fingerprint(self.config):
            raise CheckpointError(
                f"the checkpoint in {self.checkpoints.directory} was written by a different "
                "config; use another --workdir (nothing was changed)"
            )
        return state


def train(config, workdir) -> dict:
    """Trains (resuming from `workdir`); returns a summary with the final test accuracy."""
    run = Run(config, workdir)
    t = config.train
    state = run.restore() if run.checkpoints.latest_step() is not None else run.init_state()
    writer = MetricWriter(run.workdir, enabled=jax.process_index() == 0)
    start = int(state["step"])
    meta = {"config": experiment.fingerprint(config)}
    summary = {"dataset": run.dataset.name, "start_step": start}
    began = time.perf_counter()
    try:
        for step in range(start, run.total_steps):
            state, metrics = run._train_step(state, run.train_batch(step))
            done = step + 1 == run.total_steps
            if (step + 1) % t.log_every == 0 or done:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not values.pop("finite"):
                    raise NonFiniteLossError(
                        f"non-finite loss or gradient at step {step + 1}: {values}; stopped"
                    )
                writer.write(step + 1, "train", values)
            if (step + 1) % t.eval_every == 0 or done:
                writer.write(step + 1, "test", run.evaluate(state["params"], run.dataset.test))
            if (step + 1) % t.save_every == 0 or done:
                run.checkpoints.save(step + 1, state, meta)
    finally:
        run.checkpoints.close()
        writer.close()
    summary["seconds"] = time.perf_counter() - began
    summary["final_step"] = int(state["step"])
    train_eval = run.evaluate(state["params"], run.dataset.train)
    test_eval = run.evaluate(state["params"], run.dataset.test)
    summary["train_accuracy"] = train_eval["accuracy"]
    summary["newton_iterations"] = max(
        train_eval["newton_iterations"], test_eval["newton_iterations"]
    )
    # One entry per evaluated split, as the launcher prints them.
    summary["test"] = {run.dataset.name: test_eval["accuracy"]}
    if jax.process_index() == 0:
        (run.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
