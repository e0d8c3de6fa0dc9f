"""The grid layer inside Linen models through `flax.nnx.bridge` gives the NNX layer's numbers."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import pytest
from flax import nnx

from lcsm_jax.layers import EOSConfig, EOSLayer, eos_layer_linen

from .helpers import inputs, randomise

# The bridge only moves parameters and arguments, so the cheap-to-compile backend is enough.
REF = {"backend": "reference"}
CELLS = [
    {**REF},
    {"o_type": 12, **REF},
    {"o_type": 11, **REF},
    {"c_type": 0, **REF},
    {"e_type": 0, "s_type": 0, "o_type": 4, **REF},
]


class Block(nn.Module):
    """A Linen residual block around the bridged EOS layer."""

    config: EOSConfig

    @nn.compact
    def __call__(self, x):
        return x + eos_layer_linen(self.config, name="mixer")(nn.LayerNorm(name="norm")(x))


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_bridge_matches_nnx(cell):
    config = EOSConfig(embed_dim=8, expand_dim=3, num_heads=2, **cell)
    x = inputs(2, 5, 8)
    layer = randomise(EOSLayer(config, rngs=nnx.Rngs(0)))
    linen_layer = eos_layer_linen(config)

    # NNX parameters -> Linen variables: same numbers, state included.
    variables = {"params": nnx.to_pure_dict(nnx.state(layer, nnx.Param))}
    y, state = layer(x, return_state=True)
    y_linen, state_linen = linen_layer.apply(variables, x, return_state=True)
    chex.assert_trees_all_close(y_linen, y, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(state_linen, state, atol=1e-6, rtol=1e-6)

    # Linen init -> NNX layer: same numbers.
    variables = linen_layer.init(jax.random.key(3), x)
    other = EOSLayer(config, rngs=nnx.Rngs(1))
    nnx.update(other, variables["params"])
    chex.assert_trees_all_close(linen_layer.apply(variables, x), other(x), atol=1e-6, rtol=1e-6)


def test_bridged_layer_trains_inside_a_linen_model():
    config = EOSConfig(embed_dim=8, expand_dim=3, num_heads=2, o_type=3, **REF)
    x = inputs(2, 5, 8)
    block = Block(config)
    block_vars = block.init(jax.random.key(4), x)
    grads = jax.grad(lambda v: (block.apply(v, x) ** 2).sum())(block_vars)
    chex.assert_tree_all_finite(grads)
    assert set(grads["params"]) == {"mixer", "norm"}
