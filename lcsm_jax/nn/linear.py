"""`BlockDiagDense` and `MonarchDense`: drop-in replacements for a dense `nnx.Linear`.

Both keep `in_features` / `out_features` and accept any leading axes, so they fit wherever a dense
projection does (the EOS layer's projections, the GLU MLP; see `make_linear`). The init matches
the output scale of the project's dense layers (N(0, 0.02²) entries, SPEC §4), so switching the
kind does not change the activation scale at init.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.nn import monarch
from lcsm_jax.nn.init import INIT_STD, dense

LINEAR_KINDS = ("dense", "blockdiag", "monarch")


def _check_divides(nblocks: int, n: int, what: str) -> None:
    if not isinstance(nblocks, int) or isinstance(nblocks, bool) or nblocks < 1:
        raise ValueError(f"nblocks must be a positive int, got {nblocks!r}")
    if n % nblocks:
        raise ValueError(f"nblocks={nblocks} must divide {what}={n}")


class _Structured(nnx.Module):
    """The constructor and bias both structured kinds share; a kind adds `_init_factors` and
    `_apply` (x and its factors already cast to the compute dtype)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        nblocks: int = 4,
        use_bias: bool = False,
        std: float = INIT_STD,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        _check_divides(nblocks, in_features, "in_features")
        _check_divides(nblocks, out_features, "out_features")
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self._init_factors(nblocks, std, param_dtype, rngs)
        self.bias = nnx.data(None)
        if use_bias:
            self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self._apply(x.astype(self.dtype or x.dtype))
        if self.bias is None:
            return y
        return y + self.bias[...].astype(y.dtype).reshape((1,) * (y.ndim - 1) + (-1,))


class BlockDiagDense(_Structured):
    """y = blockdiag(W_1..W_nb) x (+ b): nblocks independent dense maps, 1/nblocks of the params.

    Entries are N(0, (std·√nblocks)²): each output sees in/nblocks inputs, so the larger std keeps
    the output scale of a dense layer with N(0, std²) entries.
    """

    def _init_factors(self, nblocks, std, param_dtype, rngs):
        shape = (nblocks, self.out_features // nblocks, self.in_features // nblocks)
        init = nnx.initializers.normal(std * math.sqrt(nblocks))
        self.kernel = nnx.Param(init(rngs.params(), shape, param_dtype))

    def _apply(self, x):
        return monarch.blockdiag(x, self.kernel[...].astype(x.dtype))


class MonarchDense(_Structured):
    """y = P R P L P x (+ b), an order-2 Monarch matrix with `nblocks` blocks in each factor.

    L: nblocks blocks in/nb -> mid; R: nblocks blocks mid -> out/nb, with the block width `mid`
    a multiple of nblocks (so every R block reads outputs of every L block: full mixing) and at
    least max(in, out)/nblocks (so the product can reach full rank). For in = out = n² and
    nblocks = n this is the square Monarch matrix with 2·n³ parameters. L is variance preserving
    (std 1/√(in/nb)) and R carries the dense layer's scale (std·√(in/mid)).
    """

    def _init_factors(self, nblocks, std, param_dtype, rngs):
        in_blk, out_blk = self.in_features // nblocks, self.out_features // nblocks
        mid = -(-max(in_blk, out_blk) // nblocks) * nblocks
        left = nnx.initializers.normal(1.0 / math.sqrt(in_blk))
        right = nnx.initializers.normal(std * math.sqrt(self.in_features / mid))
        self.left = nnx.Param(left(rngs.params(), (nblocks, mid, in_blk), param_dtype))
        self.right = nnx.Param(right(rngs.params(), (nblocks, out_blk, mid), param_dtype))

    def _apply(self, x):
        return monarch.monarch2(x, self.left[...].astype(x.dtype), self.right[...].astype(x.dtype))


def make_linear(
    kind: str,
    in_features: int,
    out_features: int,
    *,
    rngs: nnx.Rngs,
    nblocks: int = 4,
    use_bias: bool = False,
    std: float = INIT_STD,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
):
    """A linear map of the given kind ("dense", "blockdiag" or "monarch") with the project init."""
    common = dict(use_bias=use_bias, std=std, dtype=dtype, param_dtype=param_dtype)
    if kind == "dense":
        return dense(in_features, out_features, rngs, **common)
    if kind == "blockdiag":
        return BlockDiagDense(in_features, out_features, nblocks=nblocks, rngs=rngs, **common)
    if kind == "monarch":
        return MonarchDense(in_features, out_features, nblocks=nblocks, rngs=rngs, **common)
    raise ValueError(f"unknown linear kind {kind!r}; valid: {', '.join(LINEAR_KINDS)}")
