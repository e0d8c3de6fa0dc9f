"""A causal depthwise short convolution over time (token shift), as in Mamba, GLA, HGRN2 and M2."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from lcsm_jax.nn.init import INIT_STD


class ShortConv(nnx.Module):
    """y_t = Σ_{i<k} w_i ⊙ x_{t-i} per channel (x_{<0} = 0); `step` keeps the last k-1 inputs."""

    def __init__(self, embed_dim: int, kernel_size: int, *, rngs: nnx.Rngs):
        if kernel_size < 1:
            raise ValueError(f"short_conv kernel size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        # Identity at init (w_0 = 1, others 0) so the block starts as the plain mixer.
        w = jnp.zeros((kernel_size, embed_dim)).at[0].set(1.0)
        self.weight = nnx.Param(w + INIT_STD * nnx.initializers.normal()(rngs.params(), w.shape))

    def __call__(self, x_BxTxM, segment_ids=None):
        T = x_BxTxM.shape[1]
        w_KxM = self.weight[...]
        y = x_BxTxM * w_KxM[0][None, None]
        for shift in range(1, min(self.kernel_size, T)):
            past = jnp.pad(x_BxTxM, ((0, 0), (shift, 0), (0, 0)))[:, :T]
            if segment_ids is not None:  # no mixing across packed sequences
                same = jnp.pad(segment_ids, ((0, 0), (shift, 0)), constant_values=-1)[:, :T]
                past = jnp.where((same == segment_ids)[..., None], past, 0)
            y = y + past * w_KxM[shift][None, None]
        return y

    def init_cache(self, batch_size: int, embed_dim: int):
        return jnp.zeros((batch_size, self.kernel_size - 1, embed_dim))

    def step(self, x_BxM, cache_BxKxM):
        window = jnp.concatenate([x_BxM[:, None], cache_BxKxM], axis=1)  # newest first
        y = jnp.einsum("bkm,km->bm", window, self.weight[...])
        return y, window[:, : self.kernel_size - 1]
