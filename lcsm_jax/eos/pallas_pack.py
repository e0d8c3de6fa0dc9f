"""Kernel-side layout of an EOS problem for the Pallas backend, and how a kernel is launched.

A `Problem` is rearranged once into `Packed`: batch and heads folded into one axis G = B·H (one
grid row each), time before the channel axes, K and D zero-padded to multiples of the channel
blocks. Time-constant and batch/head-shared arrays are broadcast here, outside the `custom_vjp`,
so the kernels only see per-step rows and autodiff sums the gradients of the broadcasts back.
Padding is inert: padded rows of e and i are 0, padded decays are log 0 = 0, so padded memory
rows and columns stay 0 and are sliced away.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from lcsm_jax.eos.inputs import Problem

FIELDS = ("e", "i", "s", "lk", "ld", "lo", "keep", "m0")


class Packed(NamedTuple):
    """e [G,T,Kp]; i [G,T,Dp]; s [G,T,Kp] (vector read) or [G,T,Kp,Dp] (elementwise read);
    lk [G,T,1|Kp], ld [G,T,Dp], lo [G,T,Kp,Dp] (log decays, each None if absent);
    keep [G,T] (0 where a segment restarts, else 1); m0 [G,Kp,Dp]."""

    e: jax.Array
    i: jax.Array
    s: jax.Array
    lk: jax.Array | None
    ld: jax.Array | None
    lo: jax.Array | None
    keep: jax.Array
    m0: jax.Array

    @property
    def elementwise_read(self) -> bool:
        return self.s.ndim == 4


@dataclasses.dataclass(frozen=True)
class Launch:
    """Static launch settings: channel blocks, time block (checkpoint interval / chunk length),
    and the lowering: `target` "triton" (GPU kernels) or "mosaic" (TPU kernels), either of
    which can be interpreted (the only way Pallas runs on CPU)."""

    block_k: int
    block_d: int
    block_t: int
    interpret: bool
    target: str = "triton"
    num_warps: int | None = None
    num_stages: int | None = None
    # Channel tiles of the backward scan where they differ from the forward's (the chunk kernel
    # takes all of K at once; its backward scan can use smaller tiles, so more programs).
    backward_blocks: tuple[int, int] | None = None

    def for_backward(self) -> Launch:
        if self.backward_blocks is None:
            return self
        block_k, block_d = self.backward_blocks
        return dataclasses.replace(self, block_k=block_k, block_d=block_d, backward_blocks=None)

    def call(self, kernel, **kwargs):
        """`pl.pallas_call` with this launch's lowering."""
        if self.interpret:
            return pl.pallas_call(kernel, interpret=True, **kwargs)
        from jax.experimental.pallas import triton as plgpu

        params = plgpu.CompilerParams(num_warps=self.num_warps, num_stages=self.num_stages)
        return pl.pallas_call(kernel, compiler_params=params, **kwargs)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _fold(x, B: int, T: int, H: int):
    """[b|1, t|1, h|1, *rest] -> [B·H, T, *rest]."""
    x = jnp.broadcast_to(x, (B, T, H, *x.shape[3:]))
    x = jnp.moveaxis(x, 2, 1)
    return x.reshape(B * H, T, *x.shape[3:])


def _pad(x, axis: int, size: int):
    """Zero-pads `axis` of `x` to `size` (a size-1 broadcast axis stays 1)."""
    if x.shape[axis] in (1, size):
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, widths)


def pack(p: Problem, Kp: int, Dp: int) -> Packed:
    """Problem -> Packed with K padded to Kp and D to Dp."""
    B, T, H, K = p.e.shape
    D = p.i.shape[-1]
    fold = lambda x: _fold(x, B, T, H)  # noqa: E731
    padk = lambda x, axis=-1: _pad(x, axis, Kp)  # noqa: E731
    padd = lambda x, axis=-1: _pad(x, axis, Dp)  # noqa: E731
    if p.elementwise_read:
        s = padd(padk(fold(jnp.broadcast_to(p.s, p.s.shape[:3] + (K, D))), -2))
    else:
        s = padk(fold(p.s))
    lo = None if p.lo is None else padd(padk(fold(p.lo), -2))
    if p.reset is None:
        keep = jnp.ones((B * H, T), jnp.float32)
    else:
        keep = _fold((~p.reset)[:, :, None].astype(jnp.float32), B, T, H)
    m0 = jnp.zeros((B * H, Kp, Dp), jnp.float32)
    if p.m0 is not None:
        m0 = padd(padk(p.m0.reshape(B * H, K, D), -2))
    return Packed(
        e=padk(fold(p.e)),
        i=padd(fold(p.i)),
        s=s,
        lk=None if p.lk is None else padk(fold(p.lk)),
        ld=None if p.ld is None else padd(fold(p.ld)),
        lo=lo,
        keep=keep,
        m0=m0,
    )


def unpack(y_GxTxDp, m_GxKpxDp, B: int, H: int, K: int, D: int):
    """Kernel outputs -> (y [B,T,H,D], final memory [B,H,K,D])."""
    T = y_GxTxDp.shape[1]
    y = jnp.moveaxis(y_GxTxDp[..., :D].reshape(B, H, T, D), 1, 2)
    return y, m_GxKpxDp[:, :K, :D].reshape(B, H, K, D)
