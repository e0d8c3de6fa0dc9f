"""Pallas backend: hand-written kernels for the EOS scan, gradients through `jax.custom_vjp`.

Two forward kernels share one backward (see `pallas_vjp`):
- "chunk" (`pallas_chunk`): separable decays (none, scalar, K-wise, D-wise, separable) with a
  vector read, chunkwise with the memory carried on chip;
- "scan" (`pallas_scan`): any decay, in particular a full K×D decay (o_types 0, 6, 7), and the
  elementwise (rank-5) read, as a sequential scan with the memory tile carried on chip.

Lowering by platform: GPU compiles the kernels with Triton; CPU can only interpret Pallas, so
there the kernels run with ``interpret=True`` (correct, but slow: the CI/testing path). TPU is
not supported yet: these kernels walk all of T inside one program, which on TPU would need the
whole sequence in VMEM; a TPU kernel would carry the memory in scratch across a time grid axis.
Complex inputs are not supported (use another backend).
"""

from __future__ import annotations

import jax

from lcsm_jax.eos import pallas_pack, pallas_vjp
from lcsm_jax.eos.inputs import FULL, Problem

KERNELS = ("auto", pallas_vjp.SCAN, pallas_vjp.CHUNK)
# Channel tiles and time blocks (not tuned on hardware: no GPU was available). Small tiles give
# the scan one program per 16×32 tile, so B·H = 16 heads of 64×64 already fill 128 programs on a
# memory-bound kernel. The scan checkpoints its memory every BLOCK_T steps (the backward recomputes
# at most that many states per block); the chunk kernel forms C×C×K tensors, so its chunk is short.
BLOCK_K, BLOCK_D, BLOCK_T, CHUNK = 16, 32, 64, 16
# Triton's tl.dot needs every matmul dimension >= 16.
MIN_DOT = 16


def supports(p: Problem, platform: str | None = None) -> str | None:
    """None if the Pallas backend handles `p` on `platform`, else the reason it does not."""
    if p.e.dtype.kind == "c":
        return "complex inputs"
    platform = platform or jax.default_backend()
    if platform not in ("cpu", "gpu", "cuda", "rocm"):
        return f"the {platform} platform (Pallas kernels are written for GPU; CPU interprets them)"
    return None


def default_kernel(p: Problem) -> str:
    """The chunk kernel where its matmul form exists, else the sequential scan."""
    if p.structure == FULL or p.elementwise_read:
        return pallas_vjp.SCAN
    return pallas_vjp.CHUNK


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def scan(p: Problem, chunk_size: int | None = None):
    """Backend entry: (y [B,T,H,D], final memory [B,H,K,D]); `chunk_size` is the time block."""
    return scan_with(p, block_t=chunk_size)


def scan_with(
    p: Problem,
    *,
    kernel: str = "auto",
    block_k: int | None = None,
    block_d: int | None = None,
    block_t: int | None = None,
    interpret: bool | None = None,
):
    """`scan` with the kernel, the channel tiles and the time block chosen explicitly.

    ``interpret`` defaults to True on CPU (the only way Pallas runs there) and False elsewhere.
    """
    if (reason := supports(p)) is not None:
        raise ValueError(f"backend 'pallas' does not support {reason}")
    if kernel not in KERNELS:
        raise ValueError(f"unknown Pallas kernel {kernel!r}; valid kernels: {', '.join(KERNELS)}")
    kernel = default_kernel(p) if kernel == "auto" else kernel
    if kernel == pallas_vjp.CHUNK and (p.structure == FULL or p.elementwise_read):
        raise ValueError(
            "the Pallas 'chunk' kernel takes separable decays with a vector s; "
            "use kernel='scan' for a full K×D log_o or an elementwise s"
        )
    for name, value in (("block_k", block_k), ("block_d", block_d), ("block_t", block_t)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    B, T, H, K = p.e.shape
    D = p.i.shape[-1]
    chunk = kernel == pallas_vjp.CHUNK
    block_t = block_t or (CHUNK if chunk else BLOCK_T)
    # Triton blocks are powers of two; padding K and D up to them is inert (pallas_pack).
    bk = _next_pow2(min(block_k or BLOCK_K, K))
    bd = _next_pow2(min(block_d or BLOCK_D, D))
    if chunk:
        bk = _next_pow2(K)  # the chunk kernel contracts over all of K at once
        if not interpret:
            bk, bd, block_t = max(bk, MIN_DOT), max(bd, MIN_DOT), _next_pow2(max(block_t, MIN_DOT))
    Kp, Dp = pallas_pack.round_up(K, bk), pallas_pack.round_up(D, bd)
    launch = pallas_pack.Launch(block_k=bk, block_d=bd, block_t=block_t, interpret=interpret)
    packed = pallas_pack.pack(p, Kp, Dp)
    y, m_last = pallas_vjp.run(launch, kernel, packed)
    return pallas_pack.unpack(y, m_last, B, H, K, D)
