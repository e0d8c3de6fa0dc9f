"""Long convolutions (FFT and Monarch DFT) equal a direct convolution, causal or two-sided."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from lcsm_jax.m2.longconv import long_conv


def _direct(v_BxTxC, k_TxC, k_bwd_TxC=None):
    """y_t = Σ_{j<=t} k[t-j] v_j (+ Σ_{j>t} k_bwd[j-t] v_j), float64 loops."""
    v, k = np.asarray(v_BxTxC, np.float64), np.asarray(k_TxC, np.float64)
    B, T, C = v.shape
    y = np.zeros((B, T, C))
    for t in range(T):
        for j in range(T):
            if j <= t:
                y[:, t] += k[t - j] * v[:, j]
            elif k_bwd_TxC is not None:
                y[:, t] += np.asarray(k_bwd_TxC, np.float64)[j - t] * v[:, j]
    return y


def _signals(T, C=3, B=2, seed=0):
    keys = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(keys[0], (B, T, C)),
        jax.random.normal(keys[1], (T, C)),
        jax.random.normal(keys[2], (T, C)),
    )


@pytest.mark.parametrize("method", ["fft", "monarch"])
@pytest.mark.parametrize("T", [1, 12])
def test_causal_long_conv_equals_direct(method, T):
    v, k, _ = _signals(T)
    y = long_conv(v, k, method=method)
    chex.assert_shape(y, v.shape)
    chex.assert_trees_all_close(y, _direct(v, k), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("method", ["fft", "monarch"])
def test_bidirectional_long_conv_equals_direct(method):
    v, k, k_bwd = _signals(9)
    y = long_conv(v, k, k_bwd, method=method)
    chex.assert_trees_all_close(y, _direct(v, k, k_bwd), atol=2e-5, rtol=2e-5)


def test_causal_by_gradient():
    v, k, _ = _signals(16, C=1, B=1)
    jac = np.asarray(jax.jacrev(lambda x: long_conv(x, k)[0, :, 0])(v)[:, 0, :, 0])  # [t, j]
    scale = np.abs(jac).max()
    assert np.abs(np.triu(jac, 1)).max() < 1e-6 * scale, "y_t depends on a future v_j"
    chex.assert_trees_all_close(np.tril(jac), _direct_matrix(np.asarray(k)[:, 0]), atol=1e-5)


def _direct_matrix(k_T):
    T = k_T.shape[0]
    return np.array([[k_T[t - j] if j <= t else 0.0 for j in range(T)] for t in range(T)])


def test_errors():
    v, k, _ = _signals(4)
    with pytest.raises(ValueError, match="unknown long-conv method 'dft'"):
        long_conv(v, k, method="dft")
    with pytest.raises(ValueError, match=r"k must be \[T, C\]"):
        long_conv(v, k[:3])
    with pytest.raises(ValueError, match="k_bwd must have the shape of k"):
        long_conv(v, k, k[:, :2])
    with pytest.raises(ValueError, match=r"v must be \[B, T, C\]"):
        long_conv(v[0], k)
