"""`SSMConv`: the recurrent form of the M2 long convolution, an EOS layer with DI e, o, s.

The kernel is a sum of damped complex exponentials per channel c (S4D-Lin initialisation):
k[d, c] = Re Σ_r C[r,c] B̄[r,c] exp(d·Δ_c·Λ[r,c]). As an EOS recurrence (SPEC §1, §3) that is
e = 1 with B̄ folded into the read, o = exp(Δ_c Λ[r,c]) (full K×D, data-independent), an
elementwise read s = C ⊙ B̄ and i = w, so the whole sequence runs through `eos.eos_scan` and
decoding through `eos.eos_step` in O(K·C) per token. One head, D = C channels, K = state_dim.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcsm_jax import eos

DT_MIN, DT_MAX = 1e-3, 1e-1


class SSMConv(nnx.Module):
    """w [B, T, C] -> y [B, T, C] with y_t = Σ_{j<=t} k[t-j] ⊙ w_j, computed recurrently."""

    def __init__(self, channels: int, *, state_dim: int, rngs: nnx.Rngs):
        if not isinstance(state_dim, int) or state_dim < 1:
            raise ValueError(f"state_dim must be a positive int, got {state_dim!r}")
        K, C = state_dim, channels
        self.channels, self.state_dim = C, K
        u = jax.random.uniform(rngs.params(), (C,), jnp.float32)
        lo, hi = math.log(DT_MIN), math.log(DT_MAX)
        self.log_dt = nnx.Param(lo + u * (hi - lo))
        self.log_neg_re = nnx.Param(jnp.full((K, C), math.log(0.5), jnp.float32))
        self.im = nnx.Param(jnp.asarray(np.broadcast_to(np.pi * np.arange(K)[:, None], (K, C))))
        std = math.sqrt(0.5)
        self.c_re = nnx.Param(std * jax.random.normal(rngs.params(), (K, C), jnp.float32))
        self.c_im = nnx.Param(std * jax.random.normal(rngs.params(), (K, C), jnp.float32))

    def _terms(self):
        """(log o [K, C], read C ⊙ B̄ [K, C]) in complex64; B̄ = (exp(ΔΛ) - 1)/Λ (zero-order hold)."""
        lam = jax.lax.complex(-jnp.exp(self.log_neg_re[...]), self.im[...])
        dt_lam = jnp.exp(self.log_dt[...])[None] * lam
        b_bar = jnp.expm1(dt_lam) / lam
        return dt_lam, jax.lax.complex(self.c_re[...], self.c_im[...]) * b_bar

    def kernel(self, length: int) -> jax.Array:
        """The materialised kernel k [length, C] (float32): the same operator as a long conv."""
        dt_lam, read = self._terms()
        d = jnp.arange(length, dtype=jnp.float32)[:, None, None]
        return jnp.sum(read[None] * jnp.exp(d * dt_lam[None]), axis=1).real

    def __call__(self, w_BxTxC: jax.Array, segment_ids=None) -> jax.Array:
        B, T, C = w_BxTxC.shape
        log_o, read = self._terms()
        e = jnp.ones((B, T, 1, self.state_dim), jnp.complex64)
        i = w_BxTxC.astype(jnp.complex64)[:, :, None]
        y, _ = eos.eos_scan(
            e, i, log_o[None, None, None], read[None, None, None], segment_ids=segment_ids
        )
        return y[:, :, 0].real.astype(w_BxTxC.dtype)

    def init_cache(self, batch_size: int):
        return jnp.zeros((batch_size, 1, self.state_dim, self.channels), jnp.complex64)

    def step(self, w_BxC: jax.Array, memory_BxHxKxC):
        B = w_BxC.shape[0]
        log_o, read = self._terms()
        e = jnp.ones((B, 1, self.state_dim), jnp.complex64)
        i = w_BxC.astype(jnp.complex64)[:, None]
        y, memory = eos.eos_step(e, i, log_o[None, None], read[None, None], memory_BxHxKxC)
        return y[:, 0].real.astype(w_BxC.dtype), memory
