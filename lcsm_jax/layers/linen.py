"""Linen interop: any EOS layer as a `flax.linen` module, through `flax.nnx.bridge`."""

from __future__ import annotations

from flax import nnx

from lcsm_jax.layers.config import EOSConfig
from lcsm_jax.layers.eos_layer import EOSLayer


def eos_layer_linen(config: EOSConfig, name: str | None = None):
    """`EOSLayer(config)` wrapped as a Linen module (``init``/``apply`` as usual; the NNX
    parameters appear under the variable collection "params").

    ``y = m.apply(variables, x)``; keyword arguments (initial_state, segment_ids, return_state)
    pass through to the layer.
    """
    return nnx.bridge.to_linen(EOSLayer, config, name=name)
