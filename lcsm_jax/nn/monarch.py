"""Monarch matrices as pure functions: block-diagonal, order 2 (M = P R P L P), order p, DFT.

A Monarch matrix is a product of block-diagonal factors separated by fixed "reshape and transpose"
permutations (Dao et al., arXiv 2204.00595; Fu et al., M2, arXiv 2310.12109). Every factor is one
batched matmul, so an N×N Monarch costs about p·N^(1+1/p) instead of N², and the permutations are
free: they are only the index order of the einsums below.

Block tensors are stored [num_blocks, out_block, in_block], like a stack of dense kernels (y = W x).
"""

from __future__ import annotations

import math
import string

import jax
import jax.numpy as jnp
import numpy as np


def _check_rank3(w, name: str) -> None:
    if jnp.ndim(w) != 3:
        raise ValueError(
            f"{name} must be [blocks, out_block, in_block] (rank 3), got {jnp.shape(w)}"
        )


def blockdiag(x_N: jax.Array, w_BxOxI: jax.Array) -> jax.Array:
    """y = blockdiag(W_0, ..., W_{B-1}) x over the last axis: [..., B·I] -> [..., B·O]."""
    _check_rank3(w_BxOxI, "w")
    nb, ob, ib = w_BxOxI.shape
    if x_N.shape[-1] != nb * ib:
        raise ValueError(
            f"x has {x_N.shape[-1]} features; the block-diagonal matrix takes {nb}·{ib}={nb * ib}"
        )
    x = x_N.reshape(*x_N.shape[:-1], nb, ib)
    y = jnp.einsum("...bi,boi->...bo", x, w_BxOxI)
    return y.reshape(*x_N.shape[:-1], nb * ob)


def monarch2(x_N: jax.Array, l_BxMxI: jax.Array, r_CxOxJ: jax.Array) -> jax.Array:
    """An order-2 Monarch product y = P R P L P x over the last axis.

    L has B blocks (I -> M each), R has C blocks (J -> O each), with C·J = B·M. The three P are
    "view as a matrix and transpose": x is viewed as [I, B] (L's block b reads x[b::B]), L's output
    [B, M] is transposed to [M, B] and read by R in chunks of J, and R's output [C, O] is transposed
    to [O, C]. For N = n² with n blocks of n×n in both factors this is the square Monarch matrix,
    and every output depends on every input.

    Args:
      x_N: [..., B·I] (real or complex).
      l_BxMxI: the left (first applied) block-diagonal factor.
      r_CxOxJ: the right (second applied) block-diagonal factor.

    Returns:
      [..., O·C].
    """
    _check_rank3(l_BxMxI, "l")
    _check_rank3(r_CxOxJ, "r")
    nb, mb, ib = l_BxMxI.shape
    nc, ob, jb = r_CxOxJ.shape
    if x_N.shape[-1] != nb * ib:
        raise ValueError(f"x has {x_N.shape[-1]} features but L takes {nb} blocks of {ib}")
    if nc * jb != nb * mb:
        raise ValueError(
            f"R reads {nc} blocks of {jb} = {nc * jb} features but L writes {nb}·{mb} = {nb * mb}"
        )
    lead = x_N.shape[:-1]
    x_IxB = x_N.reshape(*lead, ib, nb)
    y_BxM = jnp.einsum("...ib,bmi->...bm", x_IxB, l_BxMxI)
    y_CxJ = jnp.swapaxes(y_BxM, -1, -2).reshape(*lead, nc, jb)
    z_CxO = jnp.einsum("...cj,coj->...co", y_CxJ, r_CxOxJ)
    return jnp.swapaxes(z_CxO, -1, -2).reshape(*lead, ob * nc)


def order_p_shapes(in_dims, out_dims) -> list[tuple[int, ...]]:
    """Factor shapes of an order-p Monarch from [i_1..i_p] to [o_1..o_p].

    Factor k maps axis k (i_k -> o_k) with one block per index of the other axes (o_1..o_{k-1}
    already mapped, i_{k+1}..i_p not yet): shape [o_1..o_{k-1}, i_{k+1}..i_p, o_k, i_k].
    """
    in_dims, out_dims = tuple(in_dims), tuple(out_dims)
    if len(in_dims) != len(out_dims) or not in_dims:
        raise ValueError(f"in_dims {in_dims} and out_dims {out_dims} must have one length p >= 1")
    if any(not isinstance(d, int) or d < 1 for d in in_dims + out_dims):
        raise ValueError(f"Monarch dims must be positive ints, got {in_dims} -> {out_dims}")
    p = len(in_dims)
    return [out_dims[:k] + in_dims[k + 1 :] + (out_dims[k], in_dims[k]) for k in range(p)]


def square_dims(n: int, p: int) -> tuple[int, ...]:
    """[b]*p with b^p = n; raises ValueError if n is not a perfect p-th power."""
    if not isinstance(p, int) or p < 1:
        raise ValueError(f"the Monarch order p must be a positive int, got {p!r}")
    b = round(n ** (1.0 / p))
    for cand in (b - 1, b, b + 1):
        if cand >= 1 and cand**p == n:
            return (cand,) * p
    raise ValueError(f"a square order-{p} Monarch needs N = b^{p}; N={n} is not a perfect power")


def monarch(x_N: jax.Array, factors, in_dims) -> jax.Array:
    """An order-p Monarch product over the last axis: [..., Π i_k] -> [..., Π o_k].

    x is viewed as [i_1, ..., i_p] (i_1 major); factor k (shapes from `order_p_shapes`) is one
    batched matmul over axis k; the output is flattened in reversed axis order [o_p, ..., o_1]
    (the digit reversal of Cooley–Tukey), so p = 2 is exactly `monarch2` with square blocks.
    """
    in_dims = tuple(in_dims)
    out_dims = tuple(int(jnp.shape(f)[-2]) for f in factors)
    expected = order_p_shapes(in_dims, out_dims)
    if x_N.shape[-1] != math.prod(in_dims):
        raise ValueError(
            f"x has {x_N.shape[-1]} features; in_dims {in_dims} need {math.prod(in_dims)}"
        )
    for k, (f, shape) in enumerate(zip(factors, expected, strict=True)):
        if tuple(jnp.shape(f)) != shape:
            raise ValueError(f"factor {k} must have shape {shape}, got {tuple(jnp.shape(f))}")
    p = len(in_dims)
    axes = string.ascii_lowercase[:p]
    lead = x_N.shape[:-1]
    x = x_N.reshape(*lead, *in_dims)
    for k, f in enumerate(factors):
        others = axes[:k] + axes[k + 1 :]
        out = axes[:k] + "Z" + axes[k + 1 :]
        x = jnp.einsum(f"...{axes},{others}Z{axes[k]}->...{out}", x, f)
    x = jnp.transpose(x, (*range(len(lead)), *reversed(range(len(lead), len(lead) + p))))
    return x.reshape(*lead, math.prod(out_dims))


def to_dense(fn, n_in: int, dtype=jnp.float32) -> jax.Array:
    """The matrix [n_out, n_in] of a linear map `fn` over the last axis (applied to the basis)."""
    return jnp.swapaxes(jax.vmap(fn)(jnp.eye(n_in, dtype=dtype)), 0, 1)


def factor_pair(n: int) -> tuple[int, int]:
    """(n1, n2): n1·n2 = n, n1 the largest divisor <= sqrt(n) (the cheapest order-2 split)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"DFT size must be a positive int, got {n!r}")
    n1 = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return n1, n // n1


def dft_factors(n: int, inverse: bool = False) -> tuple[jax.Array, jax.Array]:
    """(L, R) with monarch2(x, L, R) = DFT_n x (Cooley–Tukey, n = n1·n2; complex64).

    With t = n2·t1 + t2, k = k1 + n1·k2: L[t2] = diag(twiddle ω_n^(t2·k1)) · DFT_n1 maps t1 -> k1,
    and R[k1] = DFT_n2 maps t2 -> k2; monarch2's transposes supply the digit reversal. The inverse
    uses conjugate roots and the 1/n scale. Exponents are reduced mod n in integers (float64
    angles) so large n keeps full float32 accuracy.
    """
    n1, n2 = factor_pair(n)
    sign = 1.0 if inverse else -1.0

    def roots(exponent, size):
        return np.exp(sign * 2j * np.pi * (exponent % size) / size)

    t1 = np.arange(n1)
    k1 = np.arange(n1)
    t2 = np.arange(n2)
    k2 = np.arange(n2)
    dft1 = roots(np.outer(k1, t1), n1)  # [k1, t1]
    twiddle = roots(np.outer(t2, k1), n)  # [t2, k1]
    l_factor = twiddle[:, :, None] * dft1[None]  # [t2, k1, t1]
    r_factor = np.broadcast_to(roots(np.outer(k2, t2), n2), (n1, n2, n2))  # [k1, k2, t2]
    if inverse:
        l_factor = l_factor / n
    return jnp.asarray(l_factor, jnp.complex64), jnp.asarray(r_factor, jnp.complex64)


def monarch_dft(x_N: jax.Array, inverse: bool = False) -> jax.Array:
    """The DFT (or inverse DFT) over the last axis as an order-2 Monarch product (two matmuls)."""
    l_factor, r_factor = dft_factors(x_N.shape[-1], inverse)
    return monarch2(x_N.astype(jnp.complex64), l_factor, r_factor)
