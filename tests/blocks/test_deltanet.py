"""DeltaNetBlock against a float64 NumPy oracle of the DeltaNet layer (arXiv 2406.06484; fla's
fla/layers/delta_net.py), plus decoding, fla's init and config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.deltanet import DeltaNetBlock, DeltaNetConfig
from lcsm_jax.nn.mixer import Mixer

from .helpers import causal_conv, close, f64, linear, run, silu, starts

M = 32


def _block(seed=0, scale=8.0, backend="reference", **kw):
    """A block with scaled-up projections and random conv / norm weights, so that every
    nonlinearity (β, SiLU, norm-gate, conv) is exercised away from its init regime."""
    block = DeltaNetBlock(DeltaNetConfig(embed_dim=M, backend=backend, **kw), rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 100)
    for lin in (block.q_proj, block.k_proj, block.v_proj, block.b_proj, block.g_proj):
        if lin is not None:
            lin.kernel.set_value(lin.kernel[...] * scale)
    w = block.o_norm.weight[...]
    block.o_norm.weight.set_value(w + 0.3 * jax.random.normal(jax.random.fold_in(key, 1), w.shape))
    if block.convs is not None:
        for i, conv in enumerate(block.convs):
            cw = conv.conv.weight[...]
            conv.conv.weight.set_value(cw * 20 + jnp.zeros_like(cw).at[0].set(1.0))
            if conv.bias is not None:
                conv.bias.set_value(
                    0.1 * jax.random.normal(jax.random.fold_in(key, 2 + i), cw[0].shape)
                )
    return block


def oracle(block, x, segment_ids=None):
    """Float64 DeltaNet: q, k, v (-> conv) -> SiLU / φ, q, k L2- (or sum-) normalised per head,
    β = sigmoid(W_b x), S_t = S_{t-1} - β_t k_t (k_tᵀ S_{t-1} - v_tᵀ), o_t = K^-½ S_tᵀ q_t,
    RMSNorm(o)·w (⊙ swish(W_g x)), W_o."""
    cfg = block.config
    x = f64(x)
    B, T, _ = x.shape
    H = cfg.num_heads
    ids = np.zeros((B, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = starts(ids, B, T)
    q, k, v = (linear(p, x) for p in (block.q_proj, block.k_proj, block.v_proj))
    qk_silu = cfg.qk_activation == "silu"
    if cfg.use_short_conv:
        q, k, v = (
            (silu(causal_conv(c, a, start)) if s else causal_conv(c, a, start))
            for c, a, s in zip(block.convs, (q, k, v), (qk_silu, qk_silu, True), strict=True)
        )
    else:
        q, k, v = (silu(q), silu(k), silu(v)) if qk_silu else (q, k, silu(v))
    Kh, Vh = cfg.key_dim // H, cfg.value_dim // H
    q, k = (a.reshape(B, T, H, Kh) for a in (q, k))
    v = v.reshape(B, T, H, Vh)
    if cfg.qk_activation == "relu":
        q, k = np.maximum(q, 0), np.maximum(k, 0)
    elif cfg.qk_activation == "elu":
        q, k = (np.where(a > 0, a + 1, np.exp(a)) for a in (q, k))
    if cfg.qk_norm == "l2":  # fla's l2norm, eps 1e-6
        q, k = (a / np.sqrt(np.sum(a**2, -1, keepdims=True) + 1e-6) for a in (q, k))
    else:
        q, k = (a / np.sum(a, -1, keepdims=True) for a in (q, k))
    beta = 1 / (1 + np.exp(-linear(block.b_proj, x))) if cfg.use_beta else np.ones((B, T, H))
    beta = 2 * beta if cfg.allow_neg_eigval else beta
    o = np.zeros((B, T, H, Vh))
    for b in range(B):
        S = np.zeros((H, Kh, Vh))
        for t in range(T):
            if start[b, t] == t:
                S = np.zeros((H, Kh, Vh))
            kt, vt, bt = k[b, t], v[b, t], beta[b, t]
            err = np.einsum("hk,hkv->hv", kt, S) - vt  # the delta: prediction - target
            S = S - bt[:, None, None] * kt[:, :, None] * err[:, None, :]
            o[b, t] = Kh**-0.5 * np.einsum("hk,hkv->hv", q[b, t], S)
    o = o / np.sqrt(np.mean(o**2, axis=-1, keepdims=True) + cfg.norm_eps)
    o = o * f64(block.o_norm.weight[...])
    if cfg.use_gate:
        o = o * silu(linear(block.g_proj, x).reshape(B, T, H, Vh))
    return linear(block.o_proj, o.reshape(B, T, cfg.value_dim))


def _x(B=2, T=20, seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, M))


IDS = np.array([[0] * 7 + [1] * 13, [5] * 11 + [6] * 9])


@pytest.mark.parametrize(
    "backend,kw,ids",
    [
        ("reference", {}, None),
        ("chunked", {"chunk_size": 8, "use_gate": True, "conv_bias": True}, IDS),
        (
            "chunked",
            {"chunk_size": 8, "qk_activation": "elu", "qk_norm": "sum", "allow_neg_eigval": True},
            None,
        ),
        (
            "reference",
            {"use_short_conv": False, "qk_activation": "relu", "use_beta": False, "num_heads": 2},
            IDS,
        ),
    ],
)
def test_matches_float64_oracle(backend, kw, ids):
    block = _block(backend=backend, **kw)
    x = _x()
    ref = oracle(block, x, ids)
    assert np.abs(ref).max() > 0.1
    close(run(block, x, None if ids is None else jnp.asarray(ids)), ref)


def test_init_follows_fla():
    cfg = DeltaNetConfig(embed_dim=64)
    block = DeltaNetBlock(cfg, rngs=nnx.Rngs(0))
    assert (cfg.key_dim, cfg.value_dim, cfg.num_heads) == (64, 64, 4)
    assert (cfg.qk_activation, cfg.qk_norm, cfg.use_beta, cfg.use_gate) == (
        "silu",
        "l2",
        True,
        False,
    )
    assert block.q_proj.kernel[...].shape == (64, 64) and block.q_proj.bias is None
    assert block.b_proj.kernel[...].shape == (64, 4) and block.g_proj is None
    assert [c.conv.weight[...].shape for c in block.convs] == [(4, 64)] * 3
    assert all(c.bias is None and c.silu for c in block.convs)
    np.testing.assert_array_equal(np.asarray(block.o_norm.weight[...]), 1.0)
    for w in (block.o_proj.kernel[...], block.convs[0].conv.weight[...]):
        assert 0.017 < float(np.std(np.asarray(w))) < 0.023
    assert isinstance(block, Mixer)
    gated = DeltaNetBlock(DeltaNetConfig(embed_dim=64, use_gate=True), rngs=nnx.Rngs(0))
    assert gated.g_proj.kernel[...].shape == (64, 64)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"num_heads": 3}, "num_heads"),
        ({"expand_k": 0.0}, "expand_k"),
        ({"expand_v": -1.0}, "expand_v"),
        ({"conv_size": 0}, "conv_size"),
        ({"qk_activation": "gelu"}, "qk_activation"),
        ({"qk_norm": "softmax"}, "qk_norm"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"backend": "associative"}, "backend"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        DeltaNetConfig(**{"embed_dim": M, **kw})
