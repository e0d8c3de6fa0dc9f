"""Channel mixers: a GLU MLP (SiLU gate) or the identity (the paper's MQAR setting)."""

from __future__ import annotations

import jax
from flax import nnx

from lcsm_jax.models.init import dense


class GLU(nnx.Module):
    """x -> W_out (silu(W_gate x) ⊙ W_up x), hidden width `ratio`·M."""

    def __init__(self, embed_dim: int, *, ratio: float = 8 / 3, rngs: nnx.Rngs):
        hidden = max(1, int(round(ratio * embed_dim)))
        self.gate = dense(embed_dim, hidden, rngs)
        self.up = dense(embed_dim, hidden, rngs)
        self.down = dense(hidden, embed_dim, rngs)

    def __call__(self, x):
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))
