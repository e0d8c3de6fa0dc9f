"""Normalisation without parameters (LrcSSM's blocks, SPEC §6)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.nn.init import LAYERNORM_EPS


def layer_norm(x, eps: float = LAYERNORM_EPS):
    """Parameter-free LayerNorm over the last axis."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)
