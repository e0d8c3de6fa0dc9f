"""Causal softmax multi-head attention (Vaswani et al., arXiv 1706.03762): the quadratic baseline
of the catalogue ("attention"), with a KV cache for decoding.

It has no positional information of its own: `models.lm.LanguageModel` adds learned absolute
positions when its mixer is attention.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.nn.init import dense


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttentionConfig:
    """embed_dim M; num_heads H (heads of M / H channels); max_len, the KV-cache length."""

    embed_dim: int
    num_heads: int = 1
    max_len: int = 2048

    def __post_init__(self):
        for name in ("embed_dim", "num_heads", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AttentionConfig.{name} must be a positive int, got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide embed_dim={self.embed_dim}")


class CausalAttention(nnx.Module):
    """x [B, T, M] -> [B, T, M]; `init_cache` / `step` decode one token at a time (up to
    `max_len` tokens)."""

    def __init__(self, config: AttentionConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, AttentionConfig):
            raise TypeError(f"config must be an AttentionConfig, got {type(config).__name__}")
        self.config = config
        self.num_heads, self.max_len = config.num_heads, config.max_len
        self.qkv = dense(config.embed_dim, 3 * config.embed_dim, rngs)
        self.out = dense(config.embed_dim, config.embed_dim, rngs)

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
        Dh = self.config.embed_dim // self.num_heads
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
