"""Selective-SSM oscillations: the paper's SSM parameterisation (c_type 0), Mamba and Mamba-2.

Δ_t (a softplus step size) both scales the input, i_t = Δ_t ⊙ u_t, and sets the decay
o_t = exp(Δ_t A). With A a full K×D matrix (c_type 0 / Mamba) the log-decay Δ_t[c] A[r,c] is full
K×D and needs a scan: it goes to the core as `eos.ProductDecay(d=Δ, p=A)`, built step by step;
Mamba-2's scalar A_h per head gives a scalar decay per head (chunked path).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcsm_jax import eos
from lcsm_jax.layers.oscillation import Oscillation
from lcsm_jax.layers.stages import dense, heads
from lcsm_jax.nn import s4d


def _inverse_softplus(y):
    return y + jnp.log(-jnp.expm1(-y))


def dt_bias_init(spec, key, shape) -> jax.Array:
    """A Δ bias b with softplus(b) log-uniform in [dt_min, dt_max] (the spec's options; Mamba)."""
    lo, hi = spec.option("dt_min", s4d.DT_MIN), spec.option("dt_max", s4d.DT_MAX)
    dt = jnp.exp(s4d.log_dt_init(key, shape, lo, hi))
    return _inverse_softplus(dt).astype(spec.param_dtype)


class SelectiveSSM(Oscillation):
    """Δ_t = softplus(W_2 W_1 x_t [+ b]) in R^D per head (rank-`rank` bottleneck); i ← Δ ⊙ i;
    A = -exp(A_log) with A_log[r, c] = log(r + 1) (S4D-real); o_t[r,c] = exp(Δ_t[c] A[r,c]).
    The decay is computed in float32. dt_bias=True adds Mamba's Δ bias (log-uniform init)."""

    STRUCTURE = "product"
    OPTIONS = {"rank": 16, "dt_bias": False, "dt_min": s4d.DT_MIN, "dt_max": s4d.DT_MAX}

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        rank = int(spec.option("rank", 16))
        self.down = dense(spec, dims.M, rank, rngs)
        dt_bias = bool(spec.option("dt_bias", False))
        self.up = dense(spec, rank, dims.M, rngs, bias=spec.bias or dt_bias)
        if dt_bias:
            self.up.bias[...] = dt_bias_init(spec, rngs.params(), (dims.M,))
        rows = np.log(np.arange(1, dims.K + 1, dtype=np.float64))
        a_log = np.broadcast_to(rows[None, :, None], (dims.H, dims.K, dims.D))
        self.a_log = nnx.Param(jnp.asarray(a_log, spec.param_dtype))

    def __call__(self, x_BxTxM, terms, ctx):
        delta = jax.nn.softplus(self.up(self.down(x_BxTxM)).astype(jnp.float32))
        delta_BxTxHxD = heads(delta, self.dims.H)
        a_HxKxD = -jnp.exp(self.a_log[...].astype(jnp.float32))
        log_o = eos.ProductDecay(d=delta_BxTxHxD, p=a_HxKxD[None, None])
        i = (delta_BxTxHxD * terms.i.astype(jnp.float32)).astype(terms.i.dtype)
        return terms._replace(i=i, log_o=log_o)


class ScalarSSM(Oscillation):
    """Mamba-2 (SSD): Δ_t = softplus(W x_t + b) in R^H, i ← Δ_t,h i, o_t = exp(Δ_t,h A_h) with a
    scalar A_h = -exp(A_log_h), A_log_h = log U[1, 16]: a scalar decay per head."""

    STRUCTURE = "scalar"
    OPTIONS = {"dt_min": s4d.DT_MIN, "dt_max": s4d.DT_MAX}

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.dt_proj = dense(spec, dims.M, dims.H, rngs, bias=False)
        self.dt_bias = nnx.Param(dt_bias_init(spec, rngs.params(), (dims.H,)))
        a = jax.random.uniform(rngs.params(), (dims.H,), jnp.float32, 1.0, 16.0)
        self.a_log = nnx.Param(jnp.log(a).astype(spec.param_dtype))

    def __call__(self, x_BxTxM, terms, ctx):
        z = (
            self.dt_proj(x_BxTxM).astype(jnp.float32)
            + self.dt_bias[...].astype(jnp.float32)[None, None]
        )
        delta_BxTxH = jax.nn.softplus(z)
        a_H = -jnp.exp(self.a_log[...].astype(jnp.float32))
        i = (delta_BxTxH[..., None] * terms.i.astype(jnp.float32)).astype(terms.i.dtype)
        log_o = eos.Decay(k=(delta_BxTxH * a_H[None, None])[..., None])
        return terms._replace(i=i, log_o=log_o)
