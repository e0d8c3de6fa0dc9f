"""LinearAttentionBlock against a float64 NumPy oracle of linear attention (arXiv 2006.16236
§3.2-3.4; fla's fla/layers/linear_attn.py) for every backend, feature map and normaliser and with
packed sequences, its defaults, init, cache layout and config checks. The Mixer contract
(decoding, causality, packing, grad) is in test_contract.py."""

import jax
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.linear_attention import LinearAttentionBlock, LinearAttentionConfig
from lcsm_jax.nn.mixer import Mixer
from tests.blocks.helpers import PACKED_IDS, check_oracle, f64, linear, rms_norm, starts

M = 32


def _block(seed=0, scale=8.0, backend="reference", **kw):
    """A block with scaled-up projections, a random norm weight and, for hedgehog, maps moved
    off the identity. The sequential reference backend compiles fastest; the oracle test covers
    the others."""
    cfg = LinearAttentionConfig(**{"embed_dim": M, "num_heads": 4, "backend": backend, **kw})
    block = LinearAttentionBlock(cfg, rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 5)
    for lin in (block.q_proj, block.k_proj, block.v_proj):
        lin.kernel.set_value(lin.kernel[...] * scale)
    if block.norm is not None:
        w = block.norm.weight[...]
        block.norm.weight.set_value(w + 0.3 * jax.random.normal(key, w.shape))
    for i, fmap in enumerate((block.q_map, block.k_map)):
        if fmap is not None:
            k1, k2 = jax.random.split(jax.random.fold_in(key, i))
            W = fmap.layer.kernel[...]
            fmap.layer.kernel.set_value(W + 0.3 * jax.random.normal(k1, W.shape))
            fmap.layer.bias.set_value(0.3 * jax.random.normal(k2, W.shape[:1]))
    return block


def _phi(block, fmap, x):
    name = block.config.feature_map
    if name == "elu":
        return np.where(x > 0, x + 1.0, np.exp(x))
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "identity":
        return x
    y = 2.0 * linear(fmap.layer, x)
    e = np.exp(np.concatenate([y, -y], axis=-1))
    return e / e.sum(axis=-1, keepdims=True)


def oracle(block, x, segment_ids=None):
    """Float64 linear attention: o_t = K^-½ φ(q_t)ᵀ Σ_{i<=t} φ(k_i) v_iᵀ, optionally divided by
    K^-½ φ(q_t)·Σ φ(k_i) (+1e-10), per-head RMSNorm·w, W_o."""
    cfg = block.config
    x = f64(x)
    B, T, _ = x.shape
    H = cfg.num_heads
    Kh, Vh = cfg.key_dim // H, cfg.value_dim // H
    start = starts(segment_ids, B, T)
    q = _phi(block, block.q_map, linear(block.q_proj, x).reshape(B, T, H, Kh))
    k = _phi(block, block.k_map, linear(block.k_proj, x).reshape(B, T, H, Kh))
    v = linear(block.v_proj, x).reshape(B, T, H, Vh)
    K = q.shape[-1]
    o = np.zeros((B, T, H, Vh))
    for b in range(B):
        for t in range(T):
            s = start[b, t]
            S = np.einsum("jhk,jhv->hkv", k[b, s : t + 1], v[b, s : t + 1])
            o[b, t] = K**-0.5 * np.einsum("hk,hkv->hv", q[b, t], S)
            if cfg.normalize:
                z = K**-0.5 * np.einsum("hk,hk->h", q[b, t], k[b, s : t + 1].sum(0))
                o[b, t] = o[b, t] / (z[:, None] + 1e-10)
    if cfg.output_norm == "rmsnorm":
        o = rms_norm(o, cfg.norm_eps) * f64(block.norm.weight[...])
    return linear(block.o_proj, o.reshape(B, T, cfg.value_dim))


@pytest.mark.parametrize(
    "backend,kw",
    [
        ("reference", {}),
        ("chunked", {"chunk_size": 8, "normalize": True}),
        ("auto", {"feature_map": "hedgehog", "normalize": True, "num_heads": 2}),
        ("associative", {"feature_map": "relu", "expand_v": 0.5}),
        ("reference", {"feature_map": "identity", "output_norm": "identity", "expand_k": 0.5}),
        ("reference", {"normalize": True, "output_norm": "identity"}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    check_oracle(_block(backend=backend, **kw), oracle, (2, 24, M))


def test_defaults_and_init():
    cfg = LinearAttentionConfig(embed_dim=64)
    block = LinearAttentionBlock(cfg, rngs=nnx.Rngs(0))
    assert (cfg.num_heads, cfg.key_dim, cfg.value_dim, cfg.feature_map) == (8, 64, 64, "elu")
    assert not cfg.normalize and cfg.output_norm == "rmsnorm"
    np.testing.assert_array_equal(np.asarray(block.norm.weight[...]), np.ones(8))
    assert 0.017 < float(np.std(np.asarray(block.q_proj.kernel[...]))) < 0.023
    assert block.q_map is None and isinstance(block, Mixer)
    hh = LinearAttentionBlock(
        LinearAttentionConfig(embed_dim=64, feature_map="hedgehog", normalize=True),
        rngs=nnx.Rngs(0),
    )
    np.testing.assert_array_equal(np.asarray(hh.q_map.layer.kernel[...]), np.eye(8))
    np.testing.assert_array_equal(np.asarray(hh.k_map.layer.bias[...]), np.zeros(8))
    cache = hh.init_cache(3)
    assert cache["state"].shape == (3, 8, 16, 8) and cache["z"].shape == (3, 8, 16, 1)


def test_packed_sequences_match_float64_oracle():
    check_oracle(_block(normalize=True), oracle, (2, 16, M), PACKED_IDS)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"num_heads": 3}, "num_heads"),
        ({"expand_k": 0.0}, "expand_k"),
        ({"expand_v": -1.0}, "expand_v"),
        ({"feature_map": "dpfp"}, "feature_map"),
        ({"output_norm": "layernorm"}, "output_norm"),
        ({"normalize": 1}, "normalize"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"backend": "x"}, "backend"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        LinearAttentionConfig(**{"embed_dim": M, **kw})
