"""The delta rule, one token at a time (`lax.scan`): the executable specification of `delta_scan`.

    S ← Diag(α_t) S                 (α = exp(g_t): one per head, or one per key)
    u_t = β_t (v_t - Sᵀ k_t)        (the delta: what the memory gets wrong about v_t)
    S ← S + k_t u_tᵀ                (= (I - β_t k_t k_tᵀ) Diag(α_t) S_{t-1} + β_t k_t v_tᵀ)
    o_t = Sᵀ q_t

A segment start replaces S by its entering state (the segment's own initial state, or zeros);
the first segment of a row starts from `initial_state`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.eos.delta_inputs import DeltaProblem, ends
from lcsm_jax.eos.inputs import vary_like

PRECISION = jax.lax.Precision.HIGHEST


def step(S_BxHxKxV, q, k, v, beta, g):
    """One token: the state after it and o_t. q, k [B,H,K]; v [B,H,V]; beta [B,H]; g [B,H,R]."""
    S = jnp.exp(g)[..., None] * S_BxHxKxV
    pred = jnp.einsum("bhk,bhkv->bhv", k, S, precision=PRECISION)
    u = beta[..., None] * (v - pred)
    S = S + k[..., :, None] * u[..., None, :]
    return S, jnp.einsum("bhk,bhkv->bhv", q, S, precision=PRECISION)


def scan(p: DeltaProblem, chunk_size=None, return_segment_states: bool = False):
    """Returns (o [B,T,H,V], final state [B,H,K,V], per-segment final states [N,H,K,V] or None)."""
    del chunk_size
    B, T, H, K = p.q.shape
    V = p.v.shape[-1]
    dt = p.q.dtype
    zeros = jnp.zeros((B, H, K, V), dt)
    S0 = p.h0 if (p.h0 is not None and not p.per_segment) else zeros
    S0 = vary_like(S0, p.q, p.k, p.v, p.beta, p.g, p.starts)
    # Without per-segment states the first segment keeps the initial state (no reset at t = 0).
    resets = p.starts if p.per_segment else p.starts.at[:, 0].set(False)
    finals = jnp.zeros((p.num_segments, H, K, V), dt) if return_segment_states else None
    finals = None if finals is None else vary_like(finals, S0, p.h0)

    def body(carry, xs):
        S, finals = carry
        q, k, v, beta, g, reset, seg, end = xs
        enter = zeros
        if p.per_segment and p.h0 is not None:
            enter = p.h0[seg]
        S = jnp.where(reset[:, None, None, None], enter, S)
        S, o = step(S, q, k, v, beta, g)
        if finals is not None:  # B = 1: store the state at the end of each segment
            finals = finals.at[seg[0]].set(jnp.where(end[0], S[0], finals[seg[0]]))
        return (S, finals), o

    xs = (p.q, p.k, p.v, p.beta, p.g, resets, p.seg, ends(p.starts))
    xs = tuple(jnp.swapaxes(x, 0, 1) for x in xs)
    (S, finals), o = jax.lax.scan(body, (S0, finals), xs)
    return jnp.swapaxes(o, 0, 1), S, finals
