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

PRECISION = jax.lax.Precision.HIGHEST


class Step(NamedTuple):
    """One time step: e [B,H,K], i [B,H,D], s [B,H,K] or [b,h,K|1,D|1], log decays, reset [B]."""

    e: jax.Array
    i: jax.Array
    s: jax.Array
    lk: jax.Array | None
    ld: jax.Array | None
    lo: jax.Array | None
    reset: jax.Array | None


def oscillation(lk, ld, lo):
    """exp(log o) broadcastable to [B,H,K,D] (rank 4), or None for no decay."""
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
    o = oscillation(x.lk, x.ld, x.lo)
    m = m_BxHxKxD if o is None else o * m_BxHxKxD
    if x.reset is not None:
        m = jnp.where(x.reset[:, None, None, None], jnp.zeros_like(m), m)
    m = m + x.e[..., :, None] * x.i[..., None, :]
    return m, read(x.s, m)


def run_steps(m0_BxHxKxD, steps: Step):
    """Scans `step` over axis 1 of the fields of `steps`; a field with size-1 axis 1 is constant."""
    T = steps.e.shape[1]
    if T == 1:  # one token (decoding)
        m, y = step(m0_BxHxKxD, Step(*(None if x is None else x[:, 0] for x in steps)))
        return y[:, None], m
    scanned = {}
    consts = {}
    for name, x in steps._asdict().items():
        if x is None:
            consts[name] = None
        elif x.shape[1] == 1 and T > 1:
            consts[name] = x[:, 0]
        else:
            scanned[name] = jnp.moveaxis(x, 1, 0)

    def body(m, xs):
        return step(m, Step(**consts, **xs))

    m_last, y_TxBxHxD = jax.lax.scan(body, m0_BxHxKxD, scanned, length=T)
    return jnp.moveaxis(y_TxBxHxD, 0, 1), m_last


def initial_memory(p: Problem):
    B, _, H, K = p.e.shape
    D = p.i.shape[-1]
    m0 = p.m0 if p.m0 is not None else jnp.zeros((B, H, K, D), p.e.dtype)
    return vary_like(m0, p.e, p.i, p.s, p.lk, p.ld, p.lo, p.reset)


def scan(p: Problem, chunk_size: int | None = None):
    """Reference backend: (y [B,T,H,D], final memory [B,H,K,D]) in the accumulation dtype."""
    del chunk_size
    steps = Step(e=p.e, i=p.i, s=p.s, lk=p.lk, ld=p.ld, lo=p.lo, reset=p.reset)
    return run_steps(initial_memory(p), steps)
