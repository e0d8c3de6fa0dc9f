"""RWKV-4's WKV (Peng et al., arXiv 2305.13048) in log-sum-exp form, so it stays finite for any key
size and decay.

    wkv_t = (Σ_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u+k_t} v_t)
            / (Σ_{i<t} e^{-(t-1-i)w + k_i} + e^{u+k_t})

The numerator and denominator are two EOS recurrences that share e = exp(k) and the per-channel
decay exp(-w) (i = v and i = 1, read before the update, plus the bonus term). exp(k) overflows
float32 for k > 88, and the ratio loses everything when both sums underflow, so the sums are kept
as (a, b, p) with numerator a·e^p and denominator b·e^p, as the official CUDA kernel does. Their
prefix combine is associative:

    (a₁, b₁, p₁) over n₁ steps, then (a₂, b₂, p₂) over n₂ steps:
    p = max(p₁ - n₂ w, p₂),  a = a₁ e^{p₁ - n₂ w - p} + a₂ e^{p₂ - p}  (b likewise)

so the "associative" backend runs it in O(log T) depth (`jax.lax.associative_scan`) and
"reference" runs it as a sequential `lax.scan` (the executable specification).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.ops._checks import check_rank, check_real, check_shape

# The exponent of an empty sum: finite, so that `p - p` never makes a NaN (as the official kernel).
_EMPTY = -1e38
BACKENDS = ("auto", "associative", "reference")


def _combine(w_C):
    def combine(left, right):
        a1, b1, p1, n1, f1 = left
        a2, b2, p2, n2, f2 = right
        p1 = p1 - n2 * w_C
        # A segment start in the right part drops everything on its left.
        p = jnp.where(f2, p2, jnp.maximum(p1, p2))
        keep = jnp.where(f2, 0.0, jnp.exp(jnp.minimum(p1 - p, 0.0)))
        s2 = jnp.exp(p2 - p)
        return (
            a1 * keep + a2 * s2,
            b1 * keep + b2 * s2,
            p,
            n1 + n2,
            f1 | f2,
        )

    return combine


def _prefix_associative(k, v, w_C, starts):
    ones = jnp.ones_like(k)
    elems = (v, ones, k, ones, starts)  # one token: a = v, b = 1, p = k over n = 1 step
    a, b, p, _, seen = jax.lax.associative_scan(_combine(w_C[None, None]), elems, axis=1)
    return a, b, p, seen


def _prefix_sequential(k, v, w_C, starts):
    combine = _combine(w_C[None])

    def step(carry, x):
        k_t, v_t, f_t = x
        one = jnp.ones_like(k_t)
        carry = combine(carry, (v_t, one, k_t, one, f_t))
        return carry, carry

    zeros = jnp.zeros_like(k[:, 0])
    init = (zeros, zeros, jnp.full_like(zeros, _EMPTY), zeros, jnp.zeros_like(starts[:, 0]))
    xs = (jnp.swapaxes(k, 0, 1), jnp.swapaxes(v, 0, 1), jnp.swapaxes(starts, 0, 1))
    _, (a, b, p, _, seen) = jax.lax.scan(step, init, xs)
    return tuple(jnp.swapaxes(x, 0, 1) for x in (a, b, p, seen))


def rwkv4_wkv(w, u, k, v, state=None, *, segment_ids=None, backend="auto"):
    """RWKV-4's WKV: w, u [C] (w the per-channel decay rate, >= 0 decays; the form is finite for
    any w), k, v [B, T, C]; `state` (num, den, max_exponent), each [B, C], continues a sequence
    exactly (None: empty). `segment_ids` [B, T] (an lcsm_jax extension) restarts the sums where
    the id changes. `backend`: "associative" (the default, "auto") or "reference" (sequential).

    Returns ``(wkv [B, T, C] in v's dtype, state)`` with the state after the last token, float32:
    the numerator is num·e^max_exponent and the denominator den·e^max_exponent.
    """
    if backend not in BACKENDS:
        raise ValueError(f"rwkv4_wkv: unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    v = jnp.asarray(v)
    check_rank("rwkv4_wkv", "k", k, 3, "[B,T,C]")
    check_shape("rwkv4_wkv", "v", v, jnp.shape(k), "k's [B,T,C]")
    B, T, C = v.shape
    for name, x in (("w", w), ("u", u)):
        check_shape("rwkv4_wkv", name, x, (C,), "[C]")
    for name, x in (("w", w), ("u", u), ("k", k), ("v", v)):
        check_real("rwkv4_wkv", name, x)
    w, u, k, v32 = (jnp.asarray(x, jnp.float32) for x in (w, u, k, v))
    starts = jnp.zeros((B, T), bool)
    if segment_ids is not None:
        check_shape("rwkv4_wkv", "segment_ids", segment_ids, (B, T), "[B,T]")
        ids = jnp.asarray(segment_ids)
        starts = starts.at[:, 1:].set(ids[:, 1:] != ids[:, :-1])
    starts = jnp.broadcast_to(starts[..., None], (B, T, C))
    prefix = _prefix_sequential if backend == "reference" else _prefix_associative
    a, b, p, seen = prefix(k, v32, w, starts)
    if state is not None:
        if not isinstance(state, (tuple, list)) or len(state) != 3:
            raise ValueError("rwkv4_wkv: state must be (num, den, max_exponent), each [B, C]")
        for name, x in zip(("num", "den", "max_exponent"), state, strict=True):
            check_shape("rwkv4_wkv", f"state {name}", x, (B, C), "[B,C]")
        a0, b0, p0 = (jnp.asarray(x, jnp.float32)[:, None] for x in state)
        # The carried sums decay t + 1 steps to step t, until a segment start drops them.
        steps = jnp.arange(1, T + 1, dtype=jnp.float32)[None, :, None]
        a, b, p, _, _ = _combine(w[None, None])((a0, b0, p0, 0.0, False), (a, b, p, steps, seen))
    # wkv_t reads the sums up to t - 1 (shifted by one; empty at t = 0) and the bonus term.
    first = (jnp.zeros((B, 1, C)), jnp.zeros((B, 1, C)), jnp.full((B, 1, C), _EMPTY))
    if state is not None:
        first = (a0, b0, p0)
    a_prev, b_prev, p_prev = (
        jnp.concatenate([f, x[:, :-1]], axis=1) for f, x in zip(first, (a, b, p), strict=True)
    )
    if segment_ids is not None:  # a segment start reads an empty past
        a_prev, b_prev = (jnp.where(starts, 0.0, x) for x in (a_prev, b_prev))
        p_prev = jnp.where(starts, _EMPTY, p_prev)
    bonus = u[None, None] + k
    q = jnp.maximum(p_prev, bonus)
    s_past, s_now = jnp.exp(p_prev - q), jnp.exp(bonus - q)
    wkv = (a_prev * s_past + s_now * v32) / (b_prev * s_past + s_now)
    return wkv.astype(v.dtype), (a[:, -1], b[:, -1], p[:, -1])
