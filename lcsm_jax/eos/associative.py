"""`jax.lax.associative_scan` backend: log depth over time, O(T·K·D) memory.

Elements are (a, b) = (o_t, e_t i_tᵀ), composed as (a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2).
Decays stay in their reduced shape ([.., K|1, D|1]), so scalar and K-wise decays cost no K×D
multiplies in the `a` products. A segment restart sets a_t = 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.eos.inputs import Problem
from lcsm_jax.eos.reference import oscillation, read


def combine(left, right):
    """(a1, b1) ∘ (a2, b2): apply step 1, then step 2."""
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def scan(p: Problem, chunk_size: int | None = None):
    """Associative backend: returns (y [B,T,H,D], final memory [B,H,K,D])."""
    del chunk_size
    p = p.materialised()  # the log-depth combine needs every step's K×D decay as an array
    T = p.e.shape[1]
    b_BxTxHxKxD = p.e[..., :, None] * p.i[..., None, :]
    a = oscillation(p.lk, p.ld, p.lo)  # [b,t,h,K|1,D|1] or None
    if a is None:
        a = jnp.ones((1, 1, 1, 1, 1), p.e.dtype)
    if p.reset is not None:
        a = jnp.where(p.reset[:, :, None, None, None], jnp.zeros_like(a), a)
    a = jnp.broadcast_to(a, (a.shape[0], T) + a.shape[2:])
    if p.m0 is not None:
        first = a[:, 0] * p.m0 + b_BxTxHxKxD[:, 0]
        b_BxTxHxKxD = b_BxTxHxKxD.at[:, 0].set(first)
    _, m_BxTxHxKxD = jax.lax.associative_scan(combine, (a, b_BxTxHxKxD), axis=1)
    # read() is written for one step; the time axis rides along as a batch axis.
    y_BxTxHxD = jax.vmap(read, in_axes=(None if p.s.shape[1] == 1 else 1, 1), out_axes=1)(
        p.s[:, 0] if p.s.shape[1] == 1 else p.s, m_BxTxHxKxD
    )
    return y_BxTxHxD, m_BxTxHxKxD[:, -1]
