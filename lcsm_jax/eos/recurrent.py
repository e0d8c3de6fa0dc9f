"""Sequential scan with a checkpointed reverse-scan gradient: every structure, O(T/C·K·D) memory.

The forward pass is the reference recurrence (`reference.step`) in blocks of C steps, keeping only
the memory entering each block. The gradient (`jax.custom_vjp`) walks the blocks in reverse: it
recomputes one block's memories from its checkpoint (C·K·D), then runs the VJP of one step
backwards through the block, carrying the memory's cotangent and summing the cotangents of the
inputs that have no time axis (data-independent decays, a fixed elementwise s, the parameter of a
product decay). Forward+backward costs about three forward passes, and nothing of size T·K·D is
stored, where autodiff of the reference keeps every step's memory (T·K·D) and its backward reads
it back. Product decays (`ProductDecay`) are built step by step, in both directions.

Inside `jax.shard_map`, every input is first cast to vary over the mesh axes any input varies
over, so the scan carries (memory, cotangents) keep one type; autodiff of that cast sums the
cotangents of replicated inputs across devices once, outside the scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lcsm_jax.eos.inputs import Problem, unbroadcast, vary_like
from lcsm_jax.eos.reference import PRECISION, Step, initial_memory, oscillation, split_time, step

DEFAULT_BLOCK = 64  # checkpoint interval C: memory T/C + C states; measured in benchmarks/


def scan(p: Problem, chunk_size: int | None = None):
    """Recurrent backend: (y [B,T,H,D], final memory [B,H,K,D]); `chunk_size` is the checkpoint
    interval (default 64)."""
    block = chunk_size or DEFAULT_BLOCK
    steps = Step.of(p)
    steps = jax.tree.map(lambda x: vary_like(x, *jax.tree.leaves(steps)), steps)
    m0 = initial_memory(p)
    scanned, consts, join = split_time(steps)
    # Inputs without a time axis get the batch axis in full (K×D ones their full [B,H,K,D]), so
    # the reverse scan sums their cotangents over steps only; autodiff of this broadcast sums
    # over the batch (and a size-1 K or D) once, after it. Summing per step was 3x slower.
    B, _, H, K = p.e.shape
    full = (B, H, K, p.i.shape[-1])
    consts = [jnp.broadcast_to(c, full if c.ndim == 4 else (B, *c.shape[1:])) for c in consts]
    floats = [x for x in scanned if _differentiable(x)]
    flags = [x for x in scanned if not _differentiable(x)]  # the segment resets (bool)
    run = _make_run(join, [_differentiable(x) for x in scanned], block, p.e.shape[1])
    y_TxBxHxD, m_last = run(m0, floats, consts, flags)
    return jnp.moveaxis(y_TxBxHxD, 0, 1), m_last


def _differentiable(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.inexact)


def _make_run(join, is_float, block: int, T: int):
    """The custom-VJP scan over (m0, timed floats [T,...], consts, timed flags [T,...])."""
    nb = T // block

    def step_of(floats_t, flags_t, consts):
        fs, gs = iter(floats_t), iter(flags_t)
        return join([next(fs) if f else next(gs) for f in is_float], consts)

    def scan_steps(m, floats, consts, flags):
        """(m_last, y [n,...]) over the n steps of `floats` / `flags`."""

        def body(m, xs):
            return step(m, step_of(*xs, consts))

        return jax.lax.scan(body, m, (floats, flags), length=(floats + flags)[0].shape[0])

    def blocks(xs, nb: int):
        """The first nb·block steps as [nb, block, ...] and the remaining steps [R, ...]."""
        main = [x[: nb * block].reshape((nb, block) + x.shape[1:]) for x in xs]
        return main, [x[nb * block :] for x in xs]

    @jax.custom_vjp
    def run(m0, floats, consts, flags):
        m_last, y = scan_steps(m0, floats, consts, flags)
        return y, m_last

    def run_fwd(m0, floats, consts, flags):
        (f_main, f_tail), (g_main, g_tail) = blocks(floats, nb), blocks(flags, nb)

        def one_block(m, xs):
            f_b, g_b = xs
            m_next, y = scan_steps(m, f_b, consts, g_b)
            return m_next, (y, m)  # m: the checkpoint entering the block

        m, (y_main, checkpoints) = jax.lax.scan(one_block, m0, (f_main, g_main), length=nb)
        m_tail = m
        m_last, y_tail = scan_steps(m, f_tail, consts, g_tail)
        y = jnp.concatenate([y_main.reshape((nb * block,) + y_main.shape[2:]), y_tail])
        return (y, m_last), (checkpoints, m_tail, floats, consts, flags)

    def block_bwd(m_start, floats, flags, dy, dm, dconsts, consts):
        """Cotangents through one block: returns (dm entering it, d floats [n,...], dconsts)."""

        def forward(m, xs):
            m_next, _ = step(m, step_of(*xs, consts))
            return m_next, m

        n = (floats + flags)[0].shape[0]
        _, m_prev = jax.lax.scan(forward, m_start, (floats, flags), length=n)

        def backward(carry, xs):
            dm, dconsts = carry
            m, floats_t, flags_t, dy_t = xs

            def one(floats_t, consts):  # the step's differentiable inputs
                return step_of(floats_t, flags_t, consts)._replace(reset=None)

            _, x_vjp = jax.vjp(one, floats_t, consts)
            dm, dx = step_vjp(m, step_of(floats_t, flags_t, consts), dm, dy_t)
            dfloats_t, dc = x_vjp(dx)
            return (dm, jax.tree.map(jnp.add, dconsts, dc)), dfloats_t

        (dm, dconsts), dfloats = jax.lax.scan(
            backward, (dm, dconsts), (m_prev, floats, flags, dy), reverse=True, length=n
        )
        return dm, dfloats, dconsts

    def run_bwd(residuals, cotangents):
        checkpoints, m_tail, floats, consts, flags = residuals
        dy, dm = cotangents
        (f_main, f_tail), (g_main, g_tail) = blocks(floats, nb), blocks(flags, nb)
        (dy_main,), (dy_tail,) = blocks([dy], nb)
        dconsts = jax.tree.map(jnp.zeros_like, consts)
        dm, df_tail, dconsts = block_bwd(m_tail, f_tail, g_tail, dy_tail, dm, dconsts, consts)

        def one_block(carry, xs):
            dm, dconsts = carry
            checkpoint, f_b, g_b, dy_b = xs
            dm, df_b, dconsts = block_bwd(checkpoint, f_b, g_b, dy_b, dm, dconsts, consts)
            return (dm, dconsts), df_b

        (dm, dconsts), df_main = jax.lax.scan(
            one_block,
            (dm, dconsts),
            (checkpoints, f_main, g_main, dy_main),
            reverse=True,
            length=nb,
        )
        dfloats = [
            jnp.concatenate([a.reshape((nb * a.shape[1],) + a.shape[2:]), b])
            for a, b in zip(df_main, df_tail, strict=True)
        ]
        dflags = [np.zeros(g.shape, jax.dtypes.float0) for g in flags]
        return dm, dfloats, dconsts, dflags

    run.defvjp(run_fwd, run_bwd)
    return run


def step_vjp(m_prev, x: Step, dm, dy):
    """The transpose of one step `m = o ⊙ m_prev + e iᵀ`, `y = read(s, m)` at `m_prev`.

    Returns (the cotangent of m_prev, the cotangent of `x` as a Step; its `reset` is None)."""
    logs = (x.lk, x.ld, x.lo, x.lp)
    o, o_vjp = (None, None) if all(v is None for v in logs) else jax.vjp(oscillation, *logs)
    keep = None if x.reset is None else ~x.reset[:, None, None, None]
    # A restart makes the step's effective oscillation 0 (nothing flows through o_t).
    o_eff = o if keep is None else jnp.where(keep, 1.0 if o is None else o, 0.0)
    m = m_prev if o_eff is None else o_eff * m_prev
    m = m + x.e[..., :, None] * x.i[..., None, :]
    if x.s.ndim == m.ndim:  # elementwise read y[c] = Σ_r s[r,c] m[r,c]
        ds = unbroadcast(m * dy[..., None, :], x.s.shape)
        g = dm + x.s * dy[..., None, :]
    else:
        ds = jnp.einsum("bhkd,bhd->bhk", m, dy, precision=PRECISION)
        g = dm + x.s[..., :, None] * dy[..., None, :]
    de = jnp.einsum("bhkd,bhd->bhk", g, x.i, precision=PRECISION)
    di = jnp.einsum("bhkd,bhk->bhd", g, x.e, precision=PRECISION)
    dlogs = (None,) * 4
    if o is not None:
        do = g * m_prev if keep is None else jnp.where(keep, g * m_prev, 0.0)
        dlogs = o_vjp(unbroadcast(do, o.shape).astype(o.dtype))
    dm_prev = g if o_eff is None else (g * o_eff).astype(g.dtype)
    dx = Step(e=de, i=di, s=ds, lk=dlogs[0], ld=dlogs[1], lo=dlogs[2], lp=dlogs[3], reset=None)
    return dm_prev, dx
