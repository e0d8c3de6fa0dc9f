"""Grid layers: decoding, state round trips, segment restarts, bias, clamping and dtypes."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.layers import EOSConfig, EOSLayer

from .helpers import inputs, randomise
from .oracle import reference_output

B, T, M, H, K = 2, 7, 8, 2, 3
# The state logic is the layer's; the core's backends are tested against each other in tests/eos.
# So most cells run on the cheap-to-compile reference backend, and two on the chunked one.
REF = {"backend": "reference"}
CELLS = [
    *({"o_type": o, **REF} for o in range(13)),
    {"o_type": 0, "o_learned": False, **REF},
    {"c_type": 0, **REF},
    {"e_type": 0, "s_type": 0, "o_type": 1, **REF},
    {"e_type": 0, "s_type": 1, "o_type": 3, **REF},
    {"e_type": 1, "s_type": 0, "o_type": 0, **REF},
    {"o_type": 1},
    {"o_type": 12},
]


def _layer(seed=0, **cell) -> EOSLayer:
    config = EOSConfig(embed_dim=M, expand_dim=K, num_heads=H, tau=2.0, **cell)
    return randomise(EOSLayer(config, rngs=nnx.Rngs(seed)), seed=seed)


def _close(a, b):
    chex.assert_trees_all_close(a, b, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_decode_chain_and_segments(cell):
    layer = _layer(**cell)
    x = inputs(B, T, M)
    y, state = layer(x, return_state=True)

    cache = layer.init_cache(B)
    chex.assert_trees_all_equal_shapes_and_dtypes(cache, state)
    ys = []
    for t in range(T):
        y_t, cache = layer.step(x[:, t], cache)
        ys.append(y_t)
    _close(jnp.stack(ys, axis=1), y)
    _close(cache, state)

    # Two calls chained through the state equal one call (o_type 11 continues its positions,
    # o_type 12 its running log-sum-exp); a step after a parallel prefix continues it too.
    y1, mid = layer(x[:, :3], return_state=True)
    y2, end = layer(x[:, 3:], initial_state=mid, return_state=True)
    _close(jnp.concatenate([y1, y2], axis=1), y)
    _close(end, state)
    y_t, _ = layer.step(x[:, 3], mid)
    _close(y_t, y[:, 3])

    # Packed sequences: the memory (and o_type 12's log-sum-exp) restart where the id changes.
    ids = jnp.asarray([[0] * 3 + [1] * (T - 3), [7] * 3 + [2] * (T - 3)])
    packed = layer(x, segment_ids=ids)
    _close(packed[:, :3], y1)
    _close(packed[:, 3:], layer(x[:, 3:], initial_state=layer.init_cache(B)))


@pytest.mark.parametrize(
    "cell", [{"o_type": 1}, {"o_type": 12}, {"o_type": 6}, {"c_type": 0}], ids=str
)
def test_bias_matches_spec_transcription(cell):
    layer = _layer(bias=True, **cell)
    x = inputs(B, T, M)
    chex.assert_trees_all_close(
        np.asarray(layer(x), np.float64), reference_output(layer, x), atol=2e-4, rtol=2e-4
    )


def test_cumsoftmax_clamp_matches_spec_transcription():
    layer = _layer(o_type=12)
    kernel = layer.oscillation.proj.kernel
    kernel[...] = 20.0 * kernel[...]  # logits far beyond ±10: the clamp is active
    x = inputs(B, T, M)
    chex.assert_trees_all_close(
        np.asarray(layer(x), np.float64), reference_output(layer, x), atol=2e-4, rtol=2e-4
    )


def test_cumsoftmax_gradients_are_finite_with_segments():
    layer = _layer(o_type=12, **REF)
    x = inputs(B, T, M)
    ids = jnp.asarray([[0, 0, 1, 1, 1, 2, 2]] * B)
    grads = nnx.grad(lambda m: jnp.sum(m(x, segment_ids=ids) ** 2))(layer)
    chex.assert_tree_all_finite(grads)


def test_rotation_is_relative_to_position():
    # o_type 11 depends only on relative positions: starting at position 1000 changes nothing.
    layer = _layer(o_type=11, **REF)
    x = inputs(B, T, M)
    start = layer.init_cache(B)._replace(position=jnp.full((B,), 1000, jnp.int32))
    _close(layer(x, initial_state=start), layer(x))


def test_bfloat16_compute():
    cell = {"o_type": 1}
    layer32 = _layer(**cell)
    config = EOSConfig(embed_dim=M, expand_dim=K, num_heads=H, tau=2.0, dtype=jnp.bfloat16, **cell)
    layer16 = EOSLayer(config, rngs=nnx.Rngs(0))
    nnx.update(layer16, nnx.state(layer32))
    x = inputs(B, T, M)
    y16 = layer16(x)
    assert y16.dtype == jnp.bfloat16
    chex.assert_trees_all_close(y16.astype(jnp.float32), layer32(x), atol=0.1, rtol=0.1)
    _, state = layer16(x, return_state=True)
    assert state.memory.dtype == jnp.float32


def test_memory_shapes():
    for cell, rows in (({"o_type": 11}, 2 * K), ({"o_type": 1}, K)):
        cache = _layer(**cell).init_cache(B)
        assert cache.memory.shape == (B, H, rows, M // H)
    assert _layer(o_type=12).init_cache(B).lse.shape == (B, H, K)
    assert jax.tree.leaves(_layer(o_type=1).init_cache(B).lse) == []
