"""GLABlock against a float64 NumPy oracle of the GLA layer (arXiv 2312.06635 §4; fla's
fla/layers/gla.py) for every backend and with packed sequences, its init, cache layout and config
checks. The Mixer contract (decoding, causality, packing, grad) is in test_contract.py."""

import jax
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.gla import GLABlock, GLAConfig
from lcsm_jax.nn.mixer import Mixer
from tests.blocks.helpers import (
    PACKED_IDS,
    causal_conv,
    check_oracle,
    f64,
    linear,
    log_sigmoid,
    rms_norm,
    sharpen_convs,
    silu,
    starts,
)

M = 32


def _block(seed=0, scale=8.0, backend="reference", **kw):
    """A block with scaled-up projections and random biases / norm weights, so that every
    nonlinearity (gate, swish, conv) is exercised away from its init regime. The sequential
    reference backend compiles fastest; the oracle test covers the others."""
    block = GLABlock(GLAConfig(embed_dim=M, backend=backend, **kw), rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 100)
    for lin in (block.q_proj, block.k_proj, block.v_proj, block.gk_down, block.gk_up):
        lin.kernel.set_value(lin.kernel[...] * scale)
    if block.g_proj is not None:
        block.g_proj.kernel.set_value(block.g_proj.kernel[...] * scale)
    block.gk_up.bias.set_value(jax.random.normal(key, block.gk_up.bias[...].shape))
    w = block.g_norm.weight[...]
    block.g_norm.weight.set_value(w + 0.3 * jax.random.normal(jax.random.fold_in(key, 1), w.shape))
    if block.convs is not None:
        sharpen_convs(block.convs, key)
    return block


def oracle(block, x, segment_ids=None):
    """Float64 GLA: q, k, v (-> conv -> SiLU), α_t = sigmoid(W2 W1 x + b)^(1/16),
    S_t = diag(α_t) S_{t-1} + k_t v_tᵀ, o_t = K^-½ S_tᵀ q_t, RMSNorm(o)·w ⊙ swish(W_g x), W_o."""
    cfg = block.config
    x = f64(x)
    B, T, _ = x.shape
    H = cfg.num_heads
    start = starts(segment_ids, B, T)
    q, k, v = (linear(p, x) for p in (block.q_proj, block.k_proj, block.v_proj))
    if cfg.use_short_conv:
        q, k, v = (
            silu(causal_conv(c, a, start)) for c, a in zip(block.convs, (q, k, v), strict=True)
        )
    g = log_sigmoid(linear(block.gk_up, linear(block.gk_down, x))) / cfg.gate_logit_normalizer
    if cfg.clamp_min is not None:
        g = np.maximum(g, cfg.clamp_min)
    Kh, Vh = cfg.key_dim // H, cfg.value_dim // H
    q, k, g = (a.reshape(B, T, H, Kh) for a in (q, k, g))
    v = v.reshape(B, T, H, Vh)
    o = np.zeros((B, T, H, Vh))
    for b in range(B):
        S = np.zeros((H, Kh, Vh))
        for t in range(T):
            if start[b, t] == t:
                S = np.zeros((H, Kh, Vh))
            S = np.exp(g[b, t])[:, :, None] * S + k[b, t][:, :, None] * v[b, t][:, None, :]
            o[b, t] = Kh**-0.5 * np.einsum("hk,hkv->hv", q[b, t], S)
    o = rms_norm(o, cfg.norm_eps) * f64(block.g_norm.weight[...])
    if cfg.use_output_gate:
        o = o * silu(linear(block.g_proj, x).reshape(B, T, H, Vh))
    return linear(block.o_proj, o.reshape(B, T, cfg.value_dim))


@pytest.mark.parametrize(
    "backend,kw",
    [
        ("reference", {}),
        ("chunked", {"chunk_size": 8, "use_short_conv": True, "conv_bias": True}),
        ("auto", {"clamp_min": -0.05, "num_heads": 2, "expand_k": 1.0}),
        ("associative", {"use_output_gate": False, "gate_low_rank_dim": 4}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    check_oracle(_block(backend=backend, **kw), oracle, (2, 24, M))


def test_packed_sequences_match_float64_oracle():
    check_oracle(_block(use_short_conv=True), oracle, (2, 16, M), PACKED_IDS)


def test_init_follows_fla():
    cfg = GLAConfig(embed_dim=64)
    block = GLABlock(cfg, rngs=nnx.Rngs(0))
    assert (cfg.key_dim, cfg.value_dim, cfg.num_heads) == (32, 64, 4)
    assert block.q_proj.kernel[...].shape == (64, 32)
    assert block.v_proj.kernel[...].shape == (64, 64)
    assert block.gk_down.kernel[...].shape == (64, 16)
    assert block.gk_up.kernel[...].shape == (16, 32)
    np.testing.assert_array_equal(np.asarray(block.gk_up.bias[...]), 0.0)
    np.testing.assert_array_equal(np.asarray(block.g_norm.weight[...]), 1.0)
    std = float(np.std(np.asarray(block.o_proj.kernel[...])))
    assert 0.017 < std < 0.023
    assert block.convs is None and isinstance(block, Mixer)


def test_cache_layout():
    """The state [B, H, K, V] and, with short convs, the last conv_size - 1 inputs of q, k, v."""
    block = GLABlock(GLAConfig(embed_dim=M, use_short_conv=True), rngs=nnx.Rngs(0))
    cache = block.init_cache(2)
    assert cache["state"].shape == (2, 4, 4, 8)
    assert [c.shape for c in cache["conv"]] == [(2, 3, 16), (2, 3, 16), (2, 3, 32)]


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"num_heads": 3}, "num_heads"),
        ({"expand_k": 0.0}, "expand_k"),
        ({"expand_v": -1.0}, "expand_v"),
        ({"gate_low_rank_dim": 0}, "gate_low_rank_dim"),
        ({"gate_logit_normalizer": 0}, "gate_logit_normalizer"),
        ({"clamp_min": 0.5}, "clamp_min"),
        ({"conv_size": 0}, "conv_size"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"backend": "fast"}, "backend"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        GLAConfig(**{"embed_dim": M, **kw})
