"""Monarch matrices: dense materialisation equals the product of the factor matrices; the Monarch
DFT equals jnp.fft.fft; bad sizes raise."""

from __future__ import annotations

import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from absl.testing import parameterized

from lcsm_jax.nn import monarch


def _randn(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _transpose_perm(rows: int, cols: int) -> np.ndarray:
    """The permutation matrix of "view as [rows, cols], transpose, flatten"."""
    n = rows * cols
    p = np.zeros((n, n), np.float32)
    for r, c in itertools.product(range(rows), range(cols)):
        p[c * rows + r, r * cols + c] = 1.0
    return p


def _block_diag(w) -> np.ndarray:
    return scipy.linalg.block_diag(*np.asarray(w))


@pytest.mark.parametrize(
    "l_shape, r_shape",
    [((4, 4, 4), (4, 4, 4)), ((3, 4, 2), (6, 5, 2)), ((2, 6, 3), (3, 2, 4))],
    ids=["square-16", "rect-6to30", "rect-6to6"],
)
def test_monarch2_dense_equals_product_of_factors(l_shape, r_shape):
    l_w, r_w = _randn(0, *l_shape), _randn(1, *r_shape)
    (nb, mb, ib), (nc, ob, _) = l_shape, r_shape
    dense = monarch.to_dense(lambda x: monarch.monarch2(x, l_w, r_w), nb * ib)
    product = (
        _transpose_perm(nc, ob)
        @ _block_diag(r_w)
        @ _transpose_perm(nb, mb)
        @ _block_diag(l_w)
        @ _transpose_perm(ib, nb)
    )
    chex.assert_shape(dense, (ob * nc, nb * ib))
    chex.assert_trees_all_close(dense, product, atol=1e-5, rtol=1e-5)


def test_square_monarch_is_P_R_P_L_P_with_2_n_cubed_params():
    n = 3
    l_w, r_w = _randn(2, n, n, n), _randn(3, n, n, n)
    p = _transpose_perm(n, n)
    dense = monarch.to_dense(lambda x: monarch.monarch2(x, l_w, r_w), n * n)
    chex.assert_trees_all_close(dense, p @ _block_diag(r_w) @ p @ _block_diag(l_w) @ p, atol=1e-5)
    assert l_w.size + r_w.size == 2 * n**3
    assert np.all(np.asarray(dense) != 0), "a square Monarch mixes every input into every output"


def _order_p_factor_matrix(f, state_dims, k, out_k):
    """Dense matrix of factor k acting on a state [d_1..d_p] (row-major), numpy loops."""
    in_shape = tuple(state_dims)
    out_shape = in_shape[:k] + (out_k,) + in_shape[k + 1 :]
    mat = np.zeros((math.prod(out_shape), math.prod(in_shape)), np.float32)
    for idx in itertools.product(*map(range, in_shape)):
        others = idx[:k] + idx[k + 1 :]
        for o in range(out_k):
            out_idx = idx[:k] + (o,) + idx[k + 1 :]
            mat[np.ravel_multi_index(out_idx, out_shape), np.ravel_multi_index(idx, in_shape)] = f[
                (*others, o, idx[k])
            ]
    return mat, out_shape


@pytest.mark.parametrize(
    "in_dims, out_dims", [((2, 2, 2), (2, 2, 2)), ((2, 3, 2), (3, 1, 2))], ids=["square", "rect"]
)
def test_order_p_dense_equals_product_of_factors(in_dims, out_dims):
    shapes = monarch.order_p_shapes(in_dims, out_dims)
    factors = [_randn(10 + k, *s) for k, s in enumerate(shapes)]
    dense = monarch.to_dense(lambda x: monarch.monarch(x, factors, in_dims), math.prod(in_dims))
    product, state = np.eye(math.prod(in_dims), dtype=np.float32), tuple(in_dims)
    for k, f in enumerate(factors):
        mat, state = _order_p_factor_matrix(f, state, k, out_dims[k])
        product = mat @ product
    # The output is flattened in reversed axis order (digit reversal).
    p = len(in_dims)
    order = np.arange(math.prod(out_dims)).reshape(out_dims).transpose(tuple(reversed(range(p))))
    chex.assert_trees_all_close(dense, product[order.reshape(-1)], atol=1e-5, rtol=1e-5)
    n_params = sum(f.size for f in factors)
    if in_dims == out_dims:  # square order p: p·N^(1+1/p) parameters
        assert n_params == p * math.prod(in_dims) * in_dims[0]


def test_order_2_equals_monarch2():
    l_w, r_w = _randn(4, 4, 4, 4), _randn(5, 4, 4, 4)
    x = _randn(6, 3, 16)
    chex.assert_trees_all_close(
        monarch.monarch(x, [l_w, r_w], (4, 4)), monarch.monarch2(x, l_w, r_w), atol=1e-5
    )


class MonarchDFTTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(12, 7, 1000)
    def test_monarch_dft_equals_fft(self, n):
        key_re, key_im = jax.random.split(jax.random.key(n))
        x = jax.random.normal(key_re, (2, 3, n)) + 1j * jax.random.normal(key_im, (2, 3, n))
        dft = self.variant(monarch.monarch_dft, static_argnames="inverse")
        expected = jnp.fft.fft(x.astype(jnp.complex64))
        scale = float(jnp.abs(expected).max())
        chex.assert_trees_all_close(dft(x) / scale, expected / scale, atol=2e-6)
        chex.assert_trees_all_close(dft(dft(x), inverse=True), x, atol=2e-5)


def test_dft_factor_pair_and_two_matmuls():
    assert monarch.factor_pair(32768) == (128, 256)
    assert monarch.factor_pair(7) == (1, 7)
    l_w, r_w = monarch.dft_factors(64)
    chex.assert_shape((l_w, r_w), [(8, 8, 8), (8, 8, 8)])


def test_errors():
    with pytest.raises(ValueError, match="N=12 is not a perfect power"):
        monarch.square_dims(12, 2)
    assert monarch.square_dims(27, 3) == (3, 3, 3)
    with pytest.raises(ValueError, match="x has 5 features"):
        monarch.blockdiag(jnp.ones(5), jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="R reads 3 blocks of 3 = 9 features but L writes"):
        monarch.monarch2(jnp.ones(4), jnp.ones((2, 2, 2)), jnp.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="rank 3"):
        monarch.monarch2(jnp.ones(4), jnp.ones((4, 4)), jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="factor 1 must have shape"):
        monarch.monarch(jnp.ones(4), [jnp.ones((2, 2, 2)), jnp.ones((3, 2, 2))], (2, 2))
    with pytest.raises(ValueError, match="DFT size must be a positive int"):
        monarch.factor_pair(0)
