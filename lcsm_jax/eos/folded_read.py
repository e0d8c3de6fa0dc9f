"""A fixed elementwise read under a decay that does not depend on the row: folded to K = 1.

With a data-independent elementwise read S [K, D] (``y_t[c] = Σ_r S[r,c] m_t[r,c]``, the layers
with e_type or s_type 0) and a real decay that is the same for every row r (none, scalar or
D-wise), the read commutes with the recurrence. n_t[c] = Σ_r S[r,c] m_t[r,c] obeys

    n_t[c] = o_t[c] n_{t-1}[c] + (Σ_r S[r,c] e_t[r]) i_t[c],     y_t = n_t,

a recurrence with a one-row memory: e' = 1, i' = (e_t S) ⊙ i_t, s' = 1 (a vector read),
n_{-1} = Σ_r S ⊙ m_{-1}, and the same decays and segment restarts. `auto` runs that K = 1 problem
on the backend measured for it (the chunked matmul form), where the K×D problem with an
elementwise read has no matmul form and would run as a scan of K·D work per step.

The K×D final memory is not a by-product of the folded recurrence; it is formed directly:
m_T = exp(Σ_{u<T} l_u) m_{-1} + Σ_j exp(Σ_{j<u<T} l_u) e_j i_jᵀ over the steps j of the last
segment (one [K,T]×[T,D] matmul per head; each exponent a sum over exactly the steps it spans,
never a difference of cumulative sums). Under jit it is dropped when the caller does not use it.

Complex decays are not folded: the phase sums of m_T would lose the accuracy the chunked
backend's fixed-point phases keep.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lcsm_jax.eos.inputs import DWISE, NONE, SCALAR, Problem

PRECISION = jax.lax.Precision.HIGHEST


def applies(p: Problem) -> bool:
    """True for a time-invariant elementwise read with a real none/scalar/D-wise decay, T > 1."""
    return (
        p.elementwise_read
        and p.s.shape[1] == 1
        and p.structure in (NONE, SCALAR, DWISE)
        and not jnp.iscomplexobj(p.e)
        and p.e.shape[1] > 1
    )


def _read_matrix(p: Problem):
    """S broadcast to [b, H, K, D] (b is 1 or B)."""
    B, _, H, K = p.e.shape
    S = p.s[:, 0]
    return jnp.broadcast_to(S, (S.shape[0], H, K, p.i.shape[-1]))


def fold(p: Problem) -> Problem:
    """The K = 1 problem whose output equals `p`'s (its final memory is n_T, not m_T)."""
    B, T, H, _ = p.e.shape
    S = _read_matrix(p)
    written = jnp.einsum("bthk,bhkd->bthd", p.e, S, precision=PRECISION)  # e_t S
    ones = jnp.ones((B, T, H, 1), p.e.dtype)
    n0 = None if p.m0 is None else jnp.sum(S * p.m0, axis=-2, keepdims=True)  # [B, H, 1, D]
    return dataclasses.replace(p, e=ones, i=written * p.i, s=ones, m0=n0)


def final_memory(p: Problem):
    """m_T [B, H, K, D] of `p`, formed directly (see the module docstring)."""
    B, T, H, K = p.e.shape
    log = p.lk if p.lk is not None else p.ld  # [b, T|1, h, 1|D] or None
    if log is None:
        log = jnp.zeros((1, 1, 1, 1), p.e.dtype)
    log = jnp.broadcast_to(log, (log.shape[0], T, *log.shape[2:]))
    after = jax.lax.cumsum(log, axis=1, reverse=True)  # Σ_{u >= j} l_u
    after = jnp.concatenate([after[:, 1:], jnp.zeros_like(after[:, :1])], axis=1)  # u > j
    weight = jnp.exp(after)
    if p.reset is not None:
        run = jnp.cumsum(p.reset, axis=1, dtype=jnp.int32)
        weight = weight * (run == run[:, -1:])[:, :, None, None].astype(weight.dtype)
    m = jnp.einsum("bthk,bthd->bhkd", p.e, weight * p.i, precision=PRECISION)
    if p.m0 is not None:
        kept = jnp.exp(jnp.sum(log, axis=1))[:, :, None, :]  # [b, h, 1, 1|D]
        if p.reset is not None:
            kept = kept * (~jnp.any(p.reset, axis=1))[:, None, None, None].astype(kept.dtype)
        m = m + kept * p.m0
    return m
