"""Chunkwise-parallel backend for separable oscillations (none, scalar, K-wise, D-wise, separable).

Time is cut into chunks of C steps. Inside a chunk the output is a masked matmul with cumulative
log-decays G (attention-like, on the MXU/tensor cores); across chunks only the K×D memory is
carried, by a `lax.scan` over T/C chunks. Only the vector read (s [B,T,H,K]) has this matmul form.

Numerics. Exponents that read or update the carried memory are differences G_a - G_b ≤ 0 and cannot
overflow. The intra-chunk product exp(G_t - G_j) is factored as exp(G_t - G_mid)·exp(G_mid - G_j)
around the chunk's middle step, which is exact as long as |G - G_mid| stays small; we never divide
by cumulative products. When some chunk's decays are too strong for that (|G - G_mid| over
SAFE_EXPONENT, rare: e.g. log o ≈ -20 per step), the call's result comes from the sub-block path
of `intra_exact` instead (every factor ≤ 1), so the result is exact for any decay. Scalar decays
need no factoring: their C×C decay matrix is formed directly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lcsm_jax.eos import intra_exact, reference
from lcsm_jax.eos.inputs import FULL, Problem

DEFAULT_CHUNK = 64
# exp(±30) keeps every factored product far from float32 overflow and costs < 4e-6 relative error.
SAFE_EXPONENT = 30.0
PRECISION = reference.PRECISION
MASKED_LOG = -1e4  # exp() of it is exactly 0 in float32; finite, so gradients stay finite


def supports(p: Problem) -> str | None:
    """None if the chunked backend handles `p`, else the reason it does not."""
    if p.structure == FULL:
        return "a full K×D (non-separable) log_o"
    if p.elementwise_read:
        return "an elementwise (rank-5) s"
    return None


def _to_chunks(x, T: int, C: int):
    """[b, T|1, h, X] -> [N, b, h, C, X] (zero padded at the end: no write, no decay)."""
    b, _, h, X = x.shape
    n = -(-T // C)
    x = jnp.broadcast_to(x, (b, T, h, X))
    x = jnp.pad(x, ((0, 0), (0, n * C - T), (0, 0), (0, 0)))
    return x.reshape(b, n, C, h, X).transpose(1, 0, 3, 2, 4)


def _opt(fn, x):
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


def _masks(run, run_prev, C: int, lead: int) -> Masks:
    """`run` [..., C]: segment index per step; `lead`: dims before C in [..., H, C, X]."""
    causal = jnp.tril(jnp.ones((C, C), bool)).reshape((1,) * lead + (C, C))
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
    """exp() of the cumulative log-decays G [..., C, X] of one axis (K or D), computed once."""

    read: jax.Array  # exp(G_t): reads the memory carried into the chunk
    write: jax.Array  # exp(G_last - G_t): writes into the memory carried out
    up: jax.Array | None  # exp(G_t - G_mid), midpoint factoring only
    down: jax.Array | None  # exp(G_mid - G_t)


def _exps(G, midpoint: bool) -> Exps | None:
    if G is None:
        return None
    last = G[..., -1:, :]
    if not midpoint:
        return Exps(jnp.exp(G), jnp.exp(last - G), None, None)
    # The centre cancels in every product below; stopping its gradient keeps rounding from
    # leaking gradient to steps after t (exact causality of the gradient). |G - G_mid| ≤
    # SAFE_EXPONENT here, so up, down and the reuse of them for read/write cannot overflow.
    mid = jax.lax.stop_gradient(G[..., G.shape[-2] // 2 : G.shape[-2] // 2 + 1, :])
    # The clip is strictly inactive wherever this path's result is used (see `scan`); elsewhere
    # it keeps the discarded values, and so their (zero) gradients, finite.
    g, bound = G - mid, SAFE_EXPONENT + 1
    if jnp.iscomplexobj(g):
        g = jax.lax.complex(jnp.clip(g.real, -bound, bound), g.imag)
    else:
        g = jnp.clip(g, -bound, bound)
    up = jnp.exp(g)
    down = 1 / up
    return Exps(up * jnp.exp(mid), jnp.exp(last - mid) * down, up, down)


def _intra_direct(x, Gk, mask):
    """Scalar (or no) decay: the C×C decay matrix exp(G_t - G_j) is formed directly."""
    A = _einsum("...tk,...jk->...tj", x["s"], x["e"])
    if Gk is not None:
        g = Gk[..., 0]
        A = A * jnp.exp(jnp.where(mask, g[..., :, None] - g[..., None, :], MASKED_LOG))
    return _einsum("...tj,...jd->...td", jnp.where(mask, A, 0), x["i"])


def _intra_midpoint(x, Ek: Exps | None, Ed: Exps | None, mask):
    """exp(G_t - G_j) = exp(G_t - G_mid)·exp(G_mid - G_j): a masked (attention-like) matmul."""
    q = x["s"] if Ek is None else x["s"] * Ek.up
    k = x["e"] if Ek is None else x["e"] * Ek.down
    v = x["i"] if Ed is None else x["i"] * Ed.down
    A = jnp.where(mask, _einsum("...tk,...jk->...tj", q, k), 0)
    y = _einsum("...tj,...jd->...td", A, v)
    return y if Ed is None else y * Ed.up


def _write(x, Ek: Exps | None, Ed: Exps | None, masks: Masks):
    """The chunk's effect on the carried memory: m_next = decay ⊙ m + W (exponents ≤ 0)."""
    kw = x["e"] if Ek is None else x["e"] * Ek.write
    vw = x["i"] if Ed is None else x["i"] * Ed.write
    if masks.in_last is not None:
        kw = jnp.where(masks.in_last, kw, 0)
    W = _einsum("...ck,...cd->...kd", kw, vw)

    def last(E):
        return E.read[..., -1, :]

    k, d = _opt(last, Ek), _opt(last, Ed)  # exp(G_last): the decay across the whole chunk
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


def _chunk_cumsum(a):
    """Cumulative sum over the chunk axis (-2) in two levels of about √C steps: XLA:CPU's
    cumsum costs O(C) per element (a reduce window), this about O(√C); 5x faster at C = 64."""
    C = a.shape[-2]
    inner = next((c for c in (8, 4, 2) if C % c == 0 and C > c), None)
    if inner is None:
        return jnp.cumsum(a, axis=-2)
    blocks = jnp.cumsum(a.reshape(a.shape[:-2] + (C // inner, inner, a.shape[-1])), axis=-2)
    totals = blocks[..., -1:, :]
    blocks = blocks + (jnp.cumsum(totals, axis=-3) - totals)
    return blocks.reshape(a.shape)


def _cumulative(x):
    return _opt(_chunk_cumsum, x["lk"]), _opt(_chunk_cumsum, x["ld"])


def _carry(m0, decay, W_N):
    """Memory entering each chunk ([N,B,H,K,D]) and after the last one.

    A sequential `lax.scan` over the N = T/C chunks: one K×D multiply-add per chunk, linear in T.
    Measured on CPU (benchmarks/eos_backends.py) it beats both an associative scan over chunks
    (log N passes over the states) and masked matmuls over the chunk axis (quadratic within a
    group, plus transposes), forward and backward.
    """

    def step(m, x):
        d, w = x
        return (m if d is None else d * m) + w, m

    m_last, m_prev = jax.lax.scan(step, m0, (decay, W_N))
    return m_prev, m_last


def _all_chunks_at_once(m0, xs, intra: str):
    """Every chunk's work batched over [N, B, H]: intra-chunk outputs, chunk writes, the carry
    across chunks (a sequential scan) and the reads of the carried memory."""
    Gk, Gd = _cumulative(xs)
    Ek, Ed = _exps(Gk, intra == "midpoint"), _exps(Gd, intra == "midpoint")
    masks = _masks(xs["run"], xs["run_prev"], xs["e"].shape[-2], lead=3)
    decay, W = _write(xs, Ek, Ed, masks)
    m_prev, m_last = _carry(m0, decay, W)
    if intra == "direct":
        y = _intra_direct(xs, Gk, masks.pair)
    elif intra == "midpoint":
        y = _intra_midpoint(xs, Ek, Ed, masks.pair)
    else:
        y = intra_exact.intra(xs, Gk, Gd, masks.pair)
    return y + _read(xs, Ek, Ed, m_prev, masks), m_last


def _safe(p: Problem, C: int):
    """True when the midpoint factoring is exact (|G - G_mid| ≤ SAFE_EXPONENT) in every chunk.

    |G_t - G_mid| is bounded by the sum of |log o| over the chunk's half that holds t (with
    equality at the chunk's ends for real decays), which needs no cumulative sum.
    """
    spread = 0.0
    for log in (p.lk, p.ld):
        if log is not None:
            halves = jnp.abs(jnp.real(_to_chunks(log, p.e.shape[1], C)))
            mid = C // 2
            first = jnp.sum(halves[..., 1 : mid + 1, :], axis=-2)
            second = jnp.sum(halves[..., mid + 1 :, :], axis=-2)
            spread = spread + jnp.max(jnp.maximum(first, second))
    return jax.lax.stop_gradient(spread) <= SAFE_EXPONENT


def _scan(p: Problem, C: int, intra: str):
    B, T, H, _ = p.e.shape
    D = p.i.shape[-1]

    def chunked(a):
        return _opt(lambda x: _to_chunks(x, T, C), a)

    xs = {"e": chunked(p.e), "i": chunked(p.i), "s": chunked(p.s)}
    xs["lk"], xs["ld"] = chunked(p.lk), chunked(p.ld)
    xs["reset"] = xs["run"] = xs["run_prev"] = None
    n = xs["e"].shape[0]
    if p.reset is not None:
        reset = jnp.pad(p.reset, ((0, 0), (0, n * C - T)))
        run = jnp.cumsum(reset, axis=1, dtype=jnp.int32)
        xs["reset"] = reset.reshape(B, n, C).transpose(1, 0, 2)
        xs["run"] = run.reshape(B, n, C).transpose(1, 0, 2)
        xs["run_prev"] = jnp.concatenate([jnp.zeros((1, B), jnp.int32), xs["run"][:-1, :, -1]])

    y_NxBxHxCxD, m_last = _all_chunks_at_once(reference.initial_memory(p), xs, intra)
    y_BxTxHxD = y_NxBxHxCxD.transpose(1, 0, 3, 2, 4).reshape(B, n * C, H, D)[:, :T]
    return y_BxTxHxD, m_last


def scan(p: Problem, chunk_size: int | None = None):
    """Chunked backend: returns (y [B,T,H,D], final memory [B,H,K,D]).

    Scalar (or no) decays form their C×C decay matrix directly. Other decays use the midpoint
    factoring, exact while every chunk is safe (`_safe`); otherwise the result comes from the
    sub-block path (exact for any decay), which runs only then, under a `lax.cond`. The fast path
    stays outside the cond so that XLA fuses it with its producers and consumers (a cond around
    both paths made the common, safe case about 1.3x slower forward+backward on CPU).
    """
    C = DEFAULT_CHUNK if chunk_size is None else chunk_size
    if p.ld is None and (p.lk is None or p.lk.shape[-1] == 1):
        return _scan(p, C, "direct")
    static = {"structure": p.structure, "out_dtype": p.out_dtype}
    arrays = p._replace(structure=None, out_dtype=None)
    safe = _safe(p, C)
    fast = _scan(p, C, "midpoint")

    def exact(a):
        return _scan(a._replace(**static), C, "exact")

    def skipped(a):
        del a
        return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), fast)

    # Rematerialised: its residuals would otherwise be kept next to the fast path's.
    slow = jax.lax.cond(safe, skipped, jax.checkpoint(exact), arrays)
    return jax.tree.map(lambda f, x: jnp.where(safe, f, x), fast, slow)
