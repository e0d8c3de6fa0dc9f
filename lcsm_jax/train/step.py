"""The pure train and eval steps, jitted once with explicit shardings.

State is a dict {"params", "opt_state", "step"}. A step whose loss or gradient norm is not finite
leaves the state unchanged and reports `finite = False`; the loop then stops, so the last good
checkpoint is never overwritten by a diverged one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from lcsm_jax.data.mqar import IGNORE
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


def cross_entropy(logits_BxTxV, labels_BxT):
    """Mean token cross-entropy over labelled positions (labels != -100), plus counts."""
    mask = labels_BxT != IGNORE
    logp = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, jnp.where(mask, labels_BxT, 0)[..., None], -1)[..., 0]
    correct = (jnp.argmax(logits_BxTxV, -1) == labels_BxT) & mask
    count = jnp.sum(mask)
    sums = {"nll": jnp.sum(nll * mask), "correct": jnp.sum(correct), "count": count}
    return sums["nll"] / jnp.maximum(count, 1), sums


def example_accuracy(logits_BxTxV, labels_BxT):
    """[B] per-example accuracy (mean over its labelled positions) and [B] has-labels flags."""
    mask = labels_BxT != IGNORE
    correct = (jnp.argmax(logits_BxTxV, -1) == labels_BxT) & mask
    count = jnp.sum(mask, axis=1)
    return jnp.sum(correct, axis=1) / jnp.maximum(count, 1), count > 0


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
    params: ModelParams,
    tx: optax.GradientTransformation,
    config: StepConfig,
    mesh,
    state_shardings,
    schedule=None,
):
    """Returns the jitted `train_step(state, batch) -> (state, metrics)` (state donated)."""
    compute = COMPUTE_DTYPES[config.compute_dtype]

    def loss_fn(p, batch, key):
        model = params.model(_cast(p, compute))
        logits = model(batch["inputs"], dropout_key=key)
        return cross_entropy(logits, batch["labels"])

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def gradients(p, batch, key):
        if config.grad_accum == 1:
            (_, sums), grads = grad_fn(p, batch, key)
            return grads, sums
        A = config.grad_accum
        micro = jax.tree.map(lambda x: x.reshape(A, x.shape[0] // A, *x.shape[1:]), batch)

        def accumulate(carry, xs):
            index, mb = xs
            (_, sums), grads = grad_fn(
                p, mb, None if key is None else jax.random.fold_in(key, index)
            )
            return jax.tree.map(jnp.add, carry, (grads, sums)), None

        zeros = (jax.tree.map(jnp.zeros_like, p), _zero_sums())
        (grads, sums), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(A), micro))
        return jax.tree.map(lambda g: g / A, grads), sums

    def train_step(state, batch):
        key = None
        if config.dropout:
            key = jax.random.fold_in(jax.random.key(config.seed), state["step"])
        grads, sums = gradients(state["params"], batch, key)
        loss = sums["nll"] / jnp.maximum(sums["count"], 1)
        new, grad_norm, finite = guarded_update(tx, state, grads, loss)
        metrics = {
            "loss": loss,
            "accuracy": sums["correct"] / jnp.maximum(sums["count"], 1),
            "tokens": sums["count"],
            "grad_norm": grad_norm,
            "finite": finite,
        }
        if schedule is not None:
            metrics["lr"] = schedule(state["step"])
        return new, metrics

    return jax.jit(
        train_step,
        in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )


def _zero_sums():
    int_zero = jnp.zeros((), jnp.int32)
    return {"nll": jnp.zeros((), jnp.float32), "correct": int_zero, "count": int_zero}


def make_eval_step(params: ModelParams, mesh, params_shardings):
    """Returns jitted `eval_step(params, batch) -> ([B] example accuracy, [B] has-labels)`."""

    def eval_step(p, batch):
        return example_accuracy(params.model(p)(batch["inputs"]), batch["labels"])

    return jax.jit(
        eval_step,
        in_shardings=(params_shardings, sharding.batch_sharding(mesh)),
        out_shardings=sharding.replicated(mesh),
    )
