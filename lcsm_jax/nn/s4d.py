"""The S4D-Lin diagonal state space (Gu et al., arXiv 2206.11893): its parameters, their init and
the zero-order-hold discretisation, shared by the EOS layer `layers.diagonal.S4DDiagonal` and
M2's recurrent long convolution `m2.ssm.SSMConv`.

Λ[r] = -exp(log_neg_re[r]) + i·im[r] with r the state index (axis -2 of [..., K, D]), init
-1/2 + iπr; the step Δ = exp(log_dt) is log-uniform in [dt_min, dt_max] at init; the state
transition is exp(ΔΛ) and the zero-order-hold input B̄ = (exp(ΔΛ) - 1)/Λ. C ~ CN(0, 1).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

DT_MIN, DT_MAX = 1e-3, 1e-1


class S4DParams(NamedTuple):
    """Initial values: log_dt [dt_shape]; log_neg_re, im, c_re, c_im [state_shape]."""

    log_dt: jax.Array
    log_neg_re: jax.Array
    im: jax.Array
    c_re: jax.Array
    c_im: jax.Array


def log_dt_init(key, shape, dt_min: float = DT_MIN, dt_max: float = DT_MAX, dtype=jnp.float32):
    """log Δ uniform in [log dt_min, log dt_max] (also Mamba's Δ init, `layers.ssm`)."""
    lo, hi = math.log(dt_min), math.log(dt_max)
    u = jax.random.uniform(key, shape, jnp.float32)
    return (lo + u * (hi - lo)).astype(dtype)


def init(
    rngs: nnx.Rngs,
    state_shape: tuple[int, ...],
    dt_shape: tuple[int, ...],
    *,
    dt_min: float = DT_MIN,
    dt_max: float = DT_MAX,
    dtype: Any = jnp.float32,
) -> S4DParams:
    """S4D-Lin initial values; keys are drawn from `rngs.params()` in the order log_dt, c_re,
    c_im (the order checkpoints were made with)."""
    log_dt = log_dt_init(rngs.params(), dt_shape, dt_min, dt_max, dtype)
    K = state_shape[-2]
    full = lambda v: jnp.asarray(np.broadcast_to(v, state_shape), dtype)  # noqa: E731
    std = math.sqrt(0.5)  # C = c_re + i c_im ~ CN(0, 1)
    c_re = std * jax.random.normal(rngs.params(), state_shape, dtype)
    c_im = std * jax.random.normal(rngs.params(), state_shape, dtype)
    return S4DParams(log_dt, full(math.log(0.5)), full(math.pi * np.arange(K)[:, None]), c_re, c_im)


def discretize(log_neg_re, im, log_dt) -> tuple[jax.Array, jax.Array]:
    """(ΔΛ, B̄ = (exp(ΔΛ) - 1)/Λ), complex64 from float32; log_dt broadcasts against Λ."""
    lam = jax.lax.complex(-jnp.exp(log_neg_re.astype(jnp.float32)), im.astype(jnp.float32))
    dt_lam = jnp.exp(log_dt.astype(jnp.float32)) * lam
    return dt_lam, jnp.expm1(dt_lam) / lam


def complex_param(re, im) -> jax.Array:
    """re + i·im in complex64."""
    return jax.lax.complex(re.astype(jnp.float32), im.astype(jnp.float32))
