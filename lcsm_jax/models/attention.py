"""Causal softmax multi-head attention: the quadratic baseline, with a KV cache for decoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.nn.init import dense


class CausalAttention(nnx.Module):
    """x [B, T, M] -> [B, T, M]; `init_cache` / `step` decode one token at a time."""

    def __init__(self, embed_dim: int, *, num_heads: int = 1, max_len: int, rngs: nnx.Rngs):
        if embed_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide embed_dim={embed_dim}")
        self.num_heads, self.max_len = num_heads, max_len
        self.qkv = dense(embed_dim, 3 * embed_dim, rngs)
        self.out = dense(embed_dim, embed_dim, rngs)

    def _heads(self, x_BxTxM):
        B, T, M = x_BxTxM.shape
        qkv = self.qkv(x_BxTxM).reshape(B, T, 3, self.num_heads, M // self.num_heads)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def __call__(self, x_BxTxM, *, segment_ids=None):
        B, T, M = x_BxTxM.shape
        q_BxTxHxDh, k_BxTxHxDh, v_BxTxHxDh = self._heads(x_BxTxM)
        mask = jnp.tril(jnp.ones((T, T), bool))[None]
        if segment_ids is not None:
            mask = mask & (segment_ids[:, :, None] == segment_ids[:, None, :])
        y = jax.nn.dot_product_attention(
            q_BxTxHxDh, k_BxTxHxDh, v_BxTxHxDh, mask=mask[:, None], implementation="xla"
        )
        return self.out(y.reshape(B, T, M))

    def init_cache(self, batch_size: int, dtype=jnp.float32):
        M = self.out.in_features
        Dh = M // self.num_heads
        shape = (batch_size, self.max_len, self.num_heads, Dh)
        return {
            "k": jnp.zeros(shape, dtype),
            "v": jnp.zeros(shape, dtype),
            "pos": jnp.zeros((), jnp.int32),
        }

    def step(self, x_BxM, cache):
        q, k, v = self._heads(x_BxM[:, None])
        pos = cache["pos"]
        keys = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), pos, 1)
        vals = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), pos, 1)
        valid = (jnp.arange(self.max_len) <= pos)[None, None, None, :]
        y = jax.nn.dot_product_attention(q, keys, vals, mask=valid, implementation="xla")
        B, M = x_BxM.shape
        return self.out(y.reshape(B, M)), {"k": keys, "v": vals, "pos": pos + 1}
