"""The input (i), expand (e) and shrink (s) stages, and the parameter helpers all stages share.

Every stage is an NNX module built as `Stage(dims, spec, rngs=rngs)` and called as
`terms = stage(x_BxTxM, terms, ctx)`; registries map the names used in `LayerSpec` to classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.layers.activations import activation
from lcsm_jax.layers.spec import Dims, LayerSpec
from lcsm_jax.layers.terms import Context, Terms
from lcsm_jax.nn.linear import make_linear

PARAM_STD = 0.1  # N(0, 0.1²) for the P parameters of e, s and o (SPEC §2)


def _linear(kind: str, spec: LayerSpec, n_in: int, n_out: int, rngs: nnx.Rngs, bias: bool | None):
    return make_linear(
        kind,
        n_in,
        n_out,
        nblocks=spec.nblocks,
        use_bias=spec.bias if bias is None else bias,
        dtype=spec.dtype,
        param_dtype=spec.param_dtype,
        rngs=rngs,
    )


def dense(spec: LayerSpec, n_in: int, n_out: int, rngs: nnx.Rngs, bias: bool | None = None):
    """A dense layer with the project's init (`nn.init.dense`); bias defaults to `spec.bias`."""
    return _linear("dense", spec, n_in, n_out, rngs, bias)


def projection(spec: LayerSpec, n_in: int, n_out: int, rngs: nnx.Rngs, bias: bool | None = None):
    """A main (i, e, s, output) projection: dense, or block-diagonal / Monarch by
    `spec.projection`; decay projections stay dense."""
    return _linear(spec.projection, spec, n_in, n_out, rngs, bias)


def normal_param(spec: LayerSpec, rngs: nnx.Rngs, shape, std: float = PARAM_STD) -> nnx.Param:
    """A parameter drawn from N(0, std²)."""
    return nnx.Param(std * jax.random.normal(rngs.params(), shape, spec.param_dtype))


def heads(x: jax.Array, H: int) -> jax.Array:
    """[B, T, H·N] -> [B, T, H, N]."""
    return x.reshape(*x.shape[:-1], H, x.shape[-1] // H)


class _Stage(nnx.Module):
    def __init__(self, dims: Dims, spec: LayerSpec, *, rngs: nnx.Rngs):
        self.dims = dims
        self.dtype = spec.dtype
        self.act_name = spec.activation

    def act(self, x: jax.Array) -> jax.Array:
        return activation(self.act_name)(x)


class ProjInput(_Stage):
    """i = W_i x (no bias unless spec.bias)."""

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.proj = projection(spec, dims.M, dims.M, rngs)

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(i=heads(self.proj(x_BxTxM), self.dims.H))


class IdentityInput(_Stage):
    """i = x (diagonal SSMs, LRU, Mega)."""

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(i=heads(x_BxTxM.astype(self.dtype), self.dims.H))


class ProjExpand(_Stage):
    """Data-dependent e = act(W_e x) in R^K per head."""

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.proj = projection(spec, dims.M, dims.H * dims.K, rngs)

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(e=self.act(heads(self.proj(x_BxTxM), self.dims.H)))


class ExpProjExpand(ProjExpand):
    """e = exp(W_k x) (the RWKV-4 numerator's key weight)."""

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(e=jnp.exp(heads(self.proj(x_BxTxM), self.dims.H)))


class OnesExpand(_Stage):
    """e = 1 (the write is shaped by a folded K×D factor or by the oscillation stage)."""

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        B, T, _ = x_BxTxM.shape
        return terms._replace(e=jnp.ones((B, T, self.dims.H, self.dims.K), self.dtype))


class ParamExpand(OnesExpand):
    """Data-independent e: a K×D parameter act(P), P ~ N(0, 0.1²).

    The write E ⊙ (1 iᵀ) keeps E as a constant factor of the whole memory, so the recurrence runs
    with e = 1 and E is folded into the read (SPEC §1)."""

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.p = normal_param(spec, rngs, (dims.H, dims.K, dims.D))

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        terms = super().__call__(x_BxTxM, terms, ctx)
        return terms._replace(fold=self.act(self.p[...].astype(self.dtype))[None, None])


class ProjShrink(ProjExpand):
    """Data-dependent s = act(W_s x) in R^K per head."""

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(s=self.act(heads(self.proj(x_BxTxM), self.dims.H)))


class SigmoidProjShrink(ProjExpand):
    """s = sigmoid(W_r x) (the RWKV-4 receptance)."""

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(s=jax.nn.sigmoid(heads(self.proj(x_BxTxM), self.dims.H)))


class ParamShrink(_Stage):
    """Data-independent s: a K×D parameter act(P), read elementwise y[c] = Σ_r S[r,c] m[r,c]."""

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.p = normal_param(spec, rngs, (dims.H, dims.K, dims.D))

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(s=self.act(self.p[...].astype(self.dtype))[None, None])


class NoShrink(_Stage):
    """No shrink of its own: the read is the folded factor set by the oscillation stage."""

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        return terms._replace(s=None)


INPUTS = {"proj": ProjInput, "identity": IdentityInput}
EXPANDS = {"proj": ProjExpand, "param": ParamExpand, "ones": OnesExpand, "exp_proj": ExpProjExpand}
SHRINKS = {
    "proj": ProjShrink,
    "param": ParamShrink,
    "none": NoShrink,
    "sigmoid_proj": SigmoidProjShrink,
}
