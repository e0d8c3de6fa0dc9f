"""Data-independent diagonal SSMs as EOS settings (SPEC §3): S4D/DSS/S5, LRU, Mega's EMA.

All three have a data-independent K×D e (folded into the read, `Terms.fold`) and a K×D
elementwise read, so the core runs them with a scan; S4D and LRU are complex (output Re).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import eos
from lcsm_jax.layers.method_oscillations import as_complex
from lcsm_jax.layers.oscillation import Oscillation
from lcsm_jax.layers.stages import normal_param
from lcsm_jax.nn import s4d


def _complex(re: nnx.Param, im: nnx.Param) -> jax.Array:
    return s4d.complex_param(re[...], im[...])


class S4DDiagonal(Oscillation):
    """S4D-Lin: Λ[r,c] = -1/2 + iπr per channel, step Δ_c log-uniform in [dt_min, dt_max],
    o = exp(ΔΛ) (complex, DI, full K×D), e = B̄ = (exp(ΔΛ) - 1)/Λ · B (zero-order hold, B = 1 at
    init), s = C ~ CN(0, 1). The read is Re(Σ_r C B̄ m) (S4D's factor 2 is absorbed by LayerNorm)."""

    STRUCTURE, COMPLEX = "full", True
    OPTIONS = {"dt_min": s4d.DT_MIN, "dt_max": s4d.DT_MAX}

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        H, K, D = dims.H, dims.K, dims.D
        p = s4d.init(
            rngs,
            (H, K, D),
            (H, 1, D),
            dt_min=spec.option("dt_min", s4d.DT_MIN),
            dt_max=spec.option("dt_max", s4d.DT_MAX),
            dtype=spec.param_dtype,
        )
        self.log_dt, self.log_neg_re = nnx.Param(p.log_dt), nnx.Param(p.log_neg_re)
        self.im, self.c_re, self.c_im = nnx.Param(p.im), nnx.Param(p.c_re), nnx.Param(p.c_im)
        self.b_re = nnx.Param(jnp.ones((H, K, D), spec.param_dtype))
        self.b_im = nnx.Param(jnp.zeros((H, K, D), spec.param_dtype))

    def __call__(self, x_BxTxM, terms, ctx):
        dt_lam, b_bar = s4d.discretize(self.log_neg_re[...], self.im[...], self.log_dt[...])
        terms = as_complex(terms)
        return terms._replace(
            log_o=dt_lam[None, None],
            s=_complex(self.c_re, self.c_im)[None, None],
            fold=(b_bar * _complex(self.b_re, self.b_im))[None, None],
        )


class LRUDiagonal(Oscillation):
    """LRU: λ_r = exp(-exp(ν_r) + i·exp(θ_log_r)) per state row (DI complex K-wise decay), uniform
    on the ring r_min ≤ |λ| ≤ r_max at init; e = γ ⊙ B with γ = sqrt(1 - |λ|²); s = C."""

    STRUCTURE, COMPLEX = "k", True
    OPTIONS = {"r_min": 0.9, "r_max": 0.999, "max_phase": 2 * math.pi}

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        H, K, D = dims.H, dims.K, dims.D
        r_min, r_max = spec.option("r_min", 0.9), spec.option("r_max", 0.999)
        u1 = jax.random.uniform(rngs.params(), (H, K), jnp.float32)
        u2 = jax.random.uniform(rngs.params(), (H, K), jnp.float32)
        nu = -0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2)
        theta = u2 * spec.option("max_phase", 2 * math.pi)
        self.nu_log = nnx.Param(jnp.log(nu).astype(spec.param_dtype))
        self.theta_log = nnx.Param(jnp.log(theta).astype(spec.param_dtype))
        gamma = jnp.sqrt(1.0 - jnp.exp(-2.0 * nu))
        self.gamma_log = nnx.Param(jnp.log(gamma).astype(spec.param_dtype))
        std = math.sqrt(0.5)
        self.b_re = normal_param(spec, rngs, (H, K, D), std)
        self.b_im = normal_param(spec, rngs, (H, K, D), std)
        self.c_re = normal_param(spec, rngs, (H, K, D), std / math.sqrt(K))
        self.c_im = normal_param(spec, rngs, (H, K, D), std / math.sqrt(K))

    def __call__(self, x_BxTxM, terms, ctx):
        f32 = lambda p: p[...].astype(jnp.float32)  # noqa: E731
        log_lam = jax.lax.complex(-jnp.exp(f32(self.nu_log)), jnp.exp(f32(self.theta_log)))
        gamma_HxKx1 = jnp.exp(f32(self.gamma_log))[..., None]
        terms = as_complex(terms)
        return terms._replace(
            log_o=eos.Decay(k=log_lam[None, None]),
            s=_complex(self.c_re, self.c_im)[None, None],
            fold=(gamma_HxKx1 * _complex(self.b_re, self.b_im))[None, None],
        )


class MegaEMA(Oscillation):
    """Mega's damped EMA: α = sigmoid(α_raw), δ = sigmoid(δ_raw) in K×D, e = α (folded into the
    read), o = 1 - α ⊙ δ (DI, full K×D); s = η comes from the "param" shrink stage."""

    STRUCTURE = "full"

    def __init__(self, dims, spec, *, rngs):
        super().__init__(dims, spec, rngs=rngs)
        shape = (dims.H, dims.K, dims.D)
        self.alpha_raw = normal_param(spec, rngs, shape, std=0.2)
        self.delta_raw = normal_param(spec, rngs, shape, std=0.2)

    def __call__(self, x_BxTxM, terms, ctx):
        alpha = jax.nn.sigmoid(self.alpha_raw[...].astype(jnp.float32))
        delta = jax.nn.sigmoid(self.delta_raw[...].astype(jnp.float32))
        fold = alpha.astype(terms.e.dtype)[None, None]
        return terms._replace(log_o=jnp.log1p(-alpha * delta)[None, None], fold=fold)
