"""Oscillations of published methods with separable decays (SPEC §3): all take the chunked path.

RetNet's fixed scalar decay, cosFormer's and Lrpe's unit-modulus rotations (complex, output Re),
HGRN2's lower-bounded forget gate (which also sets e = 1 - f) and RWKV-4's per-channel decay.
GLA needs no class of its own: it is o_type 3 with τ = 16.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcsm_jax import eos
from lcsm_jax.layers.oscillation import Oscillation, _Projected
from lcsm_jax.layers.terms import Terms


def as_complex(terms: Terms) -> Terms:
    """Casts e, i, s and fold to complex64 (the core needs complex e, i, s with a complex decay)."""
    cast = lambda v: None if v is None else v.astype(jnp.complex64)  # noqa: E731
    return terms._replace(e=cast(terms.e), i=cast(terms.i), s=cast(terms.s), fold=cast(terms.fold))


class RetNetDecay(Oscillation):
    """Fixed scalar decay per head, λ_h = 1 - 2^(-5-h) (RetNet / TransNormerLLM)."""

    STRUCTURE = "scalar"

    def __call__(self, x_BxTxM, terms, ctx):
        lam = 1.0 - 2.0 ** (-5.0 - np.arange(self.dims.H))
        log_lam = jnp.asarray(np.log(lam), jnp.float32)
        return terms._replace(log_o=eos.Decay(k=log_lam[None, None, :, None]))


class CosFormerRotation(Oscillation):
    """o = exp(iθ) with a fixed θ = π / (2·max_len): y = Re Σ_j cos(θ(t-j)) (s_t·e_j) i_j, the
    cosFormer re-weighting for sequences up to max_len."""

    STRUCTURE, COMPLEX = "scalar", True
    OPTIONS = {"max_len": 2048}

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.theta = math.pi / (2.0 * spec.option("max_len", 2048))

    def __call__(self, x_BxTxM, terms, ctx):
        log_o = jnp.full((1, 1, 1, 1), 1j * self.theta, jnp.complex64)
        return as_complex(terms)._replace(log_o=eos.Decay(k=log_o))


class LrpeRotation(Oscillation):
    """o = exp(iΘ) with a learned Θ in R^K per head, initialised to 10000^(-2r/K); output Re."""

    STRUCTURE, COMPLEX = "k", True

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        theta = 10000.0 ** (-2.0 * np.arange(dims.K) / dims.K)
        self.theta = nnx.Param(jnp.asarray(np.tile(theta, (dims.H, 1)), spec.param_dtype))

    def __call__(self, x_BxTxM, terms, ctx):
        log_o = 1j * self.theta[...].astype(jnp.complex64)[None, None]
        return as_complex(terms)._replace(log_o=eos.Decay(k=log_o))


class HGRN2Gate(_Projected):
    """Forget gate f = γ + (1-γ)·sigmoid(W x) in R^K (γ = lower_bound): o = f 1ᵀ, e ← (1-f) ⊙ e."""

    STRUCTURE, AXIS = "k", "k"
    OPTIONS = {"lower_bound": 0.0}

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        self.lower_bound = float(spec.option("lower_bound", 0.0))
        if not 0.0 <= self.lower_bound < 1.0:
            raise ValueError(f"lower_bound must be in [0, 1), got {self.lower_bound}")

    def __call__(self, x_BxTxM, terms, ctx):
        z = self.z(x_BxTxM)
        g = self.lower_bound
        log_f = jax.nn.log_sigmoid(z)
        if g > 0:
            log_f = jnp.logaddexp(math.log(g), math.log1p(-g) + log_f)
        one_minus_f = (1.0 - g) * jax.nn.sigmoid(-z)
        e = terms.e * one_minus_f.astype(terms.e.dtype)
        return terms._replace(e=e, log_o=eos.Decay(k=log_f))


class RWKV4Decay(Oscillation):
    """Per-channel decay exp(-w), w = exp(w_log) > 0, with one head per channel (H = M, K = D = 1);
    w_log_h = -5 + 8·(h/(H-1))^1.35 spreads the decay rates as RWKV-4 does."""

    STRUCTURE = "scalar"

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        ratio = np.arange(dims.H) / max(dims.H - 1, 1)
        self.w_log = nnx.Param(jnp.asarray(-5.0 + 8.0 * ratio**1.35, spec.param_dtype))

    def __call__(self, x_BxTxM, terms, ctx):
        log_o = -jnp.exp(self.w_log[...].astype(jnp.float32))
        return terms._replace(log_o=eos.Decay(k=log_o[None, None, :, None]))
