"""Exact intra-chunk outputs for any decay strength, by sub-blocks of c steps (no cond, no scan).

A chunk of C = n·c steps is cut into n blocks. For a target step t in block p and a source j in an
earlier block, exp(G_t - G_j) = exp(G_t - R_p)·exp(R_p - G_j) with R_p the cumulative decay at the
end of block p-1: both factors are ≤ 1, so nothing overflows and an underflow only hides a product
that is itself below float32 range. Inside a block the c×c decays exp(G_t - G_j) are formed
directly. Costs about (c + n) exponentials per step and channel, against 3 for the midpoint
factoring of `chunk_math._intra_midpoint`, which is used instead whenever it is exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.eos.reference import PRECISION

MASKED_LOG = -1e4  # exp() of it is exactly 0 in float32; finite, so gradients stay finite


def block_size(C: int) -> int:
    for c in (8, 4, 2):
        if C % c == 0 and C > c:
            return c
    return C


def _blocks(a, n: int, c: int):
    return a.reshape(a.shape[:-2] + (n, c, a.shape[-1]))


def _boundaries(G, n: int, c: int):
    """R_p: G at the end of block p-1 ([..., n, X]); R_0 = 0 (no earlier block)."""
    # R_p cancels in exp(G_t - R_p)·exp(R_p - G_j): no gradient through it.
    ends = jax.lax.stop_gradient(_blocks(G, n, c)[..., :-1, -1, :])
    first = jnp.zeros(ends.shape[:-2] + (1, ends.shape[-1]), ends.dtype)
    return jnp.concatenate([first, ends], axis=-2)


def _direct(G_b, mask_b):
    """exp(G_t - G_j) inside each block, masked: [..., n, c, c, X]."""
    diff = G_b[..., :, :, None, :] - G_b[..., :, None, :, :]
    return jnp.exp(jnp.where(mask_b[..., None], diff, MASKED_LOG))


def intra(x, Gk, Gd, pair):
    """Within-chunk outputs [..., C, D] for e, s [..., C, K], i [..., C, D], decays G [..., C, X|1].

    `pair` [..., C, C] is the causal (and same-segment) mask.
    """
    s, e, v = x["s"], x["e"], x["i"]
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

    # Inside the blocks.
    if Gk is None:
        A = jnp.einsum("...ptk,...pjk->...ptj", s_b, e_b, precision=PRECISION)
    else:
        terms = s_b[..., :, :, None, :] * e_b[..., :, None, :, :] * _direct(_blocks(Gk, n, c), diag)
        A = jnp.sum(terms, axis=-1)
    A = jnp.where(diag, A, 0)
    if Gd is None:
        y_in = jnp.einsum("...ptj,...pjd->...ptd", A, v_b, precision=PRECISION)
    else:
        dd = _direct(_blocks(Gd, n, c), diag)
        y_in = jnp.sum(A[..., None] * dd * v_b[..., :, None, :, :], axis=-2)

    # Earlier blocks of the chunk, factored at the block boundary.
    q, k, vv = s_b, jnp.broadcast_to(e[..., None, :, :], e.shape[:-2] + (n, C, e.shape[-1])), None
    if Gk is not None:
        R = _boundaries(Gk, n, c)
        q = s_b * jnp.exp(_blocks(Gk, n, c) - R[..., :, None, :])
        back = jnp.where(earlier[..., None], R[..., :, None, :] - Gk[..., None, :, :], MASKED_LOG)
        k = e[..., None, :, :] * jnp.exp(back)
    A = jnp.einsum("...ptk,...pjk->...ptj", q, k, precision=PRECISION)
    A = jnp.where(pair_b & earlier[..., :, None, :], A, 0)
    if Gd is None:
        y_out = jnp.einsum("...ptj,...jd->...ptd", A, v, precision=PRECISION)
    else:
        Rd = _boundaries(Gd, n, c)
        back = jnp.where(earlier[..., None], Rd[..., :, None, :] - Gd[..., None, :, :], MASKED_LOG)
        vv = v[..., None, :, :] * jnp.exp(back)
        y_out = jnp.einsum("...ptj,...pjd->...ptd", A, vv, precision=PRECISION)
        y_out = y_out * jnp.exp(_blocks(Gd, n, c) - Rd[..., :, None, :])
    y = y_in + y_out
    return y.reshape(y.shape[:-3] + (C, y.shape[-1]))
