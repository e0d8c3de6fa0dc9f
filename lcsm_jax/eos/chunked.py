"""Chunkwise-parallel backend for separable oscillations (none, scalar, K-wise, D-wise, separable).

Time is cut into chunks of C steps. Inside a chunk the output is a masked matmul with cumulative
log-decays G (attention-like, on the MXU/tensor cores); across chunks only the K×D memory is
carried, by a `lax.scan` over T/C chunks. Only the vector read (s [B,T,H,K]) has this matmul form.

Numerics. Exponents that read or update the carried memory are differences G_a - G_b ≤ 0 and cannot
overflow. The intra-chunk product exp(G_t - G_j) is factored as exp(G_t - G_mid)·exp(G_mid - G_j)
around the chunk's middle step, which is exact as long as |G - G_mid| stays small; we never divide
by cumulative products. A chunk whose decays are too strong for that (|G - G_mid| over
SAFE_EXPONENT, rare: e.g. log o ≈ -20 per step) is run step by step with the reference recurrence
instead, so the result is exact for any decay. Scalar decays need no factoring: their C×C decay
matrix is formed directly. Each chunk is rematerialised in the backward pass (`jax.checkpoint`), so
memory is O(T/C·K·D) for the carried states plus one chunk's work.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lcsm_jax.eos import associative, intra_exact, reference
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


def _intra(x, Gk, Gd, mask, direct: bool):
    """Within-chunk outputs: a masked (attention-like) matmul with decays exp(G_t - G_j)."""
    if direct:
        # Scalar (or no) decay: the C×C decay matrix is formed directly, no factoring needed.
        A = _einsum("...tk,...jk->...tj", x["s"], x["e"])
        if Gk is not None:
            g = Gk[..., 0]
            A = A * jnp.exp(jnp.where(mask, g[..., :, None] - g[..., None, :], MASKED_LOG))
        return _einsum("...tj,...jd->...td", jnp.where(mask, A, 0), x["i"])
    # exp(G_t - G_j) = exp(g_t)·exp(-g_j) with g = G - G_mid: exact while |g| stays small.
    mid = x["e"].shape[-2] // 2

    def center(G):
        # The centre cancels in exp(g_t)·exp(-g_j); stopping its gradient keeps rounding from
        # leaking gradient to steps after t (exact causality of the gradient).
        return G - jax.lax.stop_gradient(G[..., mid : mid + 1, :])

    gk, gd = _opt(center, Gk), _opt(center, Gd)
    q = x["s"] if gk is None else x["s"] * jnp.exp(gk)
    k = x["e"] if gk is None else x["e"] * jnp.exp(-gk)
    v = x["i"] if gd is None else x["i"] * jnp.exp(-gd)
    A = jnp.where(mask, _einsum("...tk,...jk->...tj", q, k), 0)
    y = _einsum("...tj,...jd->...td", A, v)
    return y if gd is None else y * jnp.exp(gd)


def _write(x, Gk, Gd, masks: Masks):
    """The chunk's effect on the carried memory: m_next = decay ⊙ m + W (exponents ≤ 0)."""
    kw = x["e"] if Gk is None else x["e"] * jnp.exp(Gk[..., -1:, :] - Gk)
    vw = x["i"] if Gd is None else x["i"] * jnp.exp(Gd[..., -1:, :] - Gd)
    if masks.in_last is not None:
        kw = jnp.where(masks.in_last, kw, 0)
    W = _einsum("...ck,...cd->...kd", kw, vw)

    def last(G):
        return G[..., -1, :]

    decay = reference.oscillation(_opt(last, Gk), _opt(last, Gd), None)
    if masks.keep_prev is not None:
        decay = jnp.where(masks.keep_prev, 1 if decay is None else decay, 0).astype(W.dtype)
    return decay, W


def _read(x, Gk, Gd, m_prev, masks: Masks):
    """Outputs from the memory carried into the chunk (exponents ≤ 0)."""
    q = x["s"] if Gk is None else x["s"] * jnp.exp(Gk)
    y = _einsum("...ck,...kd->...cd", q, m_prev)
    if Gd is not None:
        y = y * jnp.exp(Gd)
    return y if masks.from_prev is None else jnp.where(masks.from_prev, y, 0)


def _cumulative(x):
    def cumsum(a):
        return jnp.cumsum(a, axis=-2)

    return _opt(cumsum, x["lk"]), _opt(cumsum, x["ld"])


def _carry(m0, decay, W_N):
    """Memory entering each chunk ([N,B,H,K,D]) and after the last one, by an associative scan
    over chunks (a sequential scan that stacks N states is several times slower on CPU)."""
    if decay is None:
        decay = jnp.ones((1,) * W_N.ndim, W_N.dtype)
    decay = jnp.broadcast_to(decay, (W_N.shape[0],) + decay.shape[1:])
    W_N = W_N.at[0].add(decay[0] * m0)
    _, m_after = jax.lax.associative_scan(associative.combine, (decay, W_N), axis=0)
    return jnp.concatenate([m0[None], m_after[:-1]], axis=0), m_after[-1]


CARRY_GROUP = 64  # chunks per masked matmul of the carry; groups are chained the same way


def _grouped_carry(m0_S, log_decay_S, W_S):
    """For S independent groups of G chunks: the memory before each chunk and after the group,
    [S, G+1, B, H, K, D] = Σ_{k<n} exp(L_{n-1} - L_k) W_k + exp(L_{n-1}) m0 (every exponent ≤ 0)."""
    G = W_S.shape[1]
    L = jnp.cumsum(log_decay_S, axis=1)  # [S, G, b, h, K|1]
    L_before = jnp.concatenate([jnp.zeros_like(L[:, :1]), L], axis=1)  # L_{n-1}, n = 0..G
    earlier = jnp.arange(G)[None, :] < jnp.arange(G + 1)[:, None]
    earlier = earlier.reshape(1, G + 1, G, 1, 1, 1)
    weights = jnp.exp(jnp.where(earlier, L_before[:, :, None] - L[:, None], MASKED_LOG))
    if weights.shape[-1] == 1:
        m_all = _einsum("snkbh,skbhrd->snbhrd", weights[..., 0], W_S)
    else:
        m_all = _einsum("snkbhr,skbhrd->snbhrd", weights, W_S)
    return m_all + jnp.exp(L_before)[..., None] * m0_S[:, None]


def _carry_by_matmul(m0, log_decay, W_N):
    """As `_carry`, for row-wise (scalar or K-wise) chunk decays and no restarts, by masked
    matmuls over the chunk axis: within groups of CARRY_GROUP chunks, then across the groups, so
    the cost stays linear in the number of chunks."""
    N = W_N.shape[0]
    if N <= CARRY_GROUP:
        m_all = _grouped_carry(m0[None], log_decay[None], W_N[None])[0]
        return m_all[:N], m_all[N]
    G = CARRY_GROUP
    S = -(-N // G)

    def grouped(x):  # padded chunks: no decay (log 0) and no write
        x = jnp.pad(x, ((0, S * G - N),) + ((0, 0),) * (x.ndim - 1))
        return x.reshape((S, G) + x.shape[1:])

    log_decay = jnp.broadcast_to(log_decay, (N,) + log_decay.shape[1:])
    log_decay_S, W_S = grouped(log_decay), grouped(W_N)
    inner = _grouped_carry(jnp.zeros((S,) + m0.shape, m0.dtype), log_decay_S, W_S)
    outer = _grouped_carry(m0[None], jnp.sum(log_decay_S, axis=1)[None], inner[None, :, G])[0]
    L_before = jnp.cumsum(log_decay_S, axis=1)
    L_before = jnp.concatenate([jnp.zeros_like(L_before[:, :1]), L_before[:, :-1]], axis=1)
    m_prev = inner[:, :G] + jnp.exp(L_before)[..., None] * outer[:S, None]
    return m_prev.reshape((S * G,) + m0.shape)[:N], outer[S]


def _all_chunks_at_once(m0, xs):
    """Every chunk's work batched over [N, B, H]: intra-chunk outputs, chunk writes, the carry
    across chunks (masked matmuls) and the reads of the carried memory.

    Intra-chunk decays: scalar (or none) ones are formed directly; otherwise the midpoint
    factoring is used when exact for every chunk, else the sub-block path (exact for any decay),
    chosen at run time by one `lax.cond` around the intra term alone.
    """
    Gk, Gd = _cumulative(xs)
    masks = _masks(xs["run"], xs["run_prev"], xs["e"].shape[-2], lead=3)
    decay, W = _write(xs, Gk, Gd, masks)

    if Gd is None and masks.keep_prev is None:
        log_decay = jnp.zeros((W.shape[0], 1, 1, 1), W.dtype) if Gk is None else Gk[..., -1, :]
        m_prev, m_last = _carry_by_matmul(m0, log_decay, W)
    else:
        m_prev, m_last = _carry(m0, decay, W)
    if Gd is None and (Gk is None or Gk.shape[-1] == 1):
        y = _intra(xs, Gk, Gd, masks.pair, direct=True)
    else:
        y = jax.lax.cond(
            jnp.all(_safe_chunks(Gk, Gd)),
            lambda *a: _intra(*a, direct=False),
            # Rematerialised: its residuals would otherwise be kept next to the fast path's.
            jax.checkpoint(intra_exact.intra),
            xs,
            Gk,
            Gd,
            masks.pair,
        )
    return y + _read(xs, Gk, Gd, m_prev, masks), m_last


def _safe_chunks(Gk, Gd):
    """[N] bool: the factored form is exact (|G - G_mid| ≤ SAFE_EXPONENT) in each chunk."""
    spread = 0.0
    for G in (Gk, Gd):
        if G is not None:
            g = jnp.real(G)
            g = jnp.abs(g - g[..., g.shape[-2] // 2 : g.shape[-2] // 2 + 1, :])
            spread = spread + jnp.max(g.reshape(g.shape[0], -1), axis=1)
    return jax.lax.stop_gradient(spread) <= SAFE_EXPONENT


def scan(p: Problem, chunk_size: int | None = None):
    """Chunked backend: returns (y [B,T,H,D], final memory [B,H,K,D])."""
    C = DEFAULT_CHUNK if chunk_size is None else chunk_size
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

    y_NxBxHxCxD, m_last = _all_chunks_at_once(reference.initial_memory(p), xs)
    y_BxTxHxD = y_NxBxHxCxD.transpose(1, 0, 3, 2, 4).reshape(B, n * C, H, D)[:, :T]
    return y_BxTxHxD, m_last
