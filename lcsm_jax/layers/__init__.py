"""Flax NNX layers of the EOS family: the LCSM paper grid and the shared layer skeleton."""

from lcsm_jax.layers.config import EOSConfig, grid_cells
from lcsm_jax.layers.eos_layer import EOSLayer, grid_spec
from lcsm_jax.layers.linen import eos_layer_linen
from lcsm_jax.layers.mixer import EOSMixer
from lcsm_jax.layers.settings import LayerSettings
from lcsm_jax.layers.spec import PER_CHANNEL, LayerSpec
from lcsm_jax.layers.terms import EOSState

__all__ = [
    "PER_CHANNEL",
    "EOSConfig",
    "EOSLayer",
    "EOSMixer",
    "EOSState",
    "LayerSettings",
    "LayerSpec",
    "eos_layer_linen",
    "grid_cells",
    "grid_spec",
]
