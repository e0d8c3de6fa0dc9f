"""Every invalid EOSConfig raises a ValueError naming the field and the reason."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import pytest
from flax import nnx

from lcsm_jax.layers import PER_CHANNEL, EOSConfig, EOSLayer, EOSMixer, LayerSpec, grid_spec
from lcsm_jax.layers.settings import LayerSettings

INVALID = [
    ({"embed_dim": 0}, "embed_dim must be a positive int"),
    ({"embed_dim": 8.0}, "embed_dim must be a positive int"),
    ({"expand_dim": 0}, "expand_dim must be a positive int"),
    ({"num_heads": 0}, "num_heads must be a positive int"),
    ({"num_heads": 3}, "num_heads=3 must divide embed_dim=8"),
    ({"ssm_dim": -1}, "ssm_dim must be a positive int"),
    ({"c_type": 2}, "c_type must be one of 0..1"),
    ({"e_type": 2}, "e_type must be one of 0..1"),
    ({"s_type": -1}, "s_type must be one of 0..1"),
    ({"o_type": 13}, "o_type must be one of 0..12"),
    ({"o_type": True}, "o_type must be one of 0..12"),
    ({"t_type": 8}, "t_type must be one of 0..7"),
    ({"o_learned": 1}, "o_learned must be a bool"),
    ({"bias": None}, "bias must be a bool"),
    ({"tau": 0}, "tau must be a positive number"),
    ({"tau": -2.0}, "tau must be a positive number"),
    ({"chunk_size": 0}, "chunk_size must be a positive int"),
    ({"backend": "fast"}, "backend must be one of"),
    ({"dtype": jnp.int32}, "dtype must be a floating dtype"),
    ({"param_dtype": "nope"}, "param_dtype must be a floating dtype"),
    ({"o_type": 11, "e_type": 0}, "e_type=0 is not allowed with o_type=11"),
    ({"o_type": 11, "s_type": 0}, "s_type=0 is not allowed with o_type=11"),
    ({"o_type": 12, "e_type": 0, "s_type": 0}, "e_type=0 is not allowed with o_type=12"),
    ({"o_type": 12, "s_type": 0}, "s_type=0 is not allowed with o_type=12"),
    ({"o_type": 1, "o_learned": False}, "o_learned=False is only defined for o_type in"),
    ({"o_type": 10, "o_learned": False}, "o_learned=False is only defined for o_type in"),
    ({"c_type": 0, "o_type": 3}, "o_type=3 has no effect with c_type=0"),
    ({"c_type": 0, "e_type": 0}, "e_type=0 has no effect with c_type=0"),
    ({"c_type": 0, "t_type": 2}, "t_type=2 has no effect with c_type=0"),
]


@pytest.mark.parametrize(("overrides", "message"), INVALID, ids=lambda v: str(v))
def test_invalid_config_raises_named_error(overrides, message):
    fields = {"embed_dim": 8, **overrides}
    with pytest.raises(ValueError, match=message):
        EOSConfig(**fields)


def test_valid_edge_cases():
    EOSConfig(embed_dim=8, num_heads=8, expand_dim=1, tau=0.5)
    EOSConfig(embed_dim=8, c_type=0, ssm_dim=2)
    EOSConfig(embed_dim=8, o_type=5, o_learned=False, dtype=jnp.bfloat16)


def test_layer_rejects_bad_inputs():
    layer = EOSLayer(EOSConfig(embed_dim=8, expand_dim=2), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="config must be an EOSConfig"):
        EOSLayer({"embed_dim": 8}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x must be \[B, T, 8\]"):
        layer(jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"x_t must be \[B, 8\]"):
        layer.step(jnp.zeros((2, 3, 8)), layer.init_cache(2))
    with pytest.raises(ValueError, match=r"segment_ids must be \[B,T\]"):
        layer(jnp.zeros((2, 3, 8)), segment_ids=jnp.zeros((2, 4), jnp.int32))


def test_layer_spec_errors():
    with pytest.raises(ValueError, match="oscillation='o13' is not a known stage"):
        EOSMixer(LayerSpec(embed_dim=8, oscillation="o13"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"options \['rank'\] are not read by oscillation 'o1'"):
        EOSMixer(LayerSpec(embed_dim=8, oscillation="o1", options=(("rank", 2),)), rngs=nnx.Rngs(0))


def test_layer_spec_validates_the_shared_settings():
    with pytest.raises(ValueError, match="num_heads must be a positive int or PER_CHANNEL"):
        LayerSpec(embed_dim=8, num_heads=-2)
    with pytest.raises(ValueError, match="num_heads=3 must divide embed_dim=8"):
        LayerSpec(embed_dim=8, num_heads=3)
    with pytest.raises(ValueError, match="tau must be a positive number"):
        LayerSpec(embed_dim=8, tau=0)
    with pytest.raises(ValueError, match="backend must be one of"):
        LayerSpec(embed_dim=8, backend="fast")
    with pytest.raises(ValueError, match="nblocks must be a positive int"):
        LayerSpec(embed_dim=8, nblocks=0)
    assert tuple(LayerSpec(embed_dim=8, num_heads=PER_CHANNEL, expand_dim=2).dims) == (8, 8, 2, 1)
    with pytest.raises(ValueError, match="num_heads must be a positive int, got -1"):
        EOSConfig(embed_dim=8, num_heads=PER_CHANNEL)  # per-channel heads are a LayerSpec choice
    with pytest.raises(TypeError):
        EOSConfig(8)  # keyword-only


def test_grid_spec_copies_every_shared_setting():
    config = EOSConfig(
        embed_dim=8,
        num_heads=2,
        expand_dim=3,
        tau=4.0,
        bias=True,
        backend="reference",
        chunk_size=2,
        dtype=jnp.bfloat16,
        param_dtype=jnp.bfloat16,
        projection="blockdiag",
        nblocks=2,
    )
    for cell in (config, dataclasses.replace(config, c_type=0)):
        spec = grid_spec(cell)
        for field in dataclasses.fields(LayerSettings):
            assert getattr(spec, field.name) == getattr(cell, field.name), field.name
