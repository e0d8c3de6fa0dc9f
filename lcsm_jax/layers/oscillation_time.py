"""o_type 11 (rotation by absolute position) and o_type 12 (cumulative softmax over time).

Both need facts beyond the current token, so both carry something in `EOSState`: o_type 11 the
absolute position, o_type 12 the running log-sum-exp. Neither has a decay the core must scan in
full: 11 has none (o = 1 on a 2K×D memory) and 12 is K-wise, so both take the chunked path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax import eos
from lcsm_jax.layers.oscillation import Oscillation, _Projected
from lcsm_jax.layers.terms import Context, Terms

ROPE_BASE = 10000.0
CUMSOFTMAX_CLAMP = 10.0


class O11(Oscillation):
    """Rotation: e' = [e cos(tθ), e sin(tθ)], s' likewise, o = 1 on a 2K×D memory, with
    θ_c = 10000^(-2c/M) and t the absolute 0-based position, so that
    y_t = Σ_j Σ_c e_j[c] s_t[c] cos((t-j)θ_c) i_j. Positions come from the state per call (the
    official code caches θ·t for the first sequence length it sees)."""

    STRUCTURE = "none"

    def memory_rows(self) -> int:
        return 2 * self.dims.K

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        theta_K = ROPE_BASE ** (-2.0 * jnp.arange(self.dims.K, dtype=jnp.float32) / self.dims.M)
        position_BxTx1x1 = ctx.position_BxT.astype(jnp.float32)[:, :, None, None]
        angle_BxTx1xK = position_BxTx1x1 * theta_K[None, None, None]
        cos, sin = jnp.cos(angle_BxTx1xK), jnp.sin(angle_BxTx1xK)

        def rotate(v):
            v32 = v.astype(jnp.float32)
            return jnp.concatenate([v32 * cos, v32 * sin], axis=-1).astype(v.dtype)

        return terms._replace(e=rotate(terms.e), s=rotate(terms.s), log_o=0)


def segmented_logcumsumexp(z_BxTxHxK, reset_BxT=None, lse0_BxHxK=None):
    """L_t = log Σ_{j ≤ t, same segment} exp(z_j), plus exp(lse0) in the first segment."""
    if reset_BxT is None:
        L = jax.lax.cumlogsumexp(z_BxTxHxK, axis=1)
        first_segment = None
    else:

        def combine(a, b):
            (fa, la), (fb, lb) = a, b
            return fa | fb, jnp.where(fb[..., None, None], lb, jnp.logaddexp(la, lb))

        _, L = jax.lax.associative_scan(combine, (reset_BxT, z_BxTxHxK), axis=1)
        first_segment = (jnp.cumsum(reset_BxT, axis=1) == 0)[..., None, None]
    if lse0_BxHxK is not None:
        with_lse0 = jnp.logaddexp(lse0_BxHxK[:, None], L)
        L = with_lse0 if first_segment is None else jnp.where(first_segment, with_lse0, L)
    return L


class O12(_Projected):
    """Cumulative softmax over time, K-wise: z_t = clamp(W x_t, -10, 10), L_t = logcumsumexp z,
    o_t = exp(L_{t-1} - L_t), e_t ← (1 - o_t) ⊙ e_t: m_t is the running softmax-weighted mean of
    e_j i_jᵀ. L_{-1} = -inf (or the state's running log-sum-exp); a segment restart resets it."""

    STRUCTURE, AXIS = "k", "k"

    def init_lse(self, batch: int) -> jax.Array:
        return jnp.full((batch, self.dims.H, self.dims.K), -jnp.inf, jnp.float32)

    def __call__(self, x_BxTxM, terms: Terms, ctx: Context) -> Terms:
        z = jnp.clip(self.z(x_BxTxM), -CUMSOFTMAX_CLAMP, CUMSOFTMAX_CLAMP)
        B, _, H, K = z.shape
        L = segmented_logcumsumexp(z, ctx.reset_BxT, ctx.lse_BxHxK)
        lse0 = jnp.full((B, 1, H, K), -jnp.inf) if ctx.lse_BxHxK is None else ctx.lse_BxHxK[:, None]
        prev = jnp.concatenate([lse0, L[:, :-1]], axis=1)
        if ctx.reset_BxT is not None:
            prev = jnp.where(ctx.reset_BxT[..., None, None], -jnp.inf, prev)
        log_o = prev - L  # -inf where nothing came before: o = 0, e keeps its full weight
        e = terms.e * (-jnp.expm1(log_o)).astype(terms.e.dtype)
        # Where the history is empty the memory is zero, so any finite decay gives the same result;
        # 0 keeps -inf out of the core's cumulative sums.
        log_o = jnp.where(jnp.isfinite(prev), log_o, 0.0)
        return terms._replace(e=e, log_o=eos.Decay(k=log_o), lse=L[:, -1])
