"""Every catalogue entry: finite, causal, decodes step by step, and works under jit/grad/vmap."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax import catalogue
from lcsm_jax.layers import EOSConfig, EOSMixer, LayerSpec
from lcsm_jax.layers.settings import LayerSettings
from lcsm_jax.models.lm import LMConfig
from lcsm_jax.nn.mixer import Mixer

from ..blocks.small import SMALL as BLOCK_SMALL
from .helpers import inputs, randomise

B, T, M = 2, 5, 8
NAMES = catalogue.names()
EOS_NAMES = ["lcsm", *catalogue.METHODS]  # the other families: tests/m2, tests/models
# Small sizes for the entries whose defaults are large (Hyena history, KV cache).
SMALL = {
    "m2": {"max_len": 16},
    "m2_ssm": {"state_dim": 4},
    "lrcssm": {"state": 6},
    "attention": {"num_heads": 2, "max_len": 16},
    "rwkv4_core": {},
    **BLOCK_SMALL,  # the full blocks at width 8
}


def _build(name: str, seed: int = 0, **overrides) -> EOSMixer:
    if name == "lcsm":
        kwargs = {"num_heads": 2, "expand_dim": 3}
    elif name == "rwkv4_core":
        kwargs = {}
    else:
        kwargs = {"num_heads": 2, "expand_dim": 3}
    return catalogue.build(name, embed_dim=M, rngs=nnx.Rngs(seed), **kwargs, **overrides)


def _check_causal(jac_TxMxTxM: np.ndarray):
    """d y_t / d x_j is exactly 0 for j > t."""
    for t in range(T):
        leak = np.abs(jac_TxMxTxM[t, :, t + 1 :]).max(initial=0.0)
        assert leak == 0.0, f"y_{t} depends on x_j for some j > {t} ({leak:.3g})"
    assert np.any(jac_TxMxTxM[T - 1, :, 0] != 0.0), "the last output does not see the first input"


def test_names_and_citations():
    assert len(NAMES) == len(set(NAMES)) == 29
    for name in NAMES:
        entry = catalogue.method(name)
        assert entry.paper and entry.arxiv.count(".") == 1, name
    assert NAMES[-3:] == ["m2_ssm", "lrcssm", "attention"]
    assert catalogue.method("attention").arxiv == "1706.03762"
    assert "Vaswani" in catalogue.method("attention").paper


def test_overridable_is_the_shared_layer_settings():
    shared = [f.name for f in dataclasses.fields(LayerSettings)]
    assert list(catalogue.OVERRIDABLE) == [name for name in shared if name != "embed_dim"]
    for cls in (EOSConfig, LayerSpec):
        assert set(shared) <= {f.name for f in dataclasses.fields(cls)}, cls


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_is_a_mixer(name):
    """Each entry builds a `Mixer`: __call__ [B,T,M] -> [B,T,M], step [B,M] -> [B,M] equal to
    the parallel output at t = 0, and a second step from the returned cache."""
    layer = catalogue.build(
        name, embed_dim=M, rngs=nnx.Rngs(0), **SMALL.get(name, {"num_heads": 2, "expand_dim": 3})
    )
    assert isinstance(layer, Mixer)
    x = inputs(B, T, M)
    y = layer(x, segment_ids=None)
    chex.assert_shape(y, (B, T, M))
    cache = layer.init_cache(B)
    y0, cache = layer.step(x[:, 0], cache)
    y1, _ = layer.step(x[:, 1], cache)
    chex.assert_shape((y0, y1), (B, M))
    chex.assert_trees_all_close((y0, y1), (y[:, 0], y[:, 1]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_builds_abstractly(name):
    """The training loop builds its model under `nnx.eval_shape` (no concrete values): an init
    that converts a traced draw to NumPy fails there, as S5's once did."""
    kwargs = SMALL.get(name, {"num_heads": 2, "expand_dim": 3})
    layer = nnx.eval_shape(lambda: catalogue.build(name, embed_dim=M, rngs=nnx.Rngs(0), **kwargs))
    assert isinstance(layer, Mixer)


def test_check_validates_without_building():
    catalogue.check("gla_core", embed_dim=M, num_heads=2)
    catalogue.check("gla_core", num_heads=3)  # without a width only the names are checked
    cases = [
        ("transformer", {}, "unknown model 'transformer'; valid names: lcsm, linear_attention"),
        ("gla_core", {"o_type": 3}, "'gla_core' does not take 'o_type'"),
        ("lcsm", {"lower_bound": 0.5}, "'lcsm' does not take 'lower_bound'; it takes"),
        ("m2", {"tau": 2.0}, "'m2' does not take 'tau'"),
        ("attention", {"expand_dim": 4}, "'attention' does not take 'expand_dim'"),
        ("gla_core", {"num_heads": 3}, "num_heads=3 must divide embed_dim=8"),
        ("gla_core", {"tau": 0}, "tau must be a positive number"),
        ("lcsm", {"o_type": 13}, "o_type must be one of 0..12"),
        ("attention", {"num_heads": 3}, "num_heads=3 must divide embed_dim=8"),
    ]
    for name, overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            catalogue.check(name, embed_dim=M, **overrides)
        with pytest.raises(ValueError, match=message):  # build says the same
            catalogue.build(name, embed_dim=M, rngs=nnx.Rngs(0), **overrides)


def test_lm_config_checks_its_mixer_when_made():
    with pytest.raises(ValueError, match="'gla_core' does not take 'state_dim'"):
        LMConfig(vocab_size=16, d_model=M, mixer="gla_core", mixer_options=(("state_dim", 4),))
    with pytest.raises(ValueError, match="unknown model 'nope'; valid names: lcsm"):
        LMConfig(vocab_size=16, d_model=M, mixer="nope")
    with pytest.raises(ValueError, match="num_heads=3 must divide embed_dim=8"):
        LMConfig(vocab_size=16, d_model=M, mixer="gla_core", mixer_options=(("num_heads", 3),))
    # Attention reads LMConfig.num_heads / max_len; mixer_options may only repeat them.
    config = LMConfig(vocab_size=16, d_model=M, mixer="attention", num_heads=2, max_len=32)
    assert config.mixer_kwargs() == {"num_heads": 2, "max_len": 32} and config.positions
    LMConfig(
        vocab_size=16, d_model=M, mixer="attention", num_heads=2, mixer_options=(("num_heads", 2),)
    )
    with pytest.raises(
        ValueError, match="mixer_options num_heads=4 disagrees with LMConfig.num_heads=2"
    ):
        LMConfig(
            vocab_size=16,
            d_model=M,
            mixer="attention",
            num_heads=2,
            mixer_options=(("num_heads", 4),),
        )


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: lcsm, linear_attention_core, retnet_core"):
        catalogue.build("transformer", embed_dim=M, rngs=nnx.Rngs(0))


def test_overrides():
    with pytest.raises(ValueError, match="'gla_core' does not take 'o_type'"):
        catalogue.build("gla_core", embed_dim=M, rngs=nnx.Rngs(0), o_type=3)
    layer = catalogue.build(
        "hgrn2_core", embed_dim=M, rngs=nnx.Rngs(0), lower_bound=0.5, num_heads=4
    )
    assert layer.spec.option("lower_bound") == 0.5 and layer.dims.H == 4
    layer = catalogue.build("lcsm", embed_dim=M, rngs=nnx.Rngs(0), o_type=3, tau=8.0)
    assert layer.config.o_type == 3 and layer.structure == "k"


@pytest.mark.parametrize("name", EOS_NAMES)
def test_entry(name):
    """Finite output; step decoding == parallel; jit, grad, vmap; causality (one compile)."""
    x = inputs(B, T, M)
    layer = _build(name)
    chex.assert_tree_all_finite(layer(x))
    layer = randomise(layer, std=0.3)
    y, state = layer(x, return_state=True)
    chex.assert_shape(y, (B, T, M))
    chex.assert_tree_all_finite(y)

    step = nnx.jit(lambda m, x_t, c: m.step(x_t, c))
    cache = layer.init_cache(B)
    ys = []
    for t in range(T):
        y_t, cache = step(layer, x[:, t], cache)
        ys.append(y_t)
    chex.assert_trees_all_close(jnp.stack(ys, axis=1), y, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(cache, state, atol=1e-5, rtol=1e-5)

    @nnx.jit
    def everything(m, x):
        def loss(m):
            out = m(x)
            return jnp.sum(out**2), out

        grads, out = nnx.grad(loss, has_aux=True)(m)
        out_vmapped = jax.vmap(lambda v: m(v[None])[0])(x)
        jac = jax.jacrev(lambda v: m(v[None])[0])(x[0])  # [T, M, T, M]: d y_t / d x_j
        return out, grads, out_vmapped, jac

    out, grads, out_vmapped, jac = everything(layer, x)
    chex.assert_trees_all_close(out, y, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(out_vmapped, y, atol=1e-5, rtol=1e-5)
    leaves = jax.tree.leaves(grads)
    chex.assert_tree_all_finite(leaves)
    assert all(np.any(np.asarray(g) != 0) for g in leaves), "a parameter gets no gradient"
    _check_causal(np.asarray(jac))
