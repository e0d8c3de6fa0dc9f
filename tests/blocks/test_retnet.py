"""RetNetBlock against a float64 NumPy oracle of multi-scale retention (arXiv 2307.08621 §2;
fla's fla/layers/multiscale_retention.py) for every backend and with packed sequences, its rotary
positions, init, cache layout and config checks. The Mixer contract (decoding, causality,
packing, grad) is in test_contract.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.retnet import RetNetBlock, RetNetConfig, positions, rotary
from lcsm_jax.nn.mixer import Mixer
from tests.blocks.helpers import (
    PACKED_IDS,
    check_oracle,
    close,
    f64,
    linear,
    rms_norm,
    silu,
    starts,
)

M = 32


def _block(seed=0, scale=8.0, backend="reference", **kw):
    """A block with scaled-up projections and a random norm weight. The sequential reference
    backend compiles fastest; the oracle test covers the others."""
    cfg = RetNetConfig(**{"embed_dim": M, "num_heads": 4, "backend": backend, **kw})
    block = RetNetBlock(cfg, rngs=nnx.Rngs(seed))
    for lin in (block.q_proj, block.k_proj, block.v_proj, block.g_proj):
        if lin is not None:
            lin.kernel.set_value(lin.kernel[...] * scale)
    w = block.g_norm.weight[...]
    block.g_norm.weight.set_value(w + 0.3 * jax.random.normal(jax.random.key(seed + 7), w.shape))
    return block


def _rope(x, n):
    """Rotate the halves (x1, x2) of one head [K] by n·θ_j, θ_j = 10000^(-2j/K) (GPT-NeoX)."""
    K = x.shape[-1]
    theta = 10000.0 ** (-np.arange(0, K, 2) / K)
    c, s = np.cos(n * theta), np.sin(n * theta)
    x1, x2 = x[..., : K // 2], x[..., K // 2 :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def oracle(block, x, segment_ids=None):
    """Float64 retention: q_n, k_n rotated by their position n in the sequence,
    S_n = γ_h S_{n-1} + k_n v_nᵀ with γ_h = 1 - 2^(-5-h), o_n = K^-½ S_nᵀ q_n,
    RMSNorm_head(o)·w ⊙ swish(W_g x), W_o."""
    cfg = block.config
    x = f64(x)
    B, T, _ = x.shape
    H = cfg.num_heads
    Kh, Vh = cfg.key_dim // H, cfg.value_dim // H
    start = starts(segment_ids, B, T)
    q = linear(block.q_proj, x).reshape(B, T, H, Kh)
    k = linear(block.k_proj, x).reshape(B, T, H, Kh)
    v = linear(block.v_proj, x).reshape(B, T, H, Vh)
    gamma = 1.0 - 2.0 ** (-5.0 - np.arange(H))
    o = np.zeros((B, T, H, Vh))
    for b in range(B):
        S = np.zeros((H, Kh, Vh))
        for t in range(T):
            if start[b, t] == t:
                S = np.zeros((H, Kh, Vh))
            n = t - start[b, t]
            kr, qr = _rope(k[b, t], n), _rope(q[b, t], n)
            S = gamma[:, None, None] * S + kr[:, :, None] * v[b, t][:, None, :]
            o[b, t] = Kh**-0.5 * np.einsum("hk,hkv->hv", qr, S)
    o = rms_norm(o, cfg.norm_eps) * f64(block.g_norm.weight[...])
    if cfg.use_output_gate:
        o = o * silu(linear(block.g_proj, x).reshape(B, T, H, Vh))
    return linear(block.o_proj, o.reshape(B, T, cfg.value_dim))


@pytest.mark.parametrize(
    "backend,kw",
    [
        ("reference", {}),
        ("chunked", {"chunk_size": 8}),
        ("auto", {"num_heads": 2, "expand_k": 0.5, "expand_v": 1.0}),
        ("associative", {"use_output_gate": False}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    check_oracle(_block(backend=backend, **kw), oracle, (2, 24, M))


def test_packed_sequences_match_float64_oracle():
    """Each packed sequence restarts its state and its rotary positions."""
    check_oracle(_block(), oracle, (2, 16, M), PACKED_IDS)


def test_init_follows_fla():
    cfg = RetNetConfig(embed_dim=64)
    block = RetNetBlock(cfg, rngs=nnx.Rngs(0))
    assert (cfg.num_heads, cfg.key_dim, cfg.value_dim) == (8, 64, 128)
    assert block.q_proj.kernel[...].shape == (64, 64)
    assert block.v_proj.kernel[...].shape == (64, 128)
    assert block.g_proj.kernel[...].shape == (64, 128)
    assert block.o_proj.kernel[...].shape == (128, 64)
    np.testing.assert_array_equal(np.asarray(block.g_norm.weight[...]), np.ones(16))
    assert 0.017 < float(np.std(np.asarray(block.q_proj.kernel[...]))) < 0.023
    assert isinstance(block, Mixer)


def test_rotary_scores_depend_on_relative_position():
    """Shifting every position by the same offset leaves the output unchanged (RoPE is
    relative), which is why packed sequences may restart their positions."""
    q, k = jax.random.normal(jax.random.key(0), (2, 1, 6, 2, 8))
    p0, p5 = positions(None, 6), positions(None, 6, 5)
    s0 = jnp.einsum("bthk,bshk->bhts", rotary(q, p0), rotary(k, p0))
    s5 = jnp.einsum("bthk,bshk->bhts", rotary(q, p5), rotary(k, p5))
    close(s5, s0)
    ids = jnp.array([[3, 3, 3, 4, 4, 9]])
    np.testing.assert_array_equal(np.asarray(positions(ids, 6)), [[0, 1, 2, 0, 1, 0]])


def test_cache_layout():
    """The state [B, H, K, V] and the position of the next token (stepping it is checked by the
    contract: decoding equals the parallel output only if the rotary positions advance)."""
    cache = _block().init_cache(2)
    assert cache["state"].shape == (2, 4, 8, 16) and int(cache["pos"]) == 0


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"num_heads": 3}, "num_heads"),
        ({"num_heads": 0}, "num_heads"),
        ({"expand_k": 0.0}, "expand_k"),
        ({"expand_k": 0.75}, "expand_k"),  # head key width 3: odd, no rotation
        ({"expand_v": -2.0}, "expand_v"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"backend": "gpu"}, "backend"),
        ({"chunk_size": -4}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        RetNetConfig(**{"embed_dim": 32, "num_heads": 8, **kw})
