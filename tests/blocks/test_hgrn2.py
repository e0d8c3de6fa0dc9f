"""HGRN2Block against a float64 NumPy oracle of the HGRN2 recurrence (arXiv 2404.07904 §3;
hgru2-pytorch's models/modeling_hgrn2.py) for every backend, with saturated gates and with packed
sequences, its defaults, cache layout and config checks. The Mixer contract (decoding, causality,
packing, grad) is in test_contract.py."""

import jax
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.hgrn2 import HGRN2Block, HGRN2Config
from lcsm_jax.nn.mixer import Mixer
from tests.blocks.helpers import (
    PACKED_IDS,
    causal_conv,
    check_oracle,
    f64,
    linear,
    rms_norm,
    sharpen_convs,
    sigmoid,
    silu,
    starts,
)

M = 32


def _block(seed=0, scale=8.0, backend="reference", **kw):
    """A block with scaled-up projections (and conv weights / norm weight when present). The
    sequential reference backend compiles fastest; the oracle test covers the others."""
    cfg = HGRN2Config(**{"embed_dim": M, "expand_ratio": 8, "backend": backend, **kw})
    block = HGRN2Block(cfg, rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 11)
    for lin in (block.q_proj, block.f_proj, block.i_proj):
        lin.kernel.set_value(lin.kernel[...] * scale)
    if block.g_norm.weight is not None:
        w = block.g_norm.weight[...]
        block.g_norm.weight.set_value(w + 0.3 * jax.random.normal(key, w.shape))
    if block.convs is not None:
        sharpen_convs(block.convs, key)
    return block


_ACT = {"none": lambda x: x, "silu": silu, "sigmoid": sigmoid}


def oracle(block, x, segment_ids=None):
    """Float64 HGRN2: λ = β + (1 - β) σ(W_f x), h_t = Diag(λ_t) h_{t-1} + (1 - λ_t) ⊗ i_t per
    head, y_t = q_tᵀ h_t with q = out_act(W_o x), i = in_act(W_i x); RMSNorm over M; W_out."""
    cfg = block.config
    x = f64(x)
    B, T, _ = x.shape
    H, E = cfg.num_heads, cfg.expand_ratio
    start = starts(segment_ids, B, T)
    q, f, i = (linear(p, x) for p in (block.q_proj, block.f_proj, block.i_proj))
    if cfg.use_short_conv:
        q, f, i = (causal_conv(c, a, start) for c, a in zip(block.convs, (q, f, i), strict=True))
    q = _ACT[cfg.output_gate_act](q).reshape(B, T, H, E)
    i = _ACT[cfg.input_act](i).reshape(B, T, H, E)
    lam = (cfg.lower_bound + (1 - cfg.lower_bound) * sigmoid(f)).reshape(B, T, H, E)
    y = np.zeros((B, T, H, E))
    for b in range(B):
        h = np.zeros((H, E, E))
        for t in range(T):
            if start[b, t] == t:
                h = np.zeros((H, E, E))
            h = lam[b, t][:, :, None] * h + (1 - lam[b, t])[:, :, None] * i[b, t][:, None, :]
            y[b, t] = np.einsum("hd,hde->he", q[b, t], h)
    y = rms_norm(y.reshape(B, T, M), cfg.norm_eps)
    if cfg.elementwise_affine:
        y = y * f64(block.g_norm.weight[...])
    return linear(block.o_proj, y)


@pytest.mark.parametrize(
    "backend,kw",
    [
        ("reference", {}),
        ("chunked", {"chunk_size": 8, "lower_bound": 0.6}),
        ("auto", {"expand_ratio": 16, "elementwise_affine": True, "norm_eps": 1e-5}),
        ("associative", {"output_gate_act": "sigmoid", "input_act": "silu", "lower_bound": 0.9}),
        ("reference", {"use_short_conv": True, "conv_bias": True}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    check_oracle(_block(backend=backend, **kw), oracle, (2, 24, M))


def test_defaults_follow_official_code():
    cfg = HGRN2Config(embed_dim=256)
    block = HGRN2Block(cfg, rngs=nnx.Rngs(0))
    assert (cfg.expand_ratio, cfg.num_heads, cfg.lower_bound) == (128, 2, 0.0)
    assert (cfg.output_gate_act, cfg.input_act) == ("silu", "none")
    assert block.g_norm.weight is None and cfg.norm_eps == 1e-6
    for lin in (block.q_proj, block.f_proj, block.i_proj, block.o_proj):
        assert lin.kernel[...].shape == (256, 256) and lin.bias is None
    assert 0.018 < float(np.std(np.asarray(block.f_proj.kernel[...]))) < 0.022
    assert block.init_cache(3)["state"].shape == (3, 2, 128, 128)
    assert isinstance(block, Mixer)


def test_saturated_gates_with_lower_bound_match_oracle():
    """Forget logits far from 0 (λ near β or near 1): the log-space gate and k = (1-β)σ(-f)
    stay exact where 1 - exp(log λ) would not."""
    check_oracle(_block(lower_bound=0.75, scale=40.0), oracle, (1, 6, M))


def test_packed_sequences_match_float64_oracle():
    check_oracle(_block(use_short_conv=True), oracle, (2, 16, M), PACKED_IDS)


def test_cache_layout():
    """The state [B, H, E, E] and, with short convs, the last conv_size - 1 inputs of q, f, i."""
    cache = _block(use_short_conv=True).init_cache(2)
    assert cache["state"].shape == (2, 4, 8, 8)
    assert [c.shape for c in cache["conv"]] == [(2, 3, M)] * 3


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"expand_ratio": 0}, "expand_ratio"),
        ({"expand_ratio": 5}, "expand_ratio"),
        ({"lower_bound": 1.0}, "lower_bound"),
        ({"lower_bound": -0.1}, "lower_bound"),
        ({"output_gate_act": "gelu"}, "output_gate_act"),
        ({"input_act": "relu"}, "input_act"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"conv_size": 0}, "conv_size"),
        ({"backend": "cuda"}, "backend"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        HGRN2Config(**{"embed_dim": M, "expand_ratio": 8, **kw})
