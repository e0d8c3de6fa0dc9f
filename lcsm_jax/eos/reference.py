"""Sequential `lax.scan` backend: the executable specification all other backends are tested on.

One step is `m = o ⊙ m + e iᵀ` (o = 0 where a segment restarts), `y = read(s, m)`. Arrays whose
time axis has size 1 (data-independent parameters) are closed over instead of scanned, so a fixed
K×D decay is never broadcast to [B,T,H,K,D]. A single token (T = 1) is one `step`, with no loop.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lcsm_jax.eos.inputs import Problem, vary_like
from lcsm_jax.eos.product import ProductLog

PRECISION = jax.lax.Precision.HIGHEST


class Step(NamedTuple):
    """One time step: e [B,H,K], i [B,H,D], s [B,H,K] or [b,h,K|1,D|1], log decays, reset [B].

    As a scan's input (`run_steps`) the fields carry a time axis at 1 (size 1: constant)."""

    e: jax.Array
    i: jax.Array
    s: jax.Array
    lk: jax.Array | None
    ld: jax.Array | None
    lo: jax.Array | None
    lp: ProductLog | None
    reset: jax.Array | None

    @classmethod
    def of(cls, p: Problem) -> Step:
        return cls(e=p.e, i=p.i, s=p.s, lk=p.lk, ld=p.ld, lo=p.lo, lp=p.lp, reset=p.reset)


def oscillation(lk, ld, lo, lp=None):
    """exp(log o) broadcastable to [B,H,K,D] (rank 4), or None for no decay."""
    if lp is not None:  # a product decay: this step's K×D decay, built from its factors here
        return jnp.exp(lp.log())
    if lo is not None:
        return jnp.exp(lo)
    log = None
    if lk is not None:
        log = lk[..., :, None]
    if ld is not None:
        log = ld[..., None, :] if log is None else log + ld[..., None, :]
    return None if log is None else jnp.exp(log)


def read(s, m_BxHxKxD):
    """y[c] = Σ_r s[r] m[r, c] (vector s) or Σ_r s[r, c] m[r, c] (elementwise s)."""
    if s.ndim == m_BxHxKxD.ndim:
        return jnp.sum(s * m_BxHxKxD, axis=-2)
    return jnp.einsum("bhk,bhkd->bhd", s, m_BxHxKxD, precision=PRECISION)


def step(m_BxHxKxD, x: Step):
    """One recurrence step; returns (new memory, y [B,H,D])."""
    o = oscillation(x.lk, x.ld, x.lo, x.lp)
    m = m_BxHxKxD if o is None else o * m_BxHxKxD
    if x.reset is not None:
        m = jnp.where(x.reset[:, None, None, None], jnp.zeros_like(m), m)
    m = m + x.e[..., :, None] * x.i[..., None, :]
    return m, read(x.s, m)


def split_time(steps: Step):
    """(scanned, consts, join): the leaves of `steps` with a time axis of size T > 1, moved to
    the front ([T, ...]); the leaves of size 1 there, with the axis dropped; and
    `join(scanned_t, consts)`, which rebuilds one step's `Step` from them."""
    leaves, treedef = jax.tree.flatten(steps)
    timed = [x.shape[1] > 1 for x in leaves]
    scanned = [jnp.moveaxis(x, 1, 0) for x, t in zip(leaves, timed, strict=True) if t]
    consts = [x[:, 0] for x, t in zip(leaves, timed, strict=True) if not t]

    def join(scanned_t, consts):
        xs, cs = iter(scanned_t), iter(consts)
        return jax.tree.unflatten(treedef, [next(xs) if t else next(cs) for t in timed])

    return scanned, consts, join


def run_steps(m0_BxHxKxD, steps: Step):
    """Scans `step` over axis 1 of the fields of `steps`; a field with size-1 axis 1 is constant."""
    T = steps.e.shape[1]
    scanned, consts, join = split_time(steps)
    if T == 1:  # one token (decoding)
        m, y = step(m0_BxHxKxD, join([], consts))
        return y[:, None], m

    def body(m, xs):
        return step(m, join(xs, consts))

    m_last, y_TxBxHxD = jax.lax.scan(body, m0_BxHxKxD, scanned, length=T)
    return jnp.moveaxis(y_TxBxHxD, 0, 1), m_last


def initial_memory(p: Problem):
    B, _, H, K = p.e.shape
    D = p.i.shape[-1]
    m0 = p.m0 if p.m0 is not None else jnp.zeros((B, H, K, D), p.e.dtype)
    return vary_like(m0, *jax.tree.leaves(Step.of(p)))


def scan(p: Problem, chunk_size: int | None = None):
    """Reference backend: (y [B,T,H,D], final memory [B,H,K,D]) in the accumulation dtype."""
    del chunk_size
    return run_steps(initial_memory(p), Step.of(p))
