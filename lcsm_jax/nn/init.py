"""Constants and initialisers every family shares: N(0, 0.02²) for linear and embedding weights
(zoology, SPEC §4) and the LayerNorm epsilon."""

from __future__ import annotations

from flax import nnx

INIT_STD = 0.02
LAYERNORM_EPS = 1e-5


def dense(in_features: int, out_features: int, rngs: nnx.Rngs, *, use_bias: bool = False):
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=nnx.initializers.normal(INIT_STD),
        rngs=rngs,
    )
