"""Exact intra-chunk outputs for any decay strength, by sub-blocks of c steps (no cond, no scan).

A chunk of C = n·c steps is cut into n blocks. For a target step t in block p and a source j in an
earlier block, exp(G_t - G_j) = exp(G_t - R_p)·exp(R_p - G_j) with R_p the cumulative decay at the
end of block p-1: both factors are ≤ 1, so nothing overflows and an underflow only hides a product
that is itself below float32 range. Inside a block the c×c decays exp(G_t - G_j) are formed
directly. Every exponent is a sum over exactly the steps it spans (`log_sums`). Costs about
(c + n) exponentials per step and channel, against 3 for the midpoint factoring of
`chunk_math._intra_midpoint`, which is used instead whenever it is exact.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lcsm_jax.eos import log_sums
from lcsm_jax.eos.reference import PRECISION

MASKED_LOG = -1e4  # exp() of it is exactly 0 in float32; finite, so gradients stay finite


def block_size(C: int) -> int:
    for c in (8, 4, 2):
        if C % c == 0 and C > c:
            return c
    return C


def _blocks(a, n: int, c: int):
    return a.reshape(a.shape[:-2] + (n, c, a.shape[-1]))


class _Sums(NamedTuple):
    """The sums of one axis' log-decays [..., C, X] that the sub-block path needs, each over
    exactly the steps it spans (see `log_sums`)."""

    inside: jax.Array  # [..., n, t, j, X]: Σ_{j<u≤t} within one block
    to_t: jax.Array  # [..., n, c, X]: G_t - R_p, from block p's start to t
    back: jax.Array  # [..., n, C, X]: R_p - G_j for j in an earlier block


@log_sums.exact_phase
def _sums(log, n: int, c: int):
    log_b = _blocks(log, n, c)  # [..., n, c, X]
    inside = log_sums.pairwise(log_b)
    to_t = jnp.cumsum(log_b, axis=-2, dtype=log.dtype)
    totals = to_t[..., -1, :]  # [..., n, X]
    # between[p, b] = Σ_{b<q<p} totals_q: whole blocks strictly between b and p.
    later = jnp.arange(n)[:, None] > jnp.arange(n)[None, :]  # [q, b]
    later = later.reshape((1,) * (totals.ndim - 2) + (n, n, 1))
    steps = jnp.where(later, totals[..., :, None, :], 0)  # [..., q, b, X]
    between = jnp.cumsum(steps, axis=-3, dtype=log.dtype) - steps  # exclusive over q: q < p
    # R_p - G_j: to the end of j's block, then whole blocks.
    tail = log_sums.after(log_b).reshape(log.shape)  # [..., C, X]
    return _Sums(inside, to_t, tail[..., None, :, :] + jnp.repeat(between, c, axis=-2))


def _direct(inside, mask_b):
    """exp(G_t - G_j) inside each block, masked: [..., n, c, c, X]."""
    return jnp.exp(jnp.where(mask_b[..., None], inside, MASKED_LOG))


def intra(s, e, v, lk, ld, pair):
    """Within-chunk outputs [..., C, D] for e, s [..., C, K], i [..., C, D] and per-step log-decays
    lk, ld [..., C, X|1] (None when absent).

    `pair` [..., C, C] is the causal (and same-segment) mask.
    """
    C = e.shape[-2]
    c = block_size(C)
    n = C // c
    pair_b = pair.reshape(pair.shape[:-2] + (n, c, C))
    diag = jnp.moveaxis(
        jnp.diagonal(pair.reshape(pair.shape[:-2] + (n, c, n, c)), axis1=-4, axis2=-2), -1, -3
    )  # [..., n, c, c]
    earlier = jnp.arange(C)[None, :] < (jnp.arange(n) * c)[:, None]  # [n, C]: j before block p
    earlier = earlier.reshape((1,) * (pair.ndim - 2) + earlier.shape)
    s_b, e_b, v_b = _blocks(s, n, c), _blocks(e, n, c), _blocks(v, n, c)
    Sk = None if lk is None else _sums(lk, n, c)
    Sd = None if ld is None else _sums(ld, n, c)

    # Inside the blocks.
    if Sk is None:
        A = jnp.einsum("...ptk,...pjk->...ptj", s_b, e_b, precision=PRECISION)
    else:
        terms = s_b[..., :, :, None, :] * e_b[..., :, None, :, :] * _direct(Sk.inside, diag)
        A = jnp.sum(terms, axis=-1)
    A = jnp.where(diag, A, 0)
    if Sd is None:
        y_in = jnp.einsum("...ptj,...pjd->...ptd", A, v_b, precision=PRECISION)
    else:
        dd = _direct(Sd.inside, diag)
        y_in = jnp.sum(A[..., None] * dd * v_b[..., :, None, :, :], axis=-2)

    # Earlier blocks of the chunk, factored at the block boundary.
    q, k, vv = s_b, jnp.broadcast_to(e[..., None, :, :], e.shape[:-2] + (n, C, e.shape[-1])), None
    if Sk is not None:
        q = s_b * jnp.exp(Sk.to_t)
        k = e[..., None, :, :] * jnp.exp(jnp.where(earlier[..., None], Sk.back, MASKED_LOG))
    A = jnp.einsum("...ptk,...pjk->...ptj", q, k, precision=PRECISION)
    A = jnp.where(pair_b & earlier[..., :, None, :], A, 0)
    if Sd is None:
        y_out = jnp.einsum("...ptj,...jd->...ptd", A, v, precision=PRECISION)
    else:
        vv = v[..., None, :, :] * jnp.exp(jnp.where(earlier[..., None], Sd.back, MASKED_LOG))
        y_out = jnp.einsum("...ptj,...pjd->...ptd", A, vv, precision=PRECISION)
        y_out = y_out * jnp.exp(Sd.to_t)
    y = y_in + y_out
    return y.reshape(y.shape[:-3] + (C, y.shape[-1]))
