"""The delta rule chunk by chunk: the WY / UT form (Yang et al., arXiv 2406.06484 §3) with log-space
gates, scanned over chunks of C tokens with a rematerialised step.

Within a chunk, with S₀ the state entering it, D[t, i] = Π_{i<τ<=t} α_τ (per key, or a scalar) and
E_t the state token t's segment entered with (S₀, or a segment's own initial state or zeros),

    u_t + Σ_{i<t} β_t (k_t ⊙ D[t,i])·k_i u_i = β_t (v_t - (D[t,start] ⊙ k_t)ᵀ E_t)

is a unit lower-triangular system (I + A) U = R, solved at once (the product of the chunk's
Householder factors, never formed). Then

    o_t = (D[t,start] ⊙ q_t)ᵀ E_t + Σ_{i<=t} ((q_t ⊙ D[t,i])·k_i) u_i
    S_C = D[C,start] ⊙ E_C + Σ_i (D[C,i] ⊙ k_i) u_iᵀ.

Every D[t, i] is exp of a sum over (i, t] of log gates of one sign, taken by a cumulative sum of
the masked gates (never as a difference of two prefix sums, which would cancel in float32 under
strong gates), and is masked to pairs in one segment. The chunk step runs under `jax.checkpoint`, so
the backward pass keeps only the T/C chunk-entry states and recomputes each chunk's [C, C] terms.

Per-key gates have two paths, chosen once per call as the chunked GLA backend chooses (one
`lax.cond` on the gates' size): where every |G_t - G_mid| about each chunk's middle step is at
most `SAFE_EXPONENT`, D[t, i] = exp(G_t - G_mid)·exp(G_mid - G_i) factors and the pair terms are
two [C, K] × [K, C] matmuls ("midpoint", chunks of `DEFAULT_CHUNK`); otherwise (gates of several
units per step) the [C, C, K] pairwise decays are formed ("pairwise", chunks of
`DEFAULT_CHUNK_PER_KEY`), exact for any gate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.eos import log_sums
from lcsm_jax.eos.chunk_math import SAFE_EXPONENT, factoring_spread, midpoint_factors
from lcsm_jax.eos.delta_inputs import DeltaProblem, ends
from lcsm_jax.eos.inputs import vary_like

PRECISION = jax.lax.Precision.HIGHEST
# Measured on the 2-core CPU (benchmarks/delta_rule.py, B=4 H=4 K=V=64 T=4096, fwd+bwd): chunk 16
# is fastest without a gate, with a scalar one (64 was 2.6x slower) and with a per-key one on the
# midpoint path; 8 on the per-key pairwise path, whose [C, C, K] decays cost C·K exponentials per
# token.
DEFAULT_CHUNK = 16
DEFAULT_CHUNK_PER_KEY = 8


def _pad_time(x, pad, value=0):
    widths = [(0, 0)] * x.ndim
    widths[1] = (0, pad)
    return jnp.pad(x, widths, constant_values=value)


def _chunks(x, n, C):
    """[B, n·C, H, ...] -> [n, B, H, C, ...] (or [B, n·C] -> [n, B, C])."""
    B = x.shape[0]
    x = x.reshape(B, n, C, *x.shape[2:])
    if x.ndim == 3:
        return jnp.moveaxis(x, 1, 0)
    return jnp.moveaxis(jnp.swapaxes(x, 2, 3), 1, 0)


def _einsum(spec, *xs):
    return jnp.einsum(spec, *xs, precision=PRECISION)


def unit_lower_solve(A_BxHxCxC, rhs_BxHxCxV):
    """U with (I + A) U = rhs for a strictly lower-triangular A, by forward substitution.

    A `fori_loop` of C row updates: on CPU, XLA's batched triangular solve of these small systems
    took 60x longer (6 ms against 0.1 ms for 4 systems of 64×64 with 16 right-hand sides).
    """
    C = A_BxHxCxC.shape[-1]

    def row(t, U):
        u_t = rhs_BxHxCxV[..., t, :] - _einsum("bhc,bhcv->bhv", A_BxHxCxC[..., t, :], U)
        return U.at[..., t, :].set(u_t)

    return jax.lax.fori_loop(0, C, row, jnp.zeros_like(rhs_BxHxCxV))


def _pair_terms(q, k, g, incl, per_key: bool, midpoint: bool):
    """(A[t, i] = (k_t ⊙ D[t,i])·k_i, P[t, i] = (q_t ⊙ D[t,i])·k_i, D[C-1, :] ⊙ k and, for the
    per-segment states, (up, down) or the full D [B,H,t,i,R]); all masked to same-segment t ≥ i."""
    C = q.shape[2]
    mask = incl[:, None]  # [B, 1, t, i]
    if midpoint:
        up, down = midpoint_factors(g)
        kd = k * down
        A = _einsum("bhtk,bhik->bhti", k * up, kd)
        P = _einsum("bhtk,bhik->bhti", q * up, kd)
        last = jnp.exp(log_sums.after(g)) * incl[:, None, -1, :, None].astype(g.dtype)
        return jnp.where(mask, A, 0), jnp.where(mask, P, 0), last * k, (up, kd)
    # D[t, i] = exp Σ_{i<τ<=t} g_τ, a cumulative sum of the gates masked to τ > i.
    t_idx = jnp.arange(C)
    after = t_idx[None, :] > t_idx[:, None]  # [i, τ]
    masked = jnp.where(after[None, None, :, :, None], g[:, :, None], 0.0)  # [B,H,i,τ,R]
    delta = jnp.swapaxes(jnp.cumsum(masked, axis=3), 2, 3)  # [B,H,t,i,R]
    m5 = mask[..., None]
    D = jnp.where(m5, jnp.exp(jnp.where(m5, delta, 0.0)), 0.0)
    if per_key:
        A = _einsum("bhtk,bhik,bhtik->bhti", k, k, D)
        P = _einsum("bhtk,bhik,bhtik->bhti", q, k, D)
    else:
        A = _einsum("bhtk,bhik->bhti", k, k) * D[..., 0]
        P = _einsum("bhtk,bhik->bhti", q, k) * D[..., 0]
    return A, P, D[:, :, -1] * k, D


def _chunk_step(p: DeltaProblem, want_finals: bool, midpoint: bool = False):
    per_key = p.g.shape[-1] > 1
    table = p.h0 if (p.per_segment and p.h0 is not None) else None

    def step(carry, xs):
        S, finals = carry  # S [B,H,K,V]
        q, k, v, beta, g, start, seg, end = xs  # q [B,H,C,K], g [B,H,C,R], start [B,C]
        C = q.shape[2]
        t_idx = jnp.arange(C)
        count = jnp.cumsum(start.astype(jnp.int32), axis=-1)  # segments begun up to t
        same = count[:, :, None] == count[:, None, :]  # [B, t, i]
        incl = same & (t_idx[:, None] >= t_idx[None, :])[None]
        first = count == 0  # [B, C]: t's segment entered this chunk from S
        A, P, kd_last, pairs = _pair_terms(q, k, g, incl, per_key, midpoint)
        # Log decay from the segment's entry (or the chunk start) to t, inclusive.
        G_enter = _einsum("bti,bhir->bhtr", incl.astype(g.dtype), g)
        A = beta[..., :, None] * A * (t_idx[:, None] > t_idx[None, :])[None, None]
        decay_in = jnp.exp(G_enter)  # [B,H,C,R]
        ke, qe = decay_in * k, decay_in * q
        if table is None:
            keep = first[:, None, :, None].astype(q.dtype)
            base_k = keep * _einsum("bhck,bhkv->bhcv", ke, S)
            base_q = keep * _einsum("bhck,bhkv->bhcv", qe, S)
            enter_last = keep[:, :, -1, :, None] * S
        else:
            own = jnp.moveaxis(table[seg], 1, 2)  # [B,H,C,K,V] each token's segment state
            E = jnp.where(first[:, None, :, None, None], S[:, :, None], own)
            base_k = _einsum("bhck,bhckv->bhcv", ke, E)
            base_q = _einsum("bhck,bhckv->bhcv", qe, E)
            enter_last = E[:, :, -1]
        rhs = beta[..., None] * (v - base_k)
        U = unit_lower_solve(A, rhs)
        o = base_q + _einsum("bhti,bhiv->bhtv", P, U)
        S_next = decay_in[:, :, -1, :, None] * enter_last + _einsum("bhik,bhiv->bhkv", kd_last, U)
        if want_finals:  # the state after every token, kept where a segment ends (B = 1)
            if midpoint:  # Σ_i [i ≤ t] up_t ⊙ (down_i ⊙ k_i) u_iᵀ
                up, kd = pairs
                S_all = _einsum("bti,bhik,bhiv->bhtkv", incl.astype(U.dtype), kd, U)
                S_all = up[..., None] * S_all
            else:
                S_all = _einsum("bhtik,bhiv->bhtkv", pairs * k[:, :, None], U)
            if table is None:
                S_all = S_all + decay_in[..., None] * keep[..., None] * S[:, :, None]
            else:
                S_all = S_all + decay_in[..., None] * E
            pick = jax.nn.one_hot(seg, finals.shape[0], dtype=S.dtype) * end[..., None]
            finals = finals + _einsum("bcn,bhckv->nhkv", pick, S_all)
        return (S_next, finals), o

    return jax.checkpoint(step)


def scan(p: DeltaProblem, chunk_size=None, return_segment_states: bool = False):
    """Returns (o [B,T,H,V], final state [B,H,K,V], per-segment final states [N,H,K,V] or None)."""
    if p.g.shape[-1] == 1:
        return _scan(p, chunk_size or DEFAULT_CHUNK, return_segment_states, False)
    C_mid = chunk_size or DEFAULT_CHUNK
    pad = -p.g.shape[1] % C_mid
    return jax.lax.cond(
        factoring_spread(_pad_time(p.g, pad), C_mid, 1) <= SAFE_EXPONENT,
        lambda: _scan(p, C_mid, return_segment_states, True),
        lambda: _scan(p, chunk_size or DEFAULT_CHUNK_PER_KEY, return_segment_states, False),
    )


def _scan(p: DeltaProblem, C: int, return_segment_states: bool, midpoint: bool):
    B, T, H, K = p.q.shape
    V = p.v.shape[-1]
    n = -(-T // C)
    pad = n * C - T
    # Padding tokens do nothing: k = q = v = β = 0, α = 1, inside the last segment.
    end = _pad_time(ends(p.starts), pad, False)
    starts = p.starts if p.per_segment else p.starts.at[:, 0].set(False)
    starts = _pad_time(starts, pad, False)
    seg = jnp.concatenate([p.seg, jnp.repeat(p.seg[:, -1:], pad, axis=1)], axis=1)
    xs = tuple(_chunks(_pad_time(x, pad), n, C) for x in (p.q, p.k, p.v, p.beta, p.g))
    xs = xs + tuple(_chunks(x, n, C) for x in (starts, seg, end))
    dt = p.q.dtype
    S0 = p.h0 if (p.h0 is not None and not p.per_segment) else jnp.zeros((B, H, K, V), dt)
    S0 = vary_like(S0, p.q, p.k, p.v, p.beta, p.g, p.starts)
    finals = jnp.zeros((p.num_segments, H, K, V), dt) if return_segment_states else None
    finals = None if finals is None else vary_like(finals, S0, p.h0)
    step = _chunk_step(p, return_segment_states, midpoint)
    (S, finals), o = jax.lax.scan(step, (S0, finals), xs)
    o = jnp.moveaxis(o, 0, 1)  # [B, n, H, C, V]
    o = jnp.swapaxes(o, 2, 3).reshape(B, n * C, H, V)[:, :T]
    return o, S, finals
