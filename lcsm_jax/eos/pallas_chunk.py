"""Pallas kernel 2: the chunkwise EOS forward for separable decays (none, scalar, K/D-wise, both).

One program per (row g, D block) walks the chunks of C steps in order with the Kp×bd memory as
the loop carry. Per chunk: the output of the carried memory and the memory update are matmuls
(q·m, kᵀ·v: [C,Kp]@[Kp,bd] and [Kp,C]@[C,bd], the tensor-core/MXU shapes), and the intra-chunk
term is a causal, segment-masked C×C attention-like matrix.

Numerics: every exponent is a difference of cumulative log-decays G_a - G_b with b <= a inside
one chunk, hence <= 0 for real decays (no overflow, no division by cumulative products). A K-wise
decay makes the intra matrix depend on r, A_tj = Σ_r q_t[r] k_j[r] exp(G_t[r] - G_j[r]), which is
formed exactly as a C×C×Kp product (so C stays small, 16 by default); a D-wise decay likewise
weights A by exp(Gd_t[c] - Gd_j[c]) over C×C×bd. Without those the intra term is two matmuls.
Accumulation is float32 throughout; matmuls run at full float32 precision (no TF32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from lcsm_jax.eos.pallas_pack import FIELDS, Launch, Packed, round_up

f32 = jnp.float32
PRECISION = jax.lax.Precision.HIGHEST


def _dot(a, b):
    return jnp.dot(a, b, precision=PRECISION, preferred_element_type=f32)


def _pad_time(packed: Packed, Tp: int) -> Packed:
    """Pads time to Tp with inert steps: no write, no decay, no restart."""
    T = packed.e.shape[1]

    def pad(x, value=0.0):
        if x is None or Tp == T:
            return x
        widths = [(0, 0)] * x.ndim
        widths[1] = (0, Tp - T)
        return jnp.pad(x, widths, constant_values=value)

    return packed._replace(
        e=pad(packed.e),
        i=pad(packed.i),
        s=pad(packed.s),
        lk=pad(packed.lk),
        ld=pad(packed.ld),
        keep=pad(packed.keep, 1.0),
    )


def _chunk_terms(q, k, v, gk, gd, pair):
    """Intra-chunk output [C,bd]: Σ_{j<=t, same segment} A_tj ⊙ exp(Gd_t - Gd_j) v_j."""
    if gk is None:
        a = _dot(q, k.T)
    elif gk.shape[-1] == 1:
        a = _dot(q, k.T) * jnp.exp(jnp.where(pair, gk - gk.reshape(1, -1), 0.0))
    else:
        diff = jnp.where(pair[:, :, None], gk[:, None, :] - gk[None, :, :], 0.0)
        a = jnp.sum(q[:, None, :] * k[None, :, :] * jnp.exp(diff), axis=-1)
    a = jnp.where(pair, a, 0.0)
    if gd is None:
        return _dot(a, v)
    diff = jnp.where(pair[:, :, None], gd[:, None, :] - gd[None, :, :], 0.0)
    return jnp.sum(a[:, :, None] * jnp.exp(diff) * v[None, :, :], axis=1)


def forward(packed: Packed, launch: Launch):
    """(y [G,T,Dp], final memory [G,Kp,Dp], memories before steps 0, C, 2C, ... [G,NB,Kp,Dp])."""
    if packed.lo is not None or packed.elementwise_read:
        raise ValueError("the chunked Pallas kernel takes separable decays and a vector s only")
    G, T, Kp = packed.e.shape
    Dp = packed.i.shape[-1]
    C = launch.block_t
    bd = min(launch.block_d, Dp)
    NB = -(-T // C)
    Tp = round_up(T, C)
    padded = _pad_time(packed, Tp)
    lk_width = None if packed.lk is None else packed.lk.shape[-1]
    specs = {
        "e": pl.BlockSpec((None, Tp, Kp), lambda g, d: (g, 0, 0)),
        "i": pl.BlockSpec((None, Tp, bd), lambda g, d: (g, 0, d)),
        "s": pl.BlockSpec((None, Tp, Kp), lambda g, d: (g, 0, 0)),
        "lk": pl.BlockSpec((None, Tp, lk_width), lambda g, d: (g, 0, 0)),
        "ld": pl.BlockSpec((None, Tp, bd), lambda g, d: (g, 0, d)),
        "keep": pl.BlockSpec((None, Tp), lambda g, d: (g, 0)),
        "m0": pl.BlockSpec((None, Kp, bd), lambda g, d: (g, 0, d)),
    }
    names = [n for n, x in zip(FIELDS, padded, strict=True) if x is not None]
    args = [x for x in padded if x is not None]

    def kernel(*refs):
        r = dict(zip(names, refs[: len(args)], strict=True))
        y_ref, m_ref, ck_ref = refs[len(args) :]
        row = jax.lax.broadcasted_iota(jnp.int32, (C, C), 0)
        col = jax.lax.broadcasted_iota(jnp.int32, (C, C), 1)

        def chunk(c, m):
            ck_ref[c] = m
            rows = pl.ds(pl.multiple_of(c * C, C), C)
            q, k, v = r["s"][rows, :], r["e"][rows, :], r["i"][rows, :]
            # Segment index inside the chunk: 0 while still in the carried memory's segment.
            run = jnp.cumsum(1.0 - r["keep"][rows])
            pair = (row >= col) & (run[:, None] == run[None, :])
            from_prev = (run == 0.0)[:, None]
            in_last = (run == jnp.max(run))[:, None]
            lk = r["lk"][rows, :] if "lk" in r else None
            ld = r["ld"][rows, :] if "ld" in r else None
            gk = None if lk is None else jnp.cumsum(lk, axis=0)
            gd = None if ld is None else jnp.cumsum(ld, axis=0)

            y = _chunk_terms(q, k, v, gk, gd, pair)
            q_prev = q if gk is None else q * jnp.exp(gk)
            y_prev = _dot(q_prev, m)
            if gd is not None:
                y_prev = y_prev * jnp.exp(gd)
            r_y = y + jnp.where(from_prev, y_prev, 0.0)
            y_ref[rows, :] = r_y

            # Memory after the chunk: decayed carry (unless a restart) plus the last segment.
            k_in, v_in, m_kept = k, v, m
            if gk is not None:
                gk_last = jnp.sum(lk, axis=0, keepdims=True)
                k_in = k * jnp.exp(gk_last - gk)
                m_kept = m_kept * jnp.exp(gk_last).reshape(-1, 1)
            if gd is not None:
                gd_last = jnp.sum(ld, axis=0, keepdims=True)
                v_in = v * jnp.exp(gd_last - gd)
                m_kept = m_kept * jnp.exp(gd_last)
            k_in = jnp.where(in_last, k_in, 0.0)
            return jnp.where(jnp.max(run) == 0.0, m_kept, 0.0) + _dot(k_in.T, v_in)

        m_ref[...] = jax.lax.fori_loop(0, NB, chunk, r["m0"][...])

    y, m_last, checkpoints = launch.call(
        kernel,
        grid=(G, Dp // bd),
        in_specs=[specs[n] for n in names],
        out_specs=[
            pl.BlockSpec((None, Tp, bd), lambda g, d: (g, 0, d)),
            pl.BlockSpec((None, Kp, bd), lambda g, d: (g, 0, d)),
            pl.BlockSpec((None, NB, Kp, bd), lambda g, d: (g, 0, 0, d)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((G, Tp, Dp), f32),
            jax.ShapeDtypeStruct((G, Kp, Dp), f32),
            jax.ShapeDtypeStruct((G, NB, Kp, Dp), f32),
        ],
        name="eos_chunk_fwd",
    )(*args)
    return y[:, :T], m_last, checkpoints
