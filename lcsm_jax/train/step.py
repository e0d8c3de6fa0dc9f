"""The pure train step, jitted once with explicit shardings, for any task's loss.

State is a dict {"params", "opt_state", "step"}. A step whose loss or gradient norm is not finite
leaves the state unchanged and reports `finite = False`; the loop then stops, so the last good
checkpoint is never overwritten by a diverged one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from lcsm_jax.nn.params import ModelParams
from lcsm_jax.train import sharding

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class StepConfig:
    compute_dtype: str = "float32"  # bfloat16: params cast for the forward, kept float32
    grad_accum: int = 1
    dropout: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"train.compute_dtype={self.compute_dtype!r}; valid: {', '.join(COMPUTE_DTYPES)}"
            )
        if self.grad_accum < 1:
            raise ValueError(f"train.grad_accum must be >= 1, got {self.grad_accum}")


def _cast(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def guarded_update(tx, state, grads, loss):
    """One optimizer update of {params, opt_state, step}; a NaN/Inf loss or gradient leaves the
    state unchanged (the loop then stops). Returns (state, grad_norm, finite)."""
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new = {
        "params": optax.apply_updates(state["params"], updates),
        "opt_state": opt_state,
        "step": state["step"] + 1,
    }
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state), grad_norm, finite


def make_train_step(
    task_loss: Callable,
    params: ModelParams,
    tx: optax.GradientTransformation,
    config: StepConfig,
    mesh,
    state_shardings,
    schedule=None,
):
    """Returns the jitted `train_step(state, batch) -> (state, metrics)` (state donated).

    `task_loss(model, batch, dropout_key) -> (sums, peaks)`: `sums` holds "nll", "correct" and
    "count" summed over the batch (and any other sums), `peaks` values that combine by max (e.g.
    Newton iterations). Micro-batches of gradient accumulation add their sums and max their
    peaks; the loss is sums["nll"] / sums["count"].
    """
    compute = COMPUTE_DTYPES[config.compute_dtype]

    def loss_fn(p, batch, key):
        sums, peaks = task_loss(params.model(_cast(p, compute)), batch, key)
        return sums["nll"] / jnp.maximum(sums["count"], 1), (sums, peaks)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def gradients(p, batch, key):
        if config.grad_accum == 1:
            (_, aux), grads = grad_fn(p, batch, key)
            return grads, aux
        A = config.grad_accum
        micro = jax.tree.map(lambda x: x.reshape(A, x.shape[0] // A, *x.shape[1:]), batch)

        def accumulate(carry, xs):
            index, mb = xs
            mb_key = None if key is None else jax.random.fold_in(key, index)
            (_, (sums, peaks)), grads = grad_fn(p, mb, mb_key)
            total_grads, (total_sums, total_peaks) = carry
            return (
                jax.tree.map(jnp.add, total_grads, grads),
                (
                    jax.tree.map(jnp.add, total_sums, sums),
                    jax.tree.map(jnp.maximum, total_peaks, peaks),
                ),
            ), None

        first = jax.tree.map(lambda x: x[0], micro)
        shapes = jax.eval_shape(grad_fn, p, first, key)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (shapes[1], shapes[0][1]))
        (grads, aux), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(A), micro))
        return jax.tree.map(lambda g: g / A, grads), aux

    def train_step(state, batch):
        key = None
        if config.dropout:
            key = jax.random.fold_in(jax.random.key(config.seed), state["step"])
        grads, (sums, peaks) = gradients(state["params"], batch, key)
        count = jnp.maximum(sums["count"], 1)
        loss = sums["nll"] / count
        new, grad_norm, finite = guarded_update(tx, state, grads, loss)
        metrics = {
            "loss": loss,
            "accuracy": sums["correct"] / count,
            **{k: v for k, v in sums.items() if k not in ("nll", "correct")},
            **peaks,
            "grad_norm": grad_norm,
            "finite": finite,
        }
        if schedule is not None:
            metrics["lr"] = schedule(state["step"])
        return new, metrics

    return sharding.jit_batch_step(
        train_step, mesh, state_shardings, (state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )  # fmt: skip
