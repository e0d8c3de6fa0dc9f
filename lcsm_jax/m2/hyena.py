"""`HyenaConv`: the M2 long convolution with an implicit Hyena kernel, `k ∗ w` per channel.

The kernel is not finite-state, so decoding keeps the whole input history: `init_cache` holds a
[B, max_len, C] buffer and `step` is an O(max_len) dot product with the reversed kernel. Past
`max_len` tokens there is no kernel to apply: `step` then returns NaN rather than a silently
wrong value (a traced position cannot raise inside jit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.m2.filter import HyenaFilter
from lcsm_jax.m2.longconv import long_conv


class HyenaConv(nnx.Module):
    """w [B, T, C] -> y [B, T, C], y_t = Σ_j k[t-j] ⊙ w_j (plus the backward kernel if any)."""

    def __init__(
        self,
        channels: int,
        *,
        max_len: int,
        order: int,
        emb_dim: int,
        freq: float,
        bidirectional: bool,
        method: str,
        rngs: nnx.Rngs,
    ):
        self.filter = HyenaFilter(
            channels,
            max_len=max_len,
            order=order,
            emb_dim=emb_dim,
            freq=freq,
            bidirectional=bidirectional,
            rngs=rngs,
        )
        self.method, self.bidirectional = method, bidirectional
        self.channels, self.max_len = channels, max_len

    def kernel(self, length: int):
        """k [length, C] (or (k_fwd, k_bwd) when bidirectional), float32."""
        return self.filter(length)

    def __call__(self, w_BxTxC: jax.Array, segment_ids=None) -> jax.Array:
        if segment_ids is not None:
            raise ValueError(
                "the Hyena long convolution of 'm2' does not support segment_ids (packed "
                "sequences: its kernel would mix them); use 'm2_ssm', whose recurrent form "
                "restarts at segment boundaries"
            )
        k = self.kernel(w_BxTxC.shape[1])
        k_fwd, k_bwd = k if self.bidirectional else (k, None)
        return long_conv(w_BxTxC, k_fwd, k_bwd, method=self.method)

    def init_cache(self, batch_size: int):
        return {
            "history": jnp.zeros((batch_size, self.max_len, self.channels), jnp.float32),
            "pos": jnp.zeros((), jnp.int32),
        }

    def step(self, w_BxC: jax.Array, cache):
        if self.bidirectional:
            raise ValueError("a bidirectional M2 mixer sees future tokens and cannot decode")
        pos = cache["pos"]
        history = jax.lax.dynamic_update_slice_in_dim(
            cache["history"], w_BxC[:, None].astype(jnp.float32), pos, axis=1
        )
        lag = pos - jnp.arange(self.max_len)
        k_LxC = self.kernel(self.max_len)
        k_rev_LxC = jnp.where((lag >= 0)[:, None], k_LxC[jnp.clip(lag, 0)], 0.0)
        y = jnp.einsum("blc,lc->bc", history, k_rev_LxC)
        y = jnp.where(pos < self.max_len, y, jnp.nan).astype(w_BxC.dtype)
        return y, {"history": history, "pos": pos + 1}
