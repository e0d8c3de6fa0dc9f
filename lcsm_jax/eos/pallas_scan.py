"""Pallas kernel 1: the sequential EOS scan for any decay, with a full K×D decay as the main case.

One program per (row g, K block, D block) owns a bk×bd tile of the memory and walks time in a
loop with the tile as the loop carry, so the state never leaves registers/on-chip memory: per
step it reads one row of each input and writes one row of y. That moves the state through memory
once instead of log T times (associative scan). The tile is stored every `block_t` steps
(checkpoints) for the backward pass.

Backward: time blocks in reverse; each block's states are recomputed forward from its checkpoint
into a (block_t+1)×bk×bd workspace, then the SPEC §1 backward runs in reverse over the block.
Memory is O(T/block_t) states; we never invert the decay (m_{t-1} = (m_t - e iᵀ)/o is unstable).

Sums over a blocked channel axis (y over K, de/ds/dlk over D, di/dld over K) are written as one
partial per block and summed by the caller.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from lcsm_jax.eos.pallas_pack import FIELDS, Launch, Packed

f32 = jnp.float32


def _split(refs, present):
    it = iter(refs)
    return {name: next(it) if has else None for name, has in zip(FIELDS, present, strict=True)}


def _log_decay(r, t):
    """log o_t as a broadcastable tile ([bk|1, bd|1]), or None without decay."""
    log = None
    if r["lk"] is not None:
        log = r["lk"][t][:, None]
    if r["ld"] is not None:
        ld = r["ld"][t][None, :]
        log = ld if log is None else log + ld
    if r["lo"] is not None:
        log = r["lo"][t] if log is None else log + r["lo"][t]
    return log


def _advance(r, t, m):
    """m_t = o_t ⊙ m_{t-1} + e_t i_tᵀ, with the memory dropped where a segment restarts."""
    log = _log_decay(r, t)
    decayed = m if log is None else jnp.exp(log) * m
    keep = r["keep"][t] > 0.5
    return jnp.where(keep, decayed, 0.0) + r["e"][t][:, None] * r["i"][t][None, :]


def _in_specs(packed: Packed, bk: int, bd: int, T: int):
    """(present flags, BlockSpecs, arrays) of the present Packed fields for a (g, kb, db) grid."""
    row_k = pl.BlockSpec((None, T, bk), lambda g, k, d: (g, 0, k))
    row_d = pl.BlockSpec((None, T, bd), lambda g, k, d: (g, 0, d))
    tile_t = pl.BlockSpec((None, T, bk, bd), lambda g, k, d: (g, 0, k, d))
    lk_width = None if packed.lk is None else packed.lk.shape[-1]
    row_lk = row_k if lk_width != 1 else pl.BlockSpec((None, T, 1), lambda g, k, d: (g, 0, 0))
    specs = {
        "e": row_k,
        "i": row_d,
        "s": tile_t if packed.elementwise_read else row_k,
        "lk": row_lk,
        "ld": row_d,
        "lo": tile_t,
        "keep": pl.BlockSpec((None, T), lambda g, k, d: (g, 0)),
        "m0": pl.BlockSpec((None, bk, bd), lambda g, k, d: (g, k, d)),
    }
    present = [x is not None for x in packed]
    args = [x for x in packed if x is not None]
    return present, [specs[n] for n, has in zip(FIELDS, present, strict=True) if has], args


def _grid(packed: Packed, launch: Launch):
    G, T, Kp = packed.e.shape
    Dp = packed.i.shape[-1]
    bk, bd = min(launch.block_k, Kp), min(launch.block_d, Dp)
    return G, T, Kp, Dp, bk, bd, (G, Kp // bk, Dp // bd)


def forward(packed: Packed, launch: Launch):
    """(y [G,T,Dp], final memory [G,Kp,Dp], checkpoints [G,NB,Kp,Dp]) with NB = ceil(T/block_t)."""
    G, T, Kp, Dp, bk, bd, grid = _grid(packed, launch)
    TB = launch.block_t
    NB = -(-T // TB)
    elementwise = packed.elementwise_read
    present, in_specs, args = _in_specs(packed, bk, bd, T)

    def kernel(*refs):
        r = _split(refs[: len(args)], present)
        y_ref, m_ref, ck_ref = refs[len(args) :]

        def step(t, m):
            # lax.rem/div, not % and //: jnp's floor semantics add selects Triton cannot lower.
            @pl.when(jax.lax.rem(t, TB) == 0)
            def _():
                ck_ref[jax.lax.div(t, TB)] = m

            m = _advance(r, t, m)
            s = r["s"][t] if elementwise else r["s"][t][:, None]
            y_ref[t] = jnp.sum(s * m, axis=0)
            return m

        m_ref[...] = jax.lax.fori_loop(0, T, step, r["m0"][...])

    y_parts, m_last, checkpoints = launch.call(
        kernel,
        grid=grid,
        in_specs=in_specs,
        out_specs=[
            pl.BlockSpec((None, None, T, bd), lambda g, k, d: (g, k, 0, d)),
            pl.BlockSpec((None, bk, bd), lambda g, k, d: (g, k, d)),
            pl.BlockSpec((None, NB, bk, bd), lambda g, k, d: (g, 0, k, d)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((G, grid[1], T, Dp), f32),
            jax.ShapeDtypeStruct((G, Kp, Dp), f32),
            jax.ShapeDtypeStruct((G, NB, Kp, Dp), f32),
        ],
        name="eos_scan_fwd",
    )(*args)
    return y_parts.sum(axis=1), m_last, checkpoints


def backward(packed: Packed, launch: Launch, checkpoints, dy_GxTxDp, dm_GxKpxDp):
    """Cotangents of the Packed fields (None where absent) from those of (y, final memory).

    `checkpoints` are the memories before steps 0, TB, 2·TB, ... with TB = launch.block_t."""
    G, T, Kp, Dp, bk, bd, grid = _grid(packed, launch)
    TB = launch.block_t
    NB = checkpoints.shape[1]
    nk, nd = grid[1], grid[2]
    elementwise = packed.elementwise_read
    present, in_specs, args = _in_specs(packed, bk, bd, T)
    tile = pl.BlockSpec((None, bk, bd), lambda g, k, d: (g, k, d))
    in_specs += [
        pl.BlockSpec((None, NB, bk, bd), lambda g, k, d: (g, 0, k, d)),
        pl.BlockSpec((None, T, bd), lambda g, k, d: (g, 0, d)),
        tile,
    ]
    k_part = pl.BlockSpec((None, None, T, bk), lambda g, k, d: (g, d, 0, k))  # summed over D
    d_part = pl.BlockSpec((None, None, T, bd), lambda g, k, d: (g, k, 0, d))  # summed over K
    tile_t = pl.BlockSpec((None, T, bk, bd), lambda g, k, d: (g, 0, k, d))
    k_shape = jax.ShapeDtypeStruct((G, nd, T, Kp), f32)
    d_shape = jax.ShapeDtypeStruct((G, nk, T, Dp), f32)
    tile_t_shape = jax.ShapeDtypeStruct((G, T, Kp, Dp), f32)
    # Outputs: de, di, ds, dm0, workspace, then dlk / dld / dlo where present.
    outs = [
        (k_part, k_shape),
        (d_part, d_shape),
        (tile_t, tile_t_shape) if elementwise else (k_part, k_shape),
        (tile, jax.ShapeDtypeStruct((G, Kp, Dp), f32)),
        (
            pl.BlockSpec((None, None, None, TB + 1, bk, bd), lambda g, k, d: (g, k, d, 0, 0, 0)),
            jax.ShapeDtypeStruct((G, nk, nd, TB + 1, bk, bd), f32),
        ),
    ]
    if packed.lk is not None:
        outs.append((k_part, k_shape))
    if packed.ld is not None:
        outs.append((d_part, d_shape))
    if packed.lo is not None:
        outs.append((tile_t, tile_t_shape))

    def kernel(*refs):
        r = _split(refs[: len(args)], present)
        ck_ref, dy_ref, dmT_ref = refs[len(args) : len(args) + 3]
        de_ref, di_ref, ds_ref, dm0_ref, w_ref, *dlog_refs = refs[len(args) + 3 :]
        dlog_refs = iter(dlog_refs)
        dlk_ref = next(dlog_refs) if r["lk"] is not None else None
        dld_ref = next(dlog_refs) if r["ld"] is not None else None
        dlo_ref = next(dlog_refs) if r["lo"] is not None else None

        def reverse_step(j, t, dm):
            m_t, m_prev = w_ref[j + 1], w_ref[j]
            dy = dy_ref[t][None, :]
            s = r["s"][t] if elementwise else r["s"][t][:, None]
            dm = dm + s * dy
            ds_ref[t] = m_t * dy if elementwise else jnp.sum(m_t * dy, axis=1)
            de_ref[t] = jnp.sum(dm * r["i"][t][None, :], axis=1)
            di_ref[t] = jnp.sum(dm * r["e"][t][:, None], axis=0)
            keep = r["keep"][t] > 0.5
            log = _log_decay(r, t)
            if log is None:
                return jnp.where(keep, dm, 0.0)
            o = jnp.exp(log)
            dlog = jnp.where(keep, dm * m_prev * o, 0.0)
            if dlk_ref is not None:
                dlk_ref[t] = jnp.sum(dlog, axis=1)
            if dld_ref is not None:
                dld_ref[t] = jnp.sum(dlog, axis=0)
            if dlo_ref is not None:
                dlo_ref[t] = dlog
            return jnp.where(keep, o * dm, 0.0)

        def block(idx, dm):
            t0 = (NB - 1 - idx) * TB
            n = jnp.minimum(TB, T - t0)
            m0 = ck_ref[NB - 1 - idx]
            w_ref[0] = m0

            def recompute(j, m):
                m = _advance(r, t0 + j, m)
                w_ref[j + 1] = m
                return m

            jax.lax.fori_loop(0, n, recompute, m0)
            if not launch.interpret:
                # The reverse loop reads workspace tiles other threads may have written.
                from jax.experimental.pallas import triton as plgpu

                plgpu.debug_barrier()

            def reverse(jj, dm):
                return reverse_step(n - 1 - jj, t0 + n - 1 - jj, dm)

            return jax.lax.fori_loop(0, n, reverse, dm)

        dm0_ref[...] = jax.lax.fori_loop(0, NB, block, dmT_ref[...])

    results = launch.call(
        kernel,
        grid=grid,
        in_specs=in_specs,
        out_specs=[spec for spec, _ in outs],
        out_shape=[shape for _, shape in outs],
        name="eos_scan_bwd",
    )(*args, checkpoints, dy_GxTxDp, dm_GxKpxDp)
    de, di, ds, dm0, _, *dlogs = results
    dlogs = iter(dlogs)
    dlk = None if packed.lk is None else next(dlogs).sum(axis=1)
    dld = None if packed.ld is None else next(dlogs).sum(axis=1)
    dlo = None if packed.lo is None else next(dlogs)
    if dlk is not None and packed.lk.shape[-1] == 1:
        dlk = dlk.sum(axis=-1, keepdims=True)  # a scalar decay, broadcast over K in the kernel
    return Packed(
        e=de.sum(axis=1),
        i=di.sum(axis=1),
        s=ds if elementwise else ds.sum(axis=1),
        lk=dlk,
        ld=dld,
        lo=dlo,
        keep=jnp.zeros_like(packed.keep),
        m0=dm0,
    )
