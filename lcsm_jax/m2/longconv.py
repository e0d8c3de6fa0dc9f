"""Long convolutions over time through a zero-padded DFT of size 2T, by FFT or by Monarch matrices.

Causal: y_t = Σ_{j<=t} k[t-j] ⊙ v_j. Padding both signals to 2T makes the circular convolution
equal the linear one on the first T outputs, so only the forward kernel k[0..T-1] ever touches
y_t: the result is exactly causal in exact arithmetic (float error leaks ~1e-7 relative).
Bidirectional (BERT-style): y_t also gets Σ_{j>t} k_bwd[j-t] ⊙ v_j, by placing the backward kernel
in the otherwise-zero upper half of the padded kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lcsm_jax.nn import monarch

METHODS = ("fft", "monarch")


def padded_kernel(k_TxC: jax.Array, k_bwd_TxC: jax.Array | None = None) -> jax.Array:
    """The length-2T circular kernel [k_0..k_{T-1}, 0, k_bwd_{T-1}..k_bwd_1] (0s when causal)."""
    T, C = k_TxC.shape
    if k_bwd_TxC is None:
        return jnp.concatenate([k_TxC, jnp.zeros((T, C), k_TxC.dtype)], axis=0)
    if k_bwd_TxC.shape != (T, C):
        raise ValueError(f"k_bwd must have the shape of k {(T, C)}, got {k_bwd_TxC.shape}")
    zero = jnp.zeros((1, C), k_TxC.dtype)
    return jnp.concatenate([k_TxC, zero, k_bwd_TxC[1:][::-1]], axis=0)


def _fft_conv(v_BxTxC, c_NxC):
    n = c_NxC.shape[0]
    v_f = jnp.fft.rfft(v_BxTxC, n=n, axis=1)
    c_f = jnp.fft.rfft(c_NxC, axis=0)
    return jnp.fft.irfft(v_f * c_f[None], n=n, axis=1)


def _monarch_conv(v_BxTxC, c_NxC):
    n = c_NxC.shape[0]
    T = v_BxTxC.shape[1]
    # Time goes last: the Monarch DFT acts on the trailing axis.
    v_BxCxN = jnp.pad(jnp.swapaxes(v_BxTxC, 1, 2), ((0, 0), (0, 0), (0, n - T)))
    v_f = monarch.monarch_dft(v_BxCxN)
    c_f = monarch.monarch_dft(c_NxC.T)
    y_BxCxN = monarch.monarch_dft(v_f * c_f[None], inverse=True).real
    return jnp.swapaxes(y_BxCxN, 1, 2)


def long_conv(
    v_BxTxC: jax.Array,
    k_TxC: jax.Array,
    k_bwd_TxC: jax.Array | None = None,
    *,
    method: str = "fft",
) -> jax.Array:
    """Per-channel long convolution of v [B, T, C] with a kernel k [T, C] (float32 inside).

    Args:
      v_BxTxC: the signal.
      k_TxC: forward kernel, k[d] weighs v_{t-d}.
      k_bwd_TxC: optional backward kernel (k_bwd[d] weighs v_{t+d}, d >= 1; k_bwd[0] is unused).
      method: "fft" (jnp.fft) or "monarch" (the DFT as an order-2 Monarch product).

    Returns:
      y [B, T, C] in the dtype of v.
    """
    if method not in METHODS:
        raise ValueError(f"unknown long-conv method {method!r}; valid: {', '.join(METHODS)}")
    if v_BxTxC.ndim != 3:
        raise ValueError(f"v must be [B, T, C], got shape {v_BxTxC.shape}")
    _, T, C = v_BxTxC.shape
    if k_TxC.shape != (T, C):
        raise ValueError(f"k must be [T, C]={(T, C)} to match v {v_BxTxC.shape}, got {k_TxC.shape}")
    c_NxC = padded_kernel(k_TxC.astype(jnp.float32), _f32(k_bwd_TxC))
    conv = _fft_conv if method == "fft" else _monarch_conv
    y = conv(v_BxTxC.astype(jnp.float32), c_NxC)[:, :T]
    return y.astype(v_BxTxC.dtype)


def _f32(x):
    return None if x is None else x.astype(jnp.float32)
