"""Chunkwise-parallel backend for separable oscillations (none, scalar, K-wise, D-wise, separable).

Time is cut into chunks of C steps and a loop walks the T/C chunks, carrying the K×D memory.
Inside a chunk the output is a masked matmul with cumulative log-decays G (attention-like, on the
MXU/tensor cores) plus a read of the carried memory; the chunk's writes update it
(`chunk_math.chunk`). Only the vector read (s [B,T,H,K]) has this matmul form.

Numerics. Exponents that read or update the carried memory are differences G_a - G_b ≤ 0 and cannot
overflow. The intra-chunk product exp(G_t - G_j) is factored as exp(G_t - G_mid)·exp(G_mid - G_j)
around the chunk's middle step, which is exact as long as |G - G_mid| stays small; we never divide
by cumulative products. When some chunk's decays are too strong for that (|G - G_mid| over
SAFE_EXPONENT somewhere), the call factors each half chunk about its own middle step instead
("halves": decays of about -1 per step), and if that is not exact either it takes an exact path,
so the result is exact for any decay: the sub-block path of `intra_exact` (every factor ≤ 1), or
for scalar decays the C×C decay matrix exp(G_t - G_j) formed directly. Every exponent is a sum
over the steps it spans (`log_sums`), and the intra-chunk decay gradient comes from the pair
identity of `intra_vjp`, so neither cancels in float32 under strong decays.

Speed. Each loop step reads its chunk straight from the [B,T,H,X] arrays and writes its outputs
back in place, so every operation works on one chunk's arrays (cache-sized) and nothing of size
T is transposed. The gradient is an explicit reverse loop (`jax.custom_vjp`) that
recomputes each chunk from its inputs and the memory carried into it, which is all the forward
pass keeps. One `lax.switch` picks the path, in each pass, for the whole call.
On the 2-core CPU this is about 1.5x faster forward+backward than letting autodiff differentiate
a scan over pre-transposed chunks (benchmarks/eos_backends.py). Forward-mode autodiff (jvp) is not
available through a custom_vjp: use the reference or associative backend for it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lcsm_jax.eos import reference
from lcsm_jax.eos.chunk_math import SAFE_EXPONENT, chunk, factoring_spread, opt
from lcsm_jax.eos.inputs import FULL, PRODUCT, Problem, vary_like

DEFAULT_CHUNK = 64


def unsupported_reason(p: Problem) -> str | None:
    """Why the chunked backend cannot run `p` ("does not support <reason>"), or None if it can."""
    if p.structure in (FULL, PRODUCT):
        return "a full K×D (non-separable) log_o"
    if p.elementwise_read:
        return "an elementwise (rank-5) s"
    return None


class Arrays(NamedTuple):
    """The differentiable inputs, [b, Tp, h, X] with Tp a multiple of C (decays may keep b, h,
    X of size 1)."""

    e: jax.Array
    i: jax.Array
    s: jax.Array
    lk: jax.Array | None
    ld: jax.Array | None


def _time_slice(a, n, C: int):
    """Chunk n of [b, Tp, h, X] as [b, h, C, X]."""
    return jnp.swapaxes(jax.lax.dynamic_slice_in_dim(a, n * C, C, axis=1), 1, 2)


def _put(buf, n, C: int, x):
    """Writes chunk n ([b, h, C, X]) into [b, Tp, h, X] (in place inside a loop)."""
    return jax.lax.dynamic_update_slice_in_dim(buf, jnp.swapaxes(x, 1, 2), n * C, axis=1)


def _chunk_inputs(xs: Arrays, run, n, C: int) -> dict:
    x = {name: opt(lambda a: _time_slice(a, n, C), a) for name, a in xs._asdict().items()}
    x["run"] = x["run_prev"] = None
    if run is not None:
        x["run"] = jax.lax.dynamic_slice_in_dim(run, n * C, C, axis=1)  # [B, C]
        before = jax.lax.dynamic_slice_in_dim(run, jnp.maximum(n * C - 1, 0), 1, axis=1)[:, 0]
        x["run_prev"] = jnp.where(n > 0, before, 0)  # segment of the carried memory
    return x


def _forward(xs: Arrays, run, m0, C: int, intra: str):
    """(y [B,Tp,H,D], final memory, memory entering each chunk [N,B,H,K,D])."""
    B, Tp, H, _ = xs.e.shape

    def step(carry, n):
        m, y = carry
        m_next, y_n = chunk(m, _chunk_inputs(xs, run, n, C), intra)
        return (m_next, _put(y, n, C, y_n)), m

    y0 = vary_like(jnp.zeros((B, Tp, H, xs.i.shape[-1]), xs.i.dtype), m0, run, *xs)
    (m_last, y), m_in = jax.lax.scan(step, (m0, y0), jnp.arange(Tp // C))
    return y, m_last, m_in


def _backward(xs: Arrays, run, m_in, dy, dm_last, C: int, intra: str):
    """Reverse loop over chunks: each chunk is recomputed from its inputs and m_in, then its VJP
    gives the cotangents of its inputs and of the memory carried into it."""

    def step(carry, n_m):
        n, m = n_m
        dm, grads = carry
        x = _chunk_inputs(xs, run, n, C)
        floats = {name: x[name] for name in grads}
        _, vjp = jax.vjp(lambda m, f: chunk(m, {**x, **f}, intra), m, floats)
        dm_prev, d = vjp((dm, _time_slice(dy, n, C)))
        return (dm_prev, {name: _put(g, n, C, d[name]) for name, g in grads.items()}), None

    refs = (m_in, run, dy, dm_last, *xs)
    grads = {
        name: vary_like(jnp.zeros_like(a), *refs)
        for name, a in xs._asdict().items()
        if a is not None
    }
    n = jnp.arange(xs.e.shape[1] // C)
    (dm0, grads), _ = jax.lax.scan(step, (dm_last, grads), (n, m_in), reverse=True)
    return Arrays(**{name: grads.get(name) for name in Arrays._fields}), dm0


# The factored paths: how many equal parts of a chunk each factors about the part's middle step.
_FACTORED_SPAN = {"midpoint": 1, "halves": 2}


def _safe(xs: Arrays, C: int, span: int):
    """True when factoring about the middle step of each of every chunk's `span` equal parts is
    exact: |G_t - G_mid| ≤ SAFE_EXPONENT everywhere (the K and D factors' bounds add up)."""
    spread = sum(factoring_spread(log, C, span) for log in (xs.lk, xs.ld) if log is not None)
    return spread <= SAFE_EXPONENT


def _path_index(xs: Arrays, C: int, paths: tuple[str, ...]):
    """Index of the first path whose factoring is exact for these decays (the last path is exact
    for any). Each path's check runs only when the ones before it failed: the common case pays
    for one check."""
    if len(paths) == 1:
        return jnp.int32(0)
    return jax.lax.cond(
        _safe(xs, C, _FACTORED_SPAN[paths[0]]),
        lambda: jnp.int32(0),
        lambda: 1 + _path_index(xs, C, paths[1:]),
    )


def _choose(paths: tuple[str, ...], index, fn):
    """fn(paths[index]), by a `lax.switch` (no switch for a single path)."""
    if len(paths) == 1:
        return fn(paths[0])
    return jax.lax.switch(index, [functools.partial(fn, p) for p in paths])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _over_chunks(xs: Arrays, run, m0, C: int, paths: tuple[str, ...]):
    return _over_chunks_fwd(xs, run, m0, C, paths)[0]


def _over_chunks_fwd(xs, run, m0, C, paths):
    index = _path_index(xs, C, paths)
    y, m_last, m_in = _choose(paths, index, lambda p: _forward(xs, run, m0, C, p))
    return (y, m_last), (xs, run, m_in, index)


def _over_chunks_bwd(C, paths, res, cts):
    xs, run, m_in, index = res
    dy, dm_last = cts
    dxs, dm0 = _choose(paths, index, lambda p: _backward(xs, run, m_in, dy, dm_last, C, p))
    return dxs, None, dm0


_over_chunks.defvjp(_over_chunks_fwd, _over_chunks_bwd)


def _paths(p: Problem, C: int) -> tuple[str, ...]:
    """The intra-chunk paths to choose from, fastest first; the last one is exact for any decay.

    No decay needs no factoring. Scalar decays fall back to their C×C decay matrix formed
    directly. Other decays try the factoring about each half's midpoint (moderately strong
    decays, such as log o ≈ -1 per step) before the sub-block path of `intra_exact`.
    """
    if p.lk is None and p.ld is None:
        return ("direct",)
    if p.ld is None and p.lk.shape[-1] == 1:
        return ("midpoint", "direct")
    if C % 2 == 0 and C >= 4:
        return ("midpoint", "halves", "exact")
    return ("midpoint", "exact")


def scan(p: Problem, chunk_size: int | None = None):
    """Chunked backend: returns (y [B,T,H,D], final memory [B,H,K,D])."""
    if (reason := unsupported_reason(p)) is not None:
        raise ValueError(f"backend 'chunked' does not support {reason}")
    C = DEFAULT_CHUNK if chunk_size is None else chunk_size
    B, T, H, _ = p.e.shape
    pad = -T % C

    def padded(a):  # zero padding at the end: no write, no decay, no read
        a = jnp.broadcast_to(a, (a.shape[0], T, a.shape[2], a.shape[3]))
        return jnp.pad(a, ((0, 0), (0, pad), (0, 0), (0, 0))) if pad else a

    xs = Arrays(*(opt(padded, a) for a in (p.e, p.i, p.s, p.lk, p.ld)))
    run = None
    if p.reset is not None:
        run = jnp.cumsum(jnp.pad(p.reset, ((0, 0), (0, pad))), axis=1, dtype=jnp.int32)
    y, m_last = _over_chunks(xs, run, reference.initial_memory(p), C, _paths(p, C))
    return y[:, :T], m_last
