"""The M2 mixer: causality by gradient, step decoding equals the parallel output, the recurrent
(SSM) kernel equals its materialised long conv, catalogue / LM / EOS-projection integration."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax import catalogue
from lcsm_jax.layers import EOSConfig, EOSLayer
from lcsm_jax.m2 import M2Config, M2Mixer
from lcsm_jax.m2.longconv import long_conv
from lcsm_jax.models.lm import LanguageModel, LMConfig
from lcsm_jax.nn.linear import MonarchDense

B, T, M = 2, 6, 8


def _x(seed=0, t=T):
    return jax.random.normal(jax.random.key(seed), (B, t, M))


def _mixer(kernel="hyena", **kw) -> M2Mixer:
    mixer = M2Mixer(M2Config(embed_dim=M, kernel=kernel, max_len=16, **kw), rngs=nnx.Rngs(0))
    # Larger projections than the 0.02 init, so the gates visibly act.
    for _, node in nnx.iter_graph(mixer):
        if isinstance(node, nnx.Param) and node[...].ndim >= 2 and node[...].shape[-1] != 1:
            node[...] = node[...] * 10.0
    return mixer


def _jacobian(mixer, x):
    """|d y_t / d x_j| summed over channels, [T, T] (batch element 0)."""
    jac = jax.jit(jax.jacrev(lambda v: mixer(v[None])[0]))(x[0])
    return np.abs(np.asarray(jac)).sum(axis=(1, 3))


@pytest.mark.parametrize(
    "kernel, kw, exact",
    [("hyena", {}, False), ("hyena", {"long_conv": "monarch"}, False), ("ssm", {}, True)],
    ids=["m2-fft", "m2-monarch", "m2_ssm"],
)
def test_causal_by_gradient(kernel, kw, exact):
    jac_TxT = _jacobian(_mixer(kernel, **kw), _x())
    future = np.triu(jac_TxT, 1).max()
    if exact:
        assert future == 0.0, f"m2_ssm leaks the future ({future})"
    else:  # FFT rounding only: the padded kernel has no future taps
        assert future < 1e-6 * jac_TxT.max(), f"leak {future} vs {jac_TxT.max()}"
    assert np.all(np.diag(jac_TxT) > 0) and jac_TxT[-1, 0] > 0


def test_bidirectional_sees_the_future():
    jac_TxT = _jacobian(_mixer(bidirectional=True), _x())
    assert jac_TxT[np.triu_indices(T, 1)].min() > 1e-4 * jac_TxT.max()
    with pytest.raises(ValueError, match="bidirectional M2 mixer .* cannot decode"):
        mixer = _mixer(bidirectional=True)
        mixer.step(_x()[:, 0], mixer.init_cache(B))


@pytest.mark.parametrize("kernel", ["ssm", "hyena"])
def test_step_equals_parallel(kernel):
    mixer, x = _mixer(kernel), _x(1)
    y = mixer(x)
    step = nnx.jit(lambda m, x_t, c: m.step(x_t, c))
    cache, ys = mixer.init_cache(B), []
    for t in range(T):
        y_t, cache = step(mixer, x[:, t], cache)
        ys.append(y_t)
    chex.assert_trees_all_close(jnp.stack(ys, axis=1), y, atol=1e-4, rtol=1e-4)


def test_hyena_step_past_max_len_is_nan():
    mixer = M2Mixer(M2Config(embed_dim=M, max_len=2), rngs=nnx.Rngs(0))
    cache = mixer.init_cache(B)
    for _ in range(2):
        y, cache = mixer.step(_x()[:, 0], cache)
        chex.assert_tree_all_finite(y)
    y, _ = mixer.step(_x()[:, 0], cache)
    assert np.all(np.isnan(np.asarray(y)))


def test_ssm_recurrence_equals_long_conv_of_its_kernel():
    op = _mixer("ssm").op
    w = jax.random.normal(jax.random.key(2), (B, 12, op.channels))
    chex.assert_trees_all_close(op(w), long_conv(w, op.kernel(12)), atol=1e-5, rtol=1e-4)


def test_ssm_segments_restart():
    mixer, x = _mixer("ssm"), _x(3)
    ids = jnp.array([[0, 0, 0, 1, 1, 1]] * B)
    y = mixer(x, segment_ids=ids)
    chex.assert_trees_all_close(y[:, 3:], mixer(x[:, 3:]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="does not support segment_ids"):
        _mixer()(x, segment_ids=ids)


def test_catalogue_and_config_errors():
    layer = catalogue.build("m2", embed_dim=M, rngs=nnx.Rngs(0), max_len=32, projection="monarch")
    assert isinstance(layer, M2Mixer) and isinstance(layer.in_proj, MonarchDense)
    assert catalogue.method("m2_ssm").arxiv == "2310.12109"
    with pytest.raises(ValueError, match="'m2' does not take 'tau'; it takes max_len"):
        catalogue.build("m2", embed_dim=M, rngs=nnx.Rngs(0), tau=2.0)
    with pytest.raises(ValueError, match="long_conv apply to the 'hyena' kernel only"):
        M2Config(embed_dim=M, kernel="ssm", bidirectional=True)
    with pytest.raises(ValueError, match="filter_emb_dim must be odd"):
        M2Config(embed_dim=M, filter_emb_dim=4)
    with pytest.raises(ValueError, match="long_conv='dft'"):
        M2Config(embed_dim=M, long_conv="dft")
    with pytest.raises(ValueError, match="exceeds M2Config.max_len=16"):
        _mixer()(_x(t=17))
    with pytest.raises(ValueError, match=r"x must be \[B, T, 8\]"):
        _mixer()(jnp.ones((B, T, 4)))


def test_eos_layer_with_monarch_projections():
    layer = EOSLayer(
        EOSConfig(embed_dim=M, expand_dim=4, projection="monarch", nblocks=2, backend="reference"),
        rngs=nnx.Rngs(0),
    )
    assert isinstance(layer.inputs.proj, MonarchDense) and isinstance(layer.out, MonarchDense)
    chex.assert_shape(layer(_x()), (B, T, M))
    with pytest.raises(ValueError, match="projection must be one of dense, blockdiag, monarch"):
        EOSConfig(embed_dim=M, projection="lowrank")


@pytest.mark.slow  # an LM compile; the mixer's own step test covers decoding by default
def test_m2_block_with_monarch_glu_decodes():
    config = LMConfig(
        vocab_size=16,
        d_model=M,
        num_layers=1,
        mixer="m2_ssm",
        channel_mixer="glu_monarch",
        mixer_options=(("state_dim", 4),),
    )
    model = LanguageModel(config, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(4), (B, 5), 0, 16)
    logits = nnx.jit(lambda m, x: m(x))(model, tokens)
    chex.assert_shape(logits, (B, 5, 16))
    step = nnx.jit(lambda m, x_t, c: m.step(x_t, c))
    cache, steps = model.init_cache(B), []
    for t in range(5):
        out, cache = step(model, tokens[:, t], cache)
        steps.append(out)
    chex.assert_trees_all_close(jnp.stack(steps, axis=1), logits, atol=1e-4, rtol=1e-4)
