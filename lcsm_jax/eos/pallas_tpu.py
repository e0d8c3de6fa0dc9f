"""Pallas kernel 1 for TPU (Mosaic): the sequential EOS scan with time as a sequential grid axis.

The GPU kernel (`pallas_scan`) walks all of T inside one program; on TPU a block must fit in VMEM,
so time is cut into blocks of `block_t` steps that form the last grid axis ("arbitrary": run in
order) and the memory tile is carried between them in a VMEM scratch buffer. Inside a block a
loop over steps keeps the tile in vector registers.

Layout: Mosaic tiles the last two dims of every block as (sublanes, lanes), so per-step vectors
are stored as 2-D slabs that broadcast without relayout: e, s, lk as [T, K, 1] columns, i, ld as
[T, 1, D] rows, keep as [T, 1, 1]; a step reads slab [t] of each. Time is zero-padded to whole
blocks (inert steps: no write, no decay, no restart).

Backward: the grid walks time blocks in reverse (index maps read block NB-1-t); each block's
states are recomputed from its checkpoint into a VMEM workspace and the SPEC §1 backward runs
over it, carrying dm in scratch. Partial sums over K or D tiles are summed by the caller.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from lcsm_jax.eos.pallas_pack import FIELDS, Launch, Packed, round_up

f32 = jnp.float32
SEMANTICS = ("parallel", "parallel", "parallel", "arbitrary")


def _call(launch: Launch, kernel, **kwargs):
    if launch.interpret:
        return pl.pallas_call(kernel, interpret=True, **kwargs)
    params = pltpu.CompilerParams(dimension_semantics=SEMANTICS)
    return pl.pallas_call(kernel, compiler_params=params, **kwargs)


def _slabs(packed: Packed, Tp: int) -> dict:
    """Packed -> the per-step 2-D slab layout above, time padded to Tp."""

    def pad(x, value=0.0):
        widths = [(0, 0)] * x.ndim
        widths[1] = (0, Tp - x.shape[1])
        return jnp.pad(x, widths, constant_values=value)

    col = lambda x: None if x is None else pad(x)[..., None]  # noqa: E731
    row = lambda x: None if x is None else pad(x)[..., None, :]  # noqa: E731
    tile = lambda x: None if x is None else pad(x)  # noqa: E731
    return {
        "e": col(packed.e),
        "i": row(packed.i),
        "s": tile(packed.s) if packed.elementwise_read else col(packed.s),
        "lk": col(packed.lk),
        "ld": row(packed.ld),
        "lo": tile(packed.lo),
        "keep": pad(packed.keep, 1.0)[..., None, None],
        "m0": packed.m0,
    }


def _specs(slabs: dict, bk: int, bd: int, TB: int, elementwise: bool, block):
    """BlockSpecs for a (g, kb, db, tb) grid; `block(tb)` is the time block read at step tb."""
    col_k = pl.BlockSpec((None, TB, bk, 1), lambda g, k, d, t: (g, block(t), k, 0))
    one = pl.BlockSpec((None, TB, 1, 1), lambda g, k, d, t: (g, block(t), 0, 0))
    row_d = pl.BlockSpec((None, TB, 1, bd), lambda g, k, d, t: (g, block(t), 0, d))
    tile = pl.BlockSpec((None, TB, bk, bd), lambda g, k, d, t: (g, block(t), k, d))
    lk = slabs["lk"]
    specs = {
        "e": col_k,
        "i": row_d,
        "s": tile if elementwise else col_k,
        "lk": one if lk is not None and lk.shape[-2] == 1 else col_k,
        "ld": row_d,
        "lo": tile,
        "keep": one,
        "m0": pl.BlockSpec((None, bk, bd), lambda g, k, d, t: (g, k, d)),
    }
    names = [n for n in FIELDS if slabs[n] is not None]
    return names, [specs[n] for n in names], [slabs[n] for n in names]


def _advance(r, j, m):
    """m_t = o_t ⊙ m_{t-1} + e_t i_tᵀ for slab j of the current block (restart: memory dropped)."""
    log = _log_decay(r, j)
    decayed = m if log is None else jnp.exp(log) * m
    return jnp.where(r["keep"][j] > 0.5, decayed, 0.0) + r["e"][j] * r["i"][j]


def _log_decay(r, j):
    log = None
    for name in ("lk", "ld", "lo"):
        if name in r:
            log = r[name][j] if log is None else log + r[name][j]
    return log


def _setup(packed: Packed, launch: Launch):
    G, T, Kp = packed.e.shape
    Dp = packed.i.shape[-1]
    TB = launch.block_t
    NB = -(-T // TB)
    bk, bd = launch.block_k, launch.block_d
    return G, T, Kp, Dp, TB, NB, round_up(T, TB), bk, bd, (G, Kp // bk, Dp // bd, NB)


def forward(packed: Packed, launch: Launch):
    """(y [G,T,Dp], final memory [G,Kp,Dp], checkpoints [G,NB,Kp,Dp]) as `pallas_scan.forward`."""
    G, T, Kp, Dp, TB, NB, Tp, bk, bd, grid = _setup(packed, launch)
    slabs = _slabs(packed, Tp)
    names, in_specs, args = _specs(slabs, bk, bd, TB, packed.elementwise_read, lambda t: t)

    def kernel(*refs):
        r = dict(zip(names, refs[: len(args)], strict=True))
        y_ref, m_ref, ck_ref, m_scr = refs[len(args) :]
        tb = pl.program_id(3)

        @pl.when(tb == 0)
        def _():
            m_scr[...] = r["m0"][...]

        ck_ref[...] = m_scr[...]

        def step(j, m):
            m = _advance(r, j, m)
            y_ref[j] = jnp.sum(r["s"][j] * m, axis=0, keepdims=True)
            return m

        m = jax.lax.fori_loop(0, TB, step, m_scr[...])
        m_scr[...] = m

        @pl.when(tb == NB - 1)
        def _():
            m_ref[...] = m

    y, m_last, checkpoints = _call(
        launch,
        kernel,
        grid=grid,
        in_specs=in_specs,
        out_specs=[
            pl.BlockSpec((None, None, TB, 1, bd), lambda g, k, d, t: (g, k, t, 0, d)),
            pl.BlockSpec((None, bk, bd), lambda g, k, d, t: (g, k, d)),
            pl.BlockSpec((None, None, bk, bd), lambda g, k, d, t: (g, t, k, d)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((G, grid[1], Tp, 1, Dp), f32),
            jax.ShapeDtypeStruct((G, Kp, Dp), f32),
            jax.ShapeDtypeStruct((G, NB, Kp, Dp), f32),
        ],
        scratch_shapes=[pltpu.VMEM((bk, bd), f32)],
        name="eos_scan_fwd_tpu",
    )(*args)
    return y.sum(axis=1)[:, :T, 0], m_last, checkpoints


def backward(packed: Packed, launch: Launch, checkpoints, dy_GxTxDp, dm_GxKpxDp):
    """Cotangents of the Packed fields, as `pallas_scan.backward`."""
    G, T, Kp, Dp, TB, NB, Tp, bk, bd, grid = _setup(packed, launch)
    nk, nd = grid[1], grid[2]
    slabs = _slabs(packed, Tp)
    rev = lambda t: NB - 1 - t  # noqa: E731
    elementwise = packed.elementwise_read
    names, in_specs, args = _specs(slabs, bk, bd, TB, elementwise, rev)
    dy = jnp.pad(dy_GxTxDp, ((0, 0), (0, Tp - T), (0, 0)))[:, :, None, :]
    in_specs += [
        pl.BlockSpec((None, None, bk, bd), lambda g, k, d, t: (g, rev(t), k, d)),
        pl.BlockSpec((None, TB, 1, bd), lambda g, k, d, t: (g, rev(t), 0, d)),
        pl.BlockSpec((None, bk, bd), lambda g, k, d, t: (g, k, d)),
    ]
    k_part = pl.BlockSpec((None, None, TB, bk, 1), lambda g, k, d, t: (g, d, rev(t), k, 0))
    d_part = pl.BlockSpec((None, None, TB, 1, bd), lambda g, k, d, t: (g, k, rev(t), 0, d))
    tile_t = pl.BlockSpec((None, TB, bk, bd), lambda g, k, d, t: (g, rev(t), k, d))
    k_shape = jax.ShapeDtypeStruct((G, nd, Tp, Kp, 1), f32)
    d_shape = jax.ShapeDtypeStruct((G, nk, Tp, 1, Dp), f32)
    tile_shape = jax.ShapeDtypeStruct((G, Tp, Kp, Dp), f32)
    outs = [
        (k_part, k_shape),
        (d_part, d_shape),
        (tile_t, tile_shape) if elementwise else (k_part, k_shape),
        (pl.BlockSpec((None, bk, bd), lambda g, k, d, t: (g, k, d)), packed.m0),
    ]
    decays = [n for n in ("lk", "ld", "lo") if slabs[n] is not None]
    outs += [{"lk": (k_part, k_shape), "ld": (d_part, d_shape), "lo": (tile_t, tile_shape)}[n]
             for n in decays]  # fmt: skip

    def kernel(*refs):
        r = dict(zip(names, refs[: len(args)], strict=True))
        ck_ref, dy_ref, dmT_ref = refs[len(args) : len(args) + 3]
        de_ref, di_ref, ds_ref, dm0_ref, *rest = refs[len(args) + 3 :]
        dlog_refs = dict(zip(decays, rest[: len(decays)], strict=True))
        dm_scr, w_scr = rest[len(decays) :]
        tb = pl.program_id(3)

        @pl.when(tb == 0)
        def _():
            dm_scr[...] = dmT_ref[...]

        w_scr[0] = ck_ref[...]

        def recompute(j, m):
            m = _advance(r, j, m)
            w_scr[j + 1] = m
            return m

        jax.lax.fori_loop(0, TB, recompute, ck_ref[...])

        def reverse(jj, dm):
            j = TB - 1 - jj
            dy_j = dy_ref[j]
            dm = dm + r["s"][j] * dy_j
            m_t = w_scr[j + 1]
            ds = m_t * dy_j
            ds_ref[j] = ds if elementwise else jnp.sum(ds, axis=1, keepdims=True)
            de_ref[j] = jnp.sum(dm * r["i"][j], axis=1, keepdims=True)
            di_ref[j] = jnp.sum(dm * r["e"][j], axis=0, keepdims=True)
            keep = r["keep"][j] > 0.5
            log = _log_decay(r, j)
            if log is None:
                return jnp.where(keep, dm, 0.0)
            o = jnp.exp(log)
            dlog = jnp.where(keep, dm * w_scr[j] * o, 0.0)
            if "lk" in dlog_refs:
                dlog_refs["lk"][j] = jnp.sum(dlog, axis=1, keepdims=True)
            if "ld" in dlog_refs:
                dlog_refs["ld"][j] = jnp.sum(dlog, axis=0, keepdims=True)
            if "lo" in dlog_refs:
                dlog_refs["lo"][j] = dlog
            return jnp.where(keep, o * dm, 0.0)

        dm = jax.lax.fori_loop(0, TB, reverse, dm_scr[...])
        dm_scr[...] = dm

        @pl.when(tb == NB - 1)
        def _():
            dm0_ref[...] = dm

    results = _call(
        launch,
        kernel,
        grid=grid,
        in_specs=in_specs,
        out_specs=[spec for spec, _ in outs],
        out_shape=[jax.ShapeDtypeStruct(shape.shape, f32) for _, shape in outs],
        scratch_shapes=[pltpu.VMEM((bk, bd), f32), pltpu.VMEM((TB + 1, bk, bd), f32)],
        name="eos_scan_bwd_tpu",
    )(*args, checkpoints, dy, dm_GxKpxDp)
    de, di, ds, dm0, *dlogs = results
    grads = dict(zip(decays, dlogs, strict=True))
    dlk = grads.get("lk")
    if dlk is not None:
        dlk = dlk.sum(axis=1)[:, :T, :, 0]
        if packed.lk.shape[-1] == 1:
            dlk = dlk.sum(axis=-1, keepdims=True)  # a scalar decay, broadcast over K
    dld = grads.get("ld")
    return Packed(
        e=de.sum(axis=1)[:, :T, :, 0],
        i=di.sum(axis=1)[:, :T, 0],
        s=ds[:, :T] if elementwise else ds.sum(axis=1)[:, :T, :, 0],
        lk=dlk,
        ld=None if dld is None else dld.sum(axis=1)[:, :T, 0],
        lo=None if grads.get("lo") is None else grads["lo"][:, :T],
        keep=jnp.zeros_like(packed.keep),
        m0=dm0,
    )
