"""Chunkwise-parallel backend for separable oscillations (none, scalar, K-wise, D-wise, separable).

Time is cut into chunks of C steps and a `lax.scan` walks the T/C chunks, carrying the K×D memory.
Inside a chunk the output is a masked matmul with cumulative log-decays G (attention-like, on the
MXU/tensor cores) plus a read of the carried memory; the chunk's writes update it. Only the vector
read (s [B,T,H,K]) has this matmul form.

Numerics. Exponents that read or update the carried memory are differences G_a - G_b ≤ 0 and cannot
overflow. The intra-chunk product exp(G_t - G_j) is factored as exp(G_t - G_mid)·exp(G_mid - G_j)
around the chunk's middle step, which is exact as long as |G - G_mid| stays small; we never divide
by cumulative products. When some chunk's decays are too strong for that (|G - G_mid| over
SAFE_EXPONENT, rare: e.g. log o ≈ -20 per step), the call takes an exact path instead, so the
result is exact for any decay: the sub-block path of `intra_exact` (every factor ≤ 1), or for
scalar decays the C×C decay matrix exp(G_t - G_j) formed directly.
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
    # The clip is inactive wherever this path runs (see `_scan`). Under vmap, where `lax.cond`
    # runs both branches, it keeps the discarded values, and so their (zero) gradients, finite.
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


def _chunk(m, x, intra: str):
    """One chunk of C steps for all of B, H: (memory in, the chunk's slices) -> (memory out, y)."""
    Gk, Gd = _cumulative(x)
    Ek, Ed = _exps(Gk, intra == "midpoint"), _exps(Gd, intra == "midpoint")
    masks = _masks(x["run"], x["run_prev"], x["e"].shape[-2], lead=2)
    decay, W = _write(x, Ek, Ed, masks)
    if intra == "direct":
        y = _intra_direct(x, Gk, masks.pair)
    elif intra == "midpoint":
        y = _intra_midpoint(x, Ek, Ed, masks.pair)
    else:
        y = intra_exact.intra(x, Gk, Gd, masks.pair)
    y = y + _read(x, Ek, Ed, m, masks)
    return (m if decay is None else decay * m) + W, y


def _safe(xs):
    """True when the midpoint factoring is exact (|G - G_mid| ≤ SAFE_EXPONENT) in every chunk.

    |G_t - G_mid| is bounded by the sum of |log o| over the chunk's half that holds t (with
    equality at the chunk's ends for real decays), which needs no cumulative sum.
    """
    spread = 0.0
    for log in (xs["lk"], xs["ld"]):
        if log is not None:
            halves, mid = jnp.abs(jnp.real(log)), log.shape[-2] // 2
            first = jnp.sum(halves[..., 1 : mid + 1, :], axis=-2)
            second = jnp.sum(halves[..., mid + 1 :, :], axis=-2)
            spread = spread + jnp.max(jnp.maximum(first, second))
    return jax.lax.stop_gradient(spread) <= SAFE_EXPONENT


def _over_chunks(m0, xs, intra: str):
    """A `lax.scan` of `_chunk` over the chunk axis of `xs`: (final memory, y [N,B,H,C,D]).

    The body is rematerialised: the backward pass recomputes each chunk from its inputs and the
    carried memory, so no T×C intermediates are kept between the passes, and every operation works
    on one chunk's arrays (cache-sized) instead of streaming all chunks through memory. On the
    2-core CPU this is 1.3-1.6x faster forward+backward than batching every chunk's work at once
    and carrying the memory separately (benchmarks/eos_backends.py).
    """
    return jax.lax.scan(jax.checkpoint(lambda m, x: _chunk(m, x, intra)), m0, xs)


def _scan(p: Problem, C: int):
    B, T, H, _ = p.e.shape
    D = p.i.shape[-1]

    def chunked(a):
        return _opt(lambda x: _to_chunks(x, T, C), a)

    xs = {"e": chunked(p.e), "i": chunked(p.i), "s": chunked(p.s)}
    xs["lk"], xs["ld"] = chunked(p.lk), chunked(p.ld)
    xs["run"] = xs["run_prev"] = None
    n = xs["e"].shape[0]
    if p.reset is not None:
        reset = jnp.pad(p.reset, ((0, 0), (0, n * C - T)))
        run = jnp.cumsum(reset, axis=1, dtype=jnp.int32)
        xs["run"] = run.reshape(B, n, C).transpose(1, 0, 2)
        xs["run_prev"] = jnp.concatenate([jnp.zeros((1, B), jnp.int32), xs["run"][:-1, :, -1]])

    m0 = reference.initial_memory(p)
    if p.ld is None and p.lk is None:
        m_last, y_NxBxHxCxD = _over_chunks(m0, xs, "direct")
    else:
        # The midpoint factoring when every chunk is safe, else an exact path: scalar decays form
        # their C×C decay matrix directly, others take the sub-block path. One cond around the
        # whole scan: a cond per chunk inside the scan body made the common, safe case about
        # 1.3x slower forward+backward on CPU.
        scalar = p.ld is None and p.lk.shape[-1] == 1
        m_last, y_NxBxHxCxD = jax.lax.cond(
            _safe(xs),
            lambda xs: _over_chunks(m0, xs, "midpoint"),
            lambda xs: _over_chunks(m0, xs, "direct" if scalar else "exact"),
            xs,
        )
    y_BxTxHxD = y_NxBxHxCxD.transpose(1, 0, 3, 2, 4).reshape(B, n * C, H, D)[:, :T]
    return y_BxTxHxD, m_last


def scan(p: Problem, chunk_size: int | None = None):
    """Chunked backend: returns (y [B,T,H,D], final memory [B,H,K,D])."""
    return _scan(p, DEFAULT_CHUNK if chunk_size is None else chunk_size)
