"""The published methods as their papers define them: full blocks (projections, short convs, gates,
norms, the paper's parameterisation and initialisation) around the functional ops of
`lcsm_jax.ops`. Each block is a `lcsm_jax.nn.mixer.Mixer` with a frozen config class."""

from lcsm_jax.blocks.deltanet import DeltaNetBlock, DeltaNetConfig
from lcsm_jax.blocks.gated_deltanet import GatedDeltaNetBlock, GatedDeltaNetConfig
from lcsm_jax.blocks.gla import GLABlock, GLAConfig
from lcsm_jax.blocks.hgrn2 import HGRN2Block, HGRN2Config
from lcsm_jax.blocks.linear_attention import LinearAttentionBlock, LinearAttentionConfig
from lcsm_jax.blocks.lru import LRUBlock, LRUConfig
from lcsm_jax.blocks.mamba import MambaBlock, MambaConfig
from lcsm_jax.blocks.mamba2 import Mamba2Block, Mamba2Config
from lcsm_jax.blocks.retnet import RetNetBlock, RetNetConfig
from lcsm_jax.blocks.rwkv4 import RWKV4Block, RWKV4Config
from lcsm_jax.blocks.rwkv6 import RWKV6Block, RWKV6Config
from lcsm_jax.blocks.s5 import S5Block, S5Config

__all__ = [
    "DeltaNetBlock",
    "DeltaNetConfig",
    "GatedDeltaNetBlock",
    "GatedDeltaNetConfig",
    "GLABlock",
    "GLAConfig",
    "HGRN2Block",
    "HGRN2Config",
    "LRUBlock",
    "LRUConfig",
    "LinearAttentionBlock",
    "LinearAttentionConfig",
    "Mamba2Block",
    "Mamba2Config",
    "MambaBlock",
    "MambaConfig",
    "RWKV4Block",
    "RWKV4Config",
    "RWKV6Block",
    "RWKV6Config",
    "RetNetBlock",
    "RetNetConfig",
    "S5Block",
    "S5Config",
]
