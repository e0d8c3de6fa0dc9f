"""The work of one chunk of C steps (all of B, H at once): intra-chunk outputs, the read of the
memory carried into the chunk and the chunk's update of it. `chunked.py` walks the chunks.

Arrays are [B, H, C, X] (X = K or D; decays may have size-1 B, H or X). Numerics: see
`chunked.py`; every exponent here is either ≤ 0 or the midpoint-factored |G - G_mid| that
`chunked._safe` bounds.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lcsm_jax.eos import intra_exact, intra_vjp, log_sums, reference

# exp(±30) keeps every factored product far from float32 overflow and costs < 4e-6 relative error.
SAFE_EXPONENT = 30.0
PRECISION = reference.PRECISION
MASKED_LOG = -1e4  # exp() of it is exactly 0 in float32; finite, so gradients stay finite


def opt(fn, x):
    """fn(x), with None (an absent decay factor) passed through."""
    return None if x is None else fn(x)


def _einsum(spec, a, b):
    return jnp.einsum(spec, a, b, precision=PRECISION)


class Masks(NamedTuple):
    """Causal/segment masks broadcasting against [..., H, C, C] and [..., H, C, X]."""

    pair: jax.Array  # j <= t and same segment
    from_prev: jax.Array | None  # t still in the segment of the carried memory
    in_last: jax.Array | None  # j in the chunk's last segment (writes the carried memory)
    keep_prev: jax.Array | None  # no restart inside the chunk


def _masks(run, run_prev, C: int) -> Masks:
    """`run` [B, C]: segment index per step; masks broadcast against [B, H, C, X]."""
    causal = jnp.tril(jnp.ones((C, C), bool))[None, None]
    if run is None:
        return Masks(causal, None, None, None)
    same = run[..., None, :, None] == run[..., None, None, :]
    return Masks(
        pair=causal & same,
        from_prev=(run == run_prev[..., None])[..., None, :, None],
        in_last=(run == run[..., -1:])[..., None, :, None],
        keep_prev=(run[..., -1] == run_prev)[..., None, None, None],
    )


class Exps(NamedTuple):
    """exp() of one axis' (K or D) log-decays for the memory carried across chunks."""

    read: jax.Array  # exp(G_t): reads the memory carried into the chunk
    write: jax.Array  # exp(Σ_{u>t} l_u): writes into the memory carried out


def _exps(log, G) -> Exps | None:
    """`log` the per-step log-decays [..., C, X], `G` their cumulative sum. The write exponent is
    summed from the steps after t, never taken as G_last - G_t: that difference cancels in
    float32 under strong decays, in its value and in its gradient."""
    if G is None:
        return None
    return Exps(jnp.exp(G), jnp.exp(log_sums.after(log)))


def factoring_spread(log, C: int, span: int):
    """The largest |G_t - G_mid| bound for log-decays [B, T, H, X] (T a multiple of C) factored
    about the middle step of each of every chunk's `span` equal parts: the sum of |log o| from
    the midpoint to the part's end on t's side (equal to it at the ends for real decays), which
    needs no cumulative sum. Factoring is exact where it is at most SAFE_EXPONENT."""
    b, Tp, h, X = log.shape
    steps = jnp.abs(jnp.real(log)).reshape(b, Tp // C, C, h, X)
    L, worst = C // span, 0.0
    for start in range(0, C, L):
        mid = start + L // 2
        for lo, hi in ((start + 1, mid + 1), (mid + 1, start + L)):
            worst = jnp.maximum(worst, jnp.max(jnp.sum(steps[:, :, lo:hi], axis=2)))
    return jax.lax.stop_gradient(worst)


def midpoint_factors(log):
    """(exp(G_t - G_mid), exp(G_mid - G_t)) about the chunk's middle step."""
    # |G - G_mid| ≤ SAFE_EXPONENT wherever this path runs (see `chunked._safe`), so neither factor
    # can overflow. Under vmap, where `lax.switch` runs every path, the (then inactive) clip keeps
    # the discarded values finite.
    g, bound = log_sums.from_midpoint(log), SAFE_EXPONENT + 1
    if jnp.iscomplexobj(g):
        g = jax.lax.complex(jnp.clip(g.real, -bound, bound), g.imag)
    else:
        g = jnp.clip(g, -bound, bound)
    up = jnp.exp(g)
    return up, 1 / up


def _intra_direct(s, e, i, lk, ld, mask):
    """Scalar (or no) decay: the C×C decay matrix exp(G_t - G_j) is formed directly."""
    del ld
    A = _einsum("...tk,...jk->...tj", s, e)
    if lk is not None:
        A = A * jnp.exp(jnp.where(mask, log_sums.pairwise(lk)[..., 0], MASKED_LOG))
    return _einsum("...tj,...jd->...td", jnp.where(mask, A, 0), i)


def _intra_midpoint(s, e, i, lk, ld, mask):
    """exp(G_t - G_j) = exp(G_t - G_mid)·exp(G_mid - G_j): a masked (attention-like) matmul."""
    q, k, v, up_d = s, e, i, None
    if lk is not None:
        up, down = midpoint_factors(lk)
        q, k = s * up, e * down
    if ld is not None:
        up_d, down_d = midpoint_factors(ld)
        v = i * down_d
    A = jnp.where(mask, _einsum("...tk,...jk->...tj", q, k), 0)
    y = _einsum("...tj,...jd->...td", A, v)
    return y if up_d is None else y * up_d


_INTRA = {"direct": _intra_direct, "midpoint": _intra_midpoint, "exact": intra_exact.intra}


def _write(x, Ek: Exps | None, Ed: Exps | None, masks: Masks):
    """The chunk's effect on the carried memory: m_next = decay ⊙ m + W (exponents ≤ 0)."""
    kw = x["e"] if Ek is None else x["e"] * Ek.write
    vw = x["i"] if Ed is None else x["i"] * Ed.write
    if masks.in_last is not None:
        kw = jnp.where(masks.in_last, kw, 0)
    W = _einsum("...ck,...cd->...kd", kw, vw)

    def last(E):
        return E.read[..., -1, :]

    k, d = opt(last, Ek), opt(last, Ed)  # exp(G_last): the decay across the whole chunk
    k = None if k is None else k[..., :, None]
    d = None if d is None else d[..., None, :]
    decay = d if k is None else k if d is None else k * d
    if masks.keep_prev is not None:
        decay = jnp.where(masks.keep_prev, 1 if decay is None else decay, 0).astype(W.dtype)
    return decay, W


def _read(x, Ek: Exps | None, Ed: Exps | None, m_prev, masks: Masks):
    """Outputs from the memory carried into the chunk (exponents ≤ 0)."""
    q = x["s"] if Ek is None else x["s"] * Ek.read
    y = _einsum("...ck,...kd->...cd", q, m_prev)
    if Ed is not None:
        y = y * Ed.read
    return y if masks.from_prev is None else jnp.where(masks.from_prev, y, 0)


def _cumulative(x):
    return opt(log_sums.chunk_cumsum, x["lk"]), opt(log_sums.chunk_cumsum, x["ld"])


def _half(x, first: bool) -> dict:
    """The first or second half of a chunk's slices (steps on axis -2, or -1 for `run`)."""
    h = x["e"].shape[-2] // 2
    part = slice(None, h) if first else slice(h, None)
    out = {name: opt(lambda a: a[..., part, :], x[name]) for name in ("e", "i", "s", "lk", "ld")}
    out["run"] = opt(lambda r: r[..., part], x["run"])
    out["run_prev"] = x["run_prev"] if first else opt(lambda r: r[..., h - 1], x["run"])
    return out


def chunk(m, x, intra: str):
    """One chunk of C steps for all of B, H: (memory in, the chunk's slices) -> (memory out, y).

    `intra`: "direct", "midpoint", "exact", or "halves" (the midpoint path on each half in turn).
    """
    if intra == "halves":
        m, y_first = chunk(m, _half(x, True), "midpoint")
        m, y_second = chunk(m, _half(x, False), "midpoint")
        return m, jnp.concatenate([y_first, y_second], axis=-2)
    Gk, Gd = _cumulative(x)
    Ek, Ed = _exps(x["lk"], Gk), _exps(x["ld"], Gd)
    masks = _masks(x["run"], x["run_prev"], x["e"].shape[-2])
    decay, W = _write(x, Ek, Ed, masks)
    fn = _INTRA[intra]
    if Gk is None and Gd is None:  # no decay: nothing for the pair identity to fix
        y = fn(x["s"], x["e"], x["i"], None, None, masks.pair)
    else:
        y = intra_vjp.intra(fn, x["s"], x["e"], x["i"], x["lk"], x["ld"], masks.pair)
    y = y + _read(x, Ek, Ed, m, masks)
    return (m if decay is None else decay * m) + W, y
