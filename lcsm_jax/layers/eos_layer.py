"""`EOSLayer`: one cell of the LCSM paper grid (SPEC §2) as a Flax NNX layer."""

from __future__ import annotations

from flax import nnx

from lcsm_jax.layers.activations import T_TYPES
from lcsm_jax.layers.config import HAND_CRAFTED_O_TYPES, EOSConfig
from lcsm_jax.layers.mixer import EOSMixer
from lcsm_jax.layers.settings import settings_of
from lcsm_jax.layers.spec import LayerSpec


def grid_spec(config: EOSConfig) -> LayerSpec:
    """The stages of a grid cell: i = W_i x always; c_type 0 is the selective SSM with plain
    projections for e and s; c_type 1 picks e, s (projection or K×D parameter, with the t_type
    activation) and the o_type oscillation."""
    common = settings_of(config)
    if config.c_type == 0:
        return LayerSpec(oscillation="selective_ssm", options=(("rank", config.ssm_dim),), **common)
    options = (("o_learned", config.o_learned),) if config.o_type in HAND_CRAFTED_O_TYPES else ()
    return LayerSpec(
        expand="proj" if config.e_type == 1 else "param",
        shrink="proj" if config.s_type == 1 else "param",
        activation=T_TYPES[config.t_type],
        oscillation=f"o{config.o_type}",
        options=options,
        **common,
    )


class EOSLayer(EOSMixer):
    """The LCSM layer (Qin et al., arXiv 2405.17383) for one `EOSConfig` cell.

    ``y = layer(x)`` for x [B, T, M]; ``layer(x, initial_state=..., segment_ids=...,
    return_state=True)`` returns ``(y, state)``; ``cache = layer.init_cache(B)`` and
    ``y_t, cache = layer.step(x_t, cache)`` decode one token at a time. See `EOSMixer`.
    """

    def __init__(self, config: EOSConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, EOSConfig):
            raise TypeError(f"config must be an EOSConfig, got {type(config).__name__}")
        super().__init__(grid_spec(config), rngs=rngs)
        self.config = config
