"""Channel mixers: a GLU MLP (SiLU gate) or the identity (the paper's MQAR setting).

The GLU's matrices may be block-diagonal or Monarch (M2's dimension mixer, SPEC §5)."""

from __future__ import annotations

import jax
from flax import nnx

from lcsm_jax.nn.linear import make_linear

# LMConfig.channel_mixer name -> kind of the GLU's matrices.
GLU_KINDS = {"glu": "dense", "glu_blockdiag": "blockdiag", "glu_monarch": "monarch"}


class GLU(nnx.Module):
    """x -> W_out (silu(W_gate x) ⊙ W_up x), hidden width `ratio`·M.

    `kind` "blockdiag" or "monarch" makes the three matrices structured with `nblocks` blocks
    (the hidden width is rounded up to a multiple of nblocks).
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        ratio: float = 8 / 3,
        kind: str = "dense",
        nblocks: int = 4,
        rngs: nnx.Rngs,
    ):
        hidden = max(1, int(round(ratio * embed_dim)))
        if kind != "dense":
            hidden = -(-hidden // nblocks) * nblocks

        def linear(n_in, n_out):
            return make_linear(kind, n_in, n_out, nblocks=nblocks, rngs=rngs)

        self.gate = linear(embed_dim, hidden)
        self.up = linear(embed_dim, hidden)
        self.down = linear(hidden, embed_dim)

    def __call__(self, x):
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))
