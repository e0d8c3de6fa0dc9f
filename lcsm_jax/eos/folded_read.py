"""Decays that do not depend on the row r, folded to a one-row memory (K = 1) where they can.

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

The same decays with an e that has no time axis (passed with a size-1 T dim: e_t = e at every
step) fold for any read, vector or elementwise, time-varying or not: every write is e i_jᵀ, so
m_t[r,c] = e[r] n_t[c] + a_t[c] m_{-1}[r,c] with n the K = 1 recurrence of i (no initial memory)
and a_t[c] = exp(Σ_{u≤t} l_u[c]) (0 after a restart), and

    y_t[c] = n_t[c] Σ_r s_t[r,c] e[r] + a_t[c] Σ_r s_t[r,c] m_{-1}[r,c].

Complex decays are not folded: the phase sums of m_T would lose the accuracy the chunked
backend's fixed-point phases keep.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lcsm_jax.eos.inputs import DWISE, NONE, SCALAR, Problem

PRECISION = jax.lax.Precision.HIGHEST


def _row_independent(p: Problem) -> bool:
    """A real none/scalar/D-wise decay and T > 1."""
    return p.structure in (NONE, SCALAR, DWISE) and not jnp.iscomplexobj(p.e) and p.e.shape[1] > 1


def applies(p: Problem) -> bool:
    """True for a time-invariant elementwise read under a row-independent decay (`fold`)."""
    return _row_independent(p) and p.elementwise_read and p.s.shape[1] == 1


def applies_fixed_e(p: Problem) -> bool:
    """True for an e without a time axis under a row-independent decay (`scan_fixed_e`)."""
    return _row_independent(p) and p.fixed_e


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


def _log_decay(p: Problem):
    """The per-step log-decay [b, T, h, 1|D] (zeros for no decay)."""
    log = p.lk if p.lk is not None else p.ld
    if log is None:
        log = jnp.zeros((1, 1, 1, 1), p.e.dtype)
    return jnp.broadcast_to(log, (log.shape[0], p.e.shape[1], *log.shape[2:]))


def recurrence_of_i(p: Problem) -> Problem:
    """The K = 1 problem n_t = o_t ⊙ n_{t-1} + i_t (no initial memory) of `scan_fixed_e`."""
    ones = jnp.ones((*p.e.shape[:3], 1), p.e.dtype)
    return dataclasses.replace(p, e=ones, s=ones, m0=None, fixed_e=False)


def final_memory(p: Problem):
    """m_T [B, H, K, D] of `p`, formed directly (see the module docstring)."""
    log = _log_decay(p)
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


def _weigh_rows(s, x_BxHxKxD):
    """Σ_r s[r,c] x[r,c] for a vector s [B,T,H,K] or an elementwise one (rank 5), x [B,H,K,1|D]:
    [B,T,H,1|D]."""
    if s.ndim == 5:
        return jnp.sum(s * x_BxHxKxD[:, None], axis=-2)
    return jnp.einsum("bthk,bhkd->bthd", s, x_BxHxKxD, precision=PRECISION)


def scan_fixed_e(p: Problem, run):
    """(y, m_T) of a problem with a fixed e under a row-independent decay; `run(problem)` runs
    the K = 1 problem of n (see the module docstring)."""
    e = p.e[:, 0, :, :, None]  # [B, H, K, 1]
    n, n_T = run(recurrence_of_i(p))
    y = n * _weigh_rows(p.s, e)  # Σ_r s_t[r,c] e[r]: [B, T, H, 1|D]
    m = e * n_T  # n_T [B, H, 1, D]
    if p.m0 is not None:
        a = jnp.exp(jnp.cumsum(_log_decay(p), axis=1))  # a_t = exp(Σ_{u≤t} l_u): [b, T, h, 1|D]
        if p.reset is not None:
            a = a * (jnp.cumsum(p.reset, axis=1) == 0)[:, :, None, None].astype(a.dtype)
        y = y + a * _weigh_rows(p.s, p.m0)
        m = m + a[:, -1, :, None, :] * p.m0
    return y, m
