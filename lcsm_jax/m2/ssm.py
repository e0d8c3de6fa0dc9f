"""`SSMConv`: the recurrent form of the M2 long convolution, an EOS layer with DI e, o, s.

The kernel is a sum of damped complex exponentials per channel c (S4D-Lin, `lcsm_jax.nn.s4d`):
k[d, c] = Re Σ_r C[r,c] B̄[r,c] exp(d·Δ_c·Λ[r,c]). As an EOS recurrence (SPEC §1, §3) that is
e = 1 with B̄ folded into the read, o = exp(Δ_c Λ[r,c]) (full K×D, data-independent), an
elementwise read s = C ⊙ B̄ and i = w, so the whole sequence runs through `eos.eos_scan` and
decoding through `eos.eos_step` in O(K·C) per token. One head, D = C channels, K = state_dim.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import eos
from lcsm_jax.nn import s4d


class SSMConv(nnx.Module):
    """w [B, T, C] -> y [B, T, C] with y_t = Σ_{j<=t} k[t-j] ⊙ w_j, computed recurrently."""

    def __init__(self, channels: int, *, state_dim: int, rngs: nnx.Rngs):
        if not isinstance(state_dim, int) or state_dim < 1:
            raise ValueError(f"state_dim must be a positive int, got {state_dim!r}")
        K, C = state_dim, channels
        self.channels, self.state_dim = C, K
        p = s4d.init(rngs, (K, C), (C,))
        self.log_dt, self.log_neg_re = nnx.Param(p.log_dt), nnx.Param(p.log_neg_re)
        self.im, self.c_re, self.c_im = nnx.Param(p.im), nnx.Param(p.c_re), nnx.Param(p.c_im)

    def _terms(self):
        """(log o [K, C], read C ⊙ B̄ [K, C]) in complex64 (`nn.s4d.discretize`)."""
        dt_lam, b_bar = s4d.discretize(self.log_neg_re[...], self.im[...], self.log_dt[...][None])
        return dt_lam, s4d.complex_param(self.c_re[...], self.c_im[...]) * b_bar

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
