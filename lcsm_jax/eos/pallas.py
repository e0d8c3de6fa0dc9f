"""Pallas backend: hand-written kernels for the EOS scan, gradients through `jax.custom_vjp`.

Kernels (the backward is always a reverse scan that recomputes states; see `pallas_vjp`):
- "chunk" (`pallas_chunk`): separable decays (none, scalar, K-wise, D-wise, separable) with a
  vector read, chunkwise with the memory carried on chip; the default for those on GPU;
- "scan" (`pallas_scan`, and `pallas_tpu` on TPU): any decay, in particular a full K×D decay
  (o_types 0, 6, 7), and the elementwise (rank-5) read, as a sequential scan with the memory tile
  carried on chip.

Lowering by platform: GPU compiles both kernels with Triton (target "triton"); TPU runs the scan
kernel written for Mosaic (`pallas_tpu`, target "mosaic": time as a sequential grid axis, memory in
VMEM scratch), for every structure; CPU can only interpret Pallas, so there either target runs
with ``interpret=True`` (correct but slow: the testing path). Complex inputs are not supported.
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
# Mosaic tiles: K tiles are multiples of 8 sublanes, D tiles of 128 lanes (or all of D). A short
# time block keeps the double-buffered [block_t, K, 1] slabs (lane-padded to 128) within VMEM.
TPU_BLOCK_K, TPU_BLOCK_D, TPU_BLOCK_T = 64, 128, 16


def unsupported_reason(p: Problem, platform: str | None = None) -> str | None:
    """Why the Pallas backend cannot run `p` on `platform` ("does not support <reason>"), or None
    if it can."""
    if p.e.dtype.kind == "c":
        return "complex inputs"
    if p.e.dtype.itemsize > 4:
        return "float64 inputs (the kernels accumulate in float32)"
    platform = platform or jax.default_backend()
    if platform not in ("cpu", "gpu", "cuda", "tpu"):
        return f"the {platform} platform (kernels exist for GPU and TPU; CPU interprets them)"
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
    target: str | None = None,
    interpret: bool | None = None,
):
    """`scan` with the kernel, the channel tiles, the time block and the lowering chosen.

    ``target`` is "triton" (GPU kernels) or "mosaic" (TPU kernel), by default the platform's;
    ``interpret`` defaults to True on CPU (the only way Pallas runs there), False elsewhere.
    """
    if (reason := unsupported_reason(p)) is not None:
        raise ValueError(f"backend 'pallas' does not support {reason}")
    p = p.materialised()  # a product decay: the kernels read the K×D log-decay of every step
    if kernel not in KERNELS:
        raise ValueError(f"unknown Pallas kernel {kernel!r}; valid kernels: {', '.join(KERNELS)}")
    targets = (pallas_vjp.TRITON, pallas_vjp.MOSAIC)
    if target is not None and target not in targets:
        raise ValueError(f"unknown Pallas target {target!r}; valid targets: {', '.join(targets)}")
    for name, value in (("block_k", block_k), ("block_d", block_d), ("block_t", block_t)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    platform = jax.default_backend()
    tpu = target == pallas_vjp.MOSAIC or (target is None and platform == "tpu")
    if kernel == "auto":
        kernel = pallas_vjp.SCAN if tpu else default_kernel(p)
    if kernel == pallas_vjp.CHUNK and tpu:
        raise ValueError("the Pallas 'chunk' kernel has no TPU (mosaic) version; use kernel='scan'")
    if kernel == pallas_vjp.CHUNK and (p.structure == FULL or p.elementwise_read):
        raise ValueError(
            "the Pallas 'chunk' kernel takes separable decays with a vector s; "
            "use kernel='scan' for a full K×D log_o or an elementwise s"
        )
    if interpret is None:
        interpret = platform == "cpu"
    B, T, H, K = p.e.shape
    D = p.i.shape[-1]
    backward_blocks = None
    if tpu:
        bk, bd, block_t = _mosaic_blocks(K, D, block_k, block_d, block_t)
    else:
        bk, bd, block_t = _triton_blocks(K, D, block_k, block_d, block_t, kernel, interpret)
        if kernel == pallas_vjp.CHUNK:
            # Powers of two no larger than the chunk kernel's tiles: they divide its padding.
            scan_bk, scan_bd, _ = _triton_blocks(K, D, block_k, block_d, 1, pallas_vjp.SCAN, True)
            backward_blocks = (min(scan_bk, bk), min(scan_bd, bd))
    Kp, Dp = pallas_pack.round_up(K, bk), pallas_pack.round_up(D, bd)
    launch = pallas_pack.Launch(
        block_k=bk,
        block_d=bd,
        block_t=block_t,
        interpret=interpret,
        target=pallas_vjp.MOSAIC if tpu else pallas_vjp.TRITON,
        backward_blocks=backward_blocks,
    )
    packed = pallas_pack.pack(p, Kp, Dp)
    y, m_last = pallas_vjp.run(launch, kernel, packed)
    return pallas_pack.unpack(y, m_last, B, H, K, D)


def _triton_blocks(K, D, block_k, block_d, block_t, kernel, interpret):
    """Triton blocks are powers of two; padding K and D up to them is inert (pallas_pack)."""
    chunk = kernel == pallas_vjp.CHUNK
    block_t = block_t or (CHUNK if chunk else BLOCK_T)
    bk = _next_pow2(min(block_k or BLOCK_K, K))
    bd = _next_pow2(min(block_d or BLOCK_D, D))
    if chunk:
        bk = _next_pow2(K)  # the chunk kernel contracts over all of K at once
        if not interpret:
            bk, bd, block_t = max(bk, MIN_DOT), max(bd, MIN_DOT), _next_pow2(max(block_t, MIN_DOT))
    return bk, bd, block_t


def _mosaic_blocks(K, D, block_k, block_d, block_t):
    """K tiles: multiples of 8; D tiles: all of D, or multiples of 128."""
    bk = min(pallas_pack.round_up(block_k or TPU_BLOCK_K, 8), pallas_pack.round_up(K, 8))
    limit = block_d or TPU_BLOCK_D
    bd = D if D <= limit else pallas_pack.round_up(limit, 128)
    return bk, bd, block_t or TPU_BLOCK_T
