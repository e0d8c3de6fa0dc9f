"""Gradients through the Pallas kernels: one `jax.custom_vjp` over the `Packed` arrays.

Either forward kernel (the sequential scan, or the chunked kernel for separable decays) leaves the
memory at every `block_t`-th step as residual; the backward is always the reverse-scan kernel of
`pallas_scan` (of `pallas_tpu` on TPU, which has only the scan), which recomputes the states of one
time block at a time from those checkpoints.
"""

from __future__ import annotations

import functools

import jax

from lcsm_jax.eos import pallas_chunk, pallas_scan, pallas_tpu
from lcsm_jax.eos.pallas_pack import Launch, Packed

SCAN, CHUNK = "scan", "chunk"
TRITON, MOSAIC = "triton", "mosaic"


def _forward(launch: Launch, kernel: str, packed: Packed):
    if launch.target == MOSAIC:
        return pallas_tpu.forward(packed, launch)
    if kernel == CHUNK:
        return pallas_chunk.forward(packed, launch)
    return pallas_scan.forward(packed, launch)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def run(launch: Launch, kernel: str, packed: Packed):
    """(y [G,T,Dp], final memory [G,Kp,Dp]) of `packed` with the named forward kernel."""
    y, m_last, _ = _forward(launch, kernel, packed)
    return y, m_last


def _run_fwd(launch, kernel, packed):
    y, m_last, checkpoints = _forward(launch, kernel, packed)
    return (y, m_last), (packed, checkpoints)


def _run_bwd(launch, kernel, residuals, cotangents):
    del kernel
    packed, checkpoints = residuals
    dy, dm_last = cotangents
    backward = pallas_tpu.backward if launch.target == MOSAIC else pallas_scan.backward
    return (backward(packed, launch.for_backward(), checkpoints, dy, dm_last),)


run.defvjp(_run_fwd, _run_bwd)
