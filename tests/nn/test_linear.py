"""BlockDiagDense / MonarchDense: they compute their structured matrices, keep the dense output
scale at init, cut parameters (a block-diagonal GLU has 1/nblocks of the dense one) and reject
sizes the blocks do not divide."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from lcsm_jax.models.mlp import GLU
from lcsm_jax.nn import monarch
from lcsm_jax.nn.linear import BlockDiagDense, MonarchDense, make_linear


def _num_params(module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_blockdiag_dense_is_block_diagonal_matrix():
    layer = BlockDiagDense(12, 8, nblocks=4, use_bias=True, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.arange(8.0)
    x = jax.random.normal(jax.random.key(0), (2, 3, 12))
    matrix = scipy.linalg.block_diag(*np.asarray(layer.kernel[...]))
    chex.assert_shape(matrix, (8, 12))
    chex.assert_trees_all_close(layer(x), x @ matrix.T + np.arange(8.0)[None, None], atol=1e-6)


def test_monarch_dense_matches_monarch2_and_mixes_everything():
    layer = MonarchDense(16, 24, nblocks=4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (5, 16))
    expected = monarch.monarch2(x, layer.left[...], layer.right[...])
    chex.assert_trees_all_close(layer(x), expected, atol=1e-6)
    dense = monarch.to_dense(layer, 16)
    chex.assert_shape(dense, (24, 16))
    assert np.all(np.asarray(dense) != 0), "every output should depend on every input"
    assert _num_params(layer) < 16 * 24


@pytest.mark.parametrize("kind", ["blockdiag", "monarch"])
def test_init_keeps_dense_output_scale(kind):
    x = jax.random.normal(jax.random.key(2), (1024, 64))
    dense_std = float(jnp.std(make_linear("dense", 64, 128, rngs=nnx.Rngs(0))(x)))
    std = float(jnp.std(make_linear(kind, 64, 128, rngs=nnx.Rngs(0))(x)))
    assert 0.8 < std / dense_std < 1.25, (kind, std, dense_std)


def test_blockdiag_glu_has_one_over_nblocks_params():
    # eval_shape: parameter shapes without drawing them.
    dense = nnx.eval_shape(lambda: GLU(64, ratio=2.0, rngs=nnx.Rngs(0)))
    assert _num_params(dense) == 3 * 64 * 128
    for nblocks in (2, 4, 8):
        block = nnx.eval_shape(
            lambda n=nblocks: GLU(64, ratio=2.0, kind="blockdiag", nblocks=n, rngs=nnx.Rngs(0))
        )
        assert _num_params(block) * nblocks == _num_params(dense), nblocks


def test_structured_glu_rounds_hidden_to_blocks():
    glu = nnx.eval_shape(lambda: GLU(64, kind="monarch", rngs=nnx.Rngs(0)))
    assert glu.up.out_features == glu.down.in_features == 172  # 8/3·64 = 170.7 -> 172


def test_errors():
    with pytest.raises(ValueError, match="nblocks=4 must divide in_features=10"):
        BlockDiagDense(10, 8, nblocks=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="nblocks=4 must divide out_features=6"):
        MonarchDense(8, 6, nblocks=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="nblocks must be a positive int"):
        MonarchDense(8, 8, nblocks=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown linear kind 'sparse'"):
        make_linear("sparse", 8, 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="x has 6 features"):
        BlockDiagDense(8, 8, nblocks=4, rngs=nnx.Rngs(0))(jnp.ones((1, 6)))
