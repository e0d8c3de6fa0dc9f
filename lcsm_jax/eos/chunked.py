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

import jax
import jax.numpy as jnp

from lcsm_jax.eos import reference
from lcsm_jax.eos.inputs import FULL, Problem

DEFAULT_CHUNK = 64
# exp(±30) keeps every factored product far from float32 overflow and costs < 4e-6 relative error.
SAFE_EXPONENT = 30.0
PRECISION = reference.PRECISION
_MASKED_LOG = -1e4  # exp() of it is exactly 0 in float32; finite, so gradients stay finite


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


def _masks(run_BxC, run_prev_B, C: int):
    """Causal/segment masks for one chunk, shaped to broadcast against [B,H,C,C] and [B,H,C,X]."""
    causal = jnp.tril(jnp.ones((C, C), bool))[None, None]
    if run_BxC is None:
        return causal, None, None, None
    same = run_BxC[:, None, :, None] == run_BxC[:, None, None, :]
    from_prev = (run_BxC == run_prev_B[:, None])[:, None, :, None]
    in_last = (run_BxC == run_BxC[:, -1:])[:, None, :, None]
    keep_prev = (run_BxC[:, -1] == run_prev_B)[:, None, None, None]
    return causal & same, from_prev, in_last, keep_prev


def _carry(m, x, Gk, Gd, masks):
    """Read of the carried memory and its update to the chunk's end (all exponents ≤ 0)."""
    _, from_prev, in_last, keep_prev = masks
    q = x["s"] if Gk is None else x["s"] * jnp.exp(Gk)
    y = _einsum("bhck,bhkd->bhcd", q, m)
    if Gd is not None:
        y = y * jnp.exp(Gd)
    if from_prev is not None:
        y = jnp.where(from_prev, y, 0)

    def last(G):
        return G[..., -1, :]

    decay = reference.oscillation(_opt(last, Gk), _opt(last, Gd), None)
    m_kept = m if decay is None else decay * m
    if keep_prev is not None:
        m_kept = jnp.where(keep_prev, m_kept, 0)
    kw = x["e"] if Gk is None else x["e"] * jnp.exp(Gk[..., -1:, :] - Gk)
    vw = x["i"] if Gd is None else x["i"] * jnp.exp(Gd[..., -1:, :] - Gd)
    if in_last is not None:
        kw = jnp.where(in_last, kw, 0)
    return y, m_kept + _einsum("bhck,bhcd->bhkd", kw, vw)


def _intra_direct(x, Gk, mask):
    """Scalar (or no) decay: the C×C decay matrix exp(G_t - G_j) is formed directly."""
    A = _einsum("bhtk,bhjk->bhtj", x["s"], x["e"])
    if Gk is not None:
        g = Gk[..., 0]
        A = A * jnp.exp(jnp.where(mask, g[..., :, None] - g[..., None, :], _MASKED_LOG))
    A = jnp.where(mask, A, 0)
    return _einsum("bhtj,bhjd->bhtd", A, x["i"])


def _intra_factored(x, gk, gd, mask):
    """exp(G_t - G_j) = exp(g_t)·exp(-g_j) with g = G - G_mid; exact while |g| is small."""
    q = x["s"] if gk is None else x["s"] * jnp.exp(gk)
    k = x["e"] if gk is None else x["e"] * jnp.exp(-gk)
    v = x["i"] if gd is None else x["i"] * jnp.exp(-gd)
    A = jnp.where(mask, _einsum("bhtk,bhjk->bhtj", q, k), 0)
    y = _einsum("bhtj,bhjd->bhtd", A, v)
    return y if gd is None else y * jnp.exp(gd)


def _sequential(m, x):
    """The reference recurrence over one chunk (exact for any decay strength)."""

    def to_time_major(a):
        return _opt(lambda x: jnp.swapaxes(x, 1, 2), a)

    steps = reference.Step(
        e=to_time_major(x["e"]),
        i=to_time_major(x["i"]),
        s=to_time_major(x["s"]),
        lk=to_time_major(x["lk"]),
        ld=to_time_major(x["ld"]),
        lo=None,
        reset=x["reset"],
    )
    y_BxCxHxD, m_next = reference.run_steps(m, steps)
    return m_next, jnp.swapaxes(y_BxCxHxD, 1, 2)


def _chunk(m_BxHxKxD, x, C: int):
    def cumsum(a):
        return jnp.cumsum(a, axis=2)

    Gk, Gd = _opt(cumsum, x["lk"]), _opt(cumsum, x["ld"])
    masks = _masks(x["run"], x["run_prev"], C)
    direct = Gd is None and (Gk is None or Gk.shape[-1] == 1)

    def fast(m, x):
        y, m_next = _carry(m, x, Gk, Gd, masks)
        if direct:
            return m_next, y + _intra_direct(x, Gk, masks[0])
        mid = C // 2

        def center(G):
            return G - G[..., mid : mid + 1, :]

        return m_next, y + _intra_factored(x, _opt(center, Gk), _opt(center, Gd), masks[0])

    if direct:
        return fast(m_BxHxKxD, x)
    spread = jnp.zeros((), jnp.float32)
    for G in (Gk, Gd):
        if G is not None:
            g = jnp.real(G)
            spread = spread + jnp.max(jnp.abs(g - g[..., C // 2 : C // 2 + 1, :]))
    safe = jax.lax.stop_gradient(spread) <= SAFE_EXPONENT
    return jax.lax.cond(safe, fast, _sequential, m_BxHxKxD, x)


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

    body = jax.checkpoint(lambda m, x: _chunk(m, x, C))
    m_last, y_NxBxHxCxD = jax.lax.scan(body, reference.initial_memory(p), xs)
    y_BxTxHxD = y_NxBxHxCxD.transpose(1, 0, 3, 2, 4).reshape(B, n * C, H, D)[:, :T]
    return y_BxTxHxD, m_last
