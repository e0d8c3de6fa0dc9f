"""Every catalogue entry: finite, causal, decodes step by step, and works under jit/grad/vmap."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax import catalogue
from lcsm_jax.layers import EOSMixer

from .helpers import inputs, randomise

B, T, M = 2, 5, 8
NAMES = catalogue.names()
EOS_NAMES = [name for name in NAMES if name not in catalogue.M2_KERNELS]  # M2: tests/m2


def _build(name: str, seed: int = 0, **overrides) -> EOSMixer:
    if name == "lcsm":
        kwargs = {"num_heads": 2, "expand_dim": 3}
    elif name == "rwkv4":
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
    assert len(NAMES) == len(set(NAMES)) == 15
    for name in NAMES:
        entry = catalogue.method(name)
        assert entry.paper and entry.arxiv.count(".") == 1, name


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: lcsm, linear_attention, retnet"):
        catalogue.build("transformer", embed_dim=M, rngs=nnx.Rngs(0))


def test_overrides():
    with pytest.raises(ValueError, match="'gla' does not take 'o_type'"):
        catalogue.build("gla", embed_dim=M, rngs=nnx.Rngs(0), o_type=3)
    layer = catalogue.build("hgrn2", embed_dim=M, rngs=nnx.Rngs(0), lower_bound=0.5, num_heads=4)
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
