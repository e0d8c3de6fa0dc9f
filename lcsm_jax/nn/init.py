"""Constants and initialisers every family shares: N(0, 0.02²) for linear and embedding weights
(zoology, SPEC §4), the LayerNorm epsilon, and the dense layer and LayerNorm built with them."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

INIT_STD = 0.02
LAYERNORM_EPS = 1e-5


def dense(
    in_features: int,
    out_features: int,
    rngs: nnx.Rngs,
    *,
    use_bias: bool = False,
    std: float = INIT_STD,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> nnx.Linear:
    """A dense `nnx.Linear` with N(0, std²) weights (zero bias when `use_bias`)."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=nnx.initializers.normal(std),
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


def make_layer_norm(
    features: int, rngs: nnx.Rngs, *, dtype: Any = None, param_dtype: Any = jnp.float32
) -> nnx.LayerNorm:
    """An `nnx.LayerNorm` with the project's epsilon."""
    return nnx.LayerNorm(
        features, epsilon=LAYERNORM_EPS, dtype=dtype, param_dtype=param_dtype, rngs=rngs
    )
