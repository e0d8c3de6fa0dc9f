"""Mamba2Block against a float64 NumPy oracle of the paper's equations (arXiv 2405.21060 §7;
mamba2.py, layernorm_gated.rms_norm_ref) for every backend and with packed sequences, its init,
cache layout and config checks. The Mixer contract (decoding, causality, packing, grad) is in
test_contract.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.mamba2 import Mamba2Block, Mamba2Config
from lcsm_jax.nn.mixer import Mixer
from tests.blocks.helpers import (
    causal_conv,
    check_oracle,
    f64,
    linear,
    rms_norm,
    silu,
    softplus,
    starts,
)

M = 16
SMALL = {"headdim": 8, "d_state": 8}  # d_inner 32: 4 heads


def _block(seed=0, scale=20.0, **kw):
    """A block whose projections are scaled up so that every nonlinearity is exercised (the
    sequential reference backend unless told: it compiles fastest on CPU)."""
    kw = {"backend": "reference", **SMALL, **kw}
    block = Mamba2Block(Mamba2Config(embed_dim=M, **kw), rngs=nnx.Rngs(seed))
    for lin in (block.in_proj, block.out_proj):
        lin.kernel[...] = lin.kernel[...] * scale
    # Non-trivial norm weights and skips, so that the oracle checks where they enter.
    block.norm_weight[...] = 1.0 + 0.5 * jax.random.normal(
        jax.random.key(7), (block.config.d_inner,)
    )
    block.D[...] = jnp.linspace(0.5, 1.5, block.config.num_heads)
    return block


def oracle(block, u, segment_ids=None):
    """Float64 Mamba-2: in_proj -> [z, xBC, dt] -> causal depthwise conv + bias on xBC -> SiLU ->
    per head h_t = exp(Δ A_h) h + Δ x_t B_tᵀ, y = h C_t + D_h x_t (Δ = softplus(dt + dt_bias),
    head h reads group h // (H / G)) -> RMSNorm over groups of y ⊙ silu(z), × weight -> out_proj."""
    cfg = block.config
    u = f64(u)
    Bsz, T, _ = u.shape
    start = starts(segment_ids, Bsz, T)
    Di, H, P, G, N = cfg.d_inner, cfg.num_heads, cfg.headdim, cfg.ngroups, cfg.d_state
    proj = linear(block.in_proj, u)
    z, xbc, dt = proj[..., :Di], proj[..., Di : Di + cfg.conv_dim], proj[..., Di + cfg.conv_dim :]
    xbc = silu(causal_conv(block.conv1d, xbc, start))
    x = xbc[..., :Di].reshape(Bsz, T, H, P)
    Bm = xbc[..., Di : Di + G * N].reshape(Bsz, T, G, N)
    Cm = xbc[..., Di + G * N :].reshape(Bsz, T, G, N)
    delta = softplus(dt + f64(block.dt_bias[...]))
    A = -np.exp(f64(block.A_log[...]))
    Dskip = f64(block.D[...])
    y = np.zeros_like(x)
    for b in range(Bsz):
        for h in range(H):
            g = h // (H // G)
            state = np.zeros((P, N))
            for t in range(T):
                if start[b, t] == t:
                    state = np.zeros((P, N))
                d = delta[b, t, h]
                state = np.exp(d * A[h]) * state + d * np.outer(x[b, t, h], Bm[b, t, g])
                y[b, t, h] = state @ Cm[b, t, g] + Dskip[h] * x[b, t, h]
    gated = (y.reshape(Bsz, T, Di) * silu(z)).reshape(Bsz, T, G, Di // G)
    normed = rms_norm(gated, cfg.norm_eps)
    out = normed.reshape(Bsz, T, Di) * f64(block.norm_weight[...])
    return linear(block.out_proj, out)


@pytest.mark.parametrize(
    "backend,kw",
    [
        ("reference", {}),
        ("auto", {"ngroups": 2, "bias": True}),
        ("chunked", {"chunk_size": 8, "headdim": 16, "conv_bias": False, "d_conv": 3}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    check_oracle(_block(backend=backend, **kw), oracle, (2, 24, M))


def test_init_follows_official_code():
    cfg = Mamba2Config(embed_dim=64)  # the defaults: d_inner 128, headdim 64, so 2 heads
    block = Mamba2Block(cfg, rngs=nnx.Rngs(3))
    assert (cfg.num_heads, cfg.d_state, cfg.ngroups, cfg.conv_dim) == (2, 64, 1, 128 + 128)
    A = np.exp(np.asarray(block.A_log[...]))
    assert A.shape == (2,) and A.min() >= 1.0 and A.max() <= 16.0
    np.testing.assert_array_equal(np.asarray(block.D[...]), np.ones(2))
    np.testing.assert_array_equal(np.asarray(block.norm_weight[...]), np.ones(128))
    dt = np.asarray(jax.nn.softplus(block.dt_bias[...]))
    assert dt.min() >= 1e-4 * 0.999 and dt.max() <= 0.1 * 1.001
    bound = cfg.d_conv**-0.5
    assert np.abs(np.asarray(block.conv1d.conv.weight[...])).max() <= bound
    assert np.abs(np.asarray(block.conv1d.bias[...])).max() <= bound
    assert block.in_proj.kernel[...].shape == (64, 128 + 256 + 2)
    assert isinstance(block, Mixer)


def test_packed_sequences_match_float64_oracle():
    """Up to three sequences a row: the conv window and the scan state restart with each."""
    ids = np.array([[0] * 7 + [1] * 9, [5] * 3 + [6] * 4 + [7] * 9])
    check_oracle(_block(), oracle, (2, 16, M), ids)


def test_cache_layout():
    """The scan state [B, H, headdim, d_state] and the last d_conv - 1 inputs of the conv over
    x, B and C (ngroups copies of B and C)."""
    cache = _block(ngroups=2).init_cache(2)
    assert cache["ssm"].shape == (2, 4, 8, 8) and cache["conv"].shape == (2, 3, 32 + 32)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"d_state": 0}, "d_state"),
        ({"headdim": 12}, "headdim"),  # 12 does not divide d_inner = 32
        ({"ngroups": 3}, "ngroups"),  # 3 does not divide the 4 heads
        ({"A_init_range": (0.0, 16.0)}, "A_init_range"),
        ({"dt_min": 0.5}, "dt_min"),
        ({"dt_init_floor": -1.0}, "dt_init_floor"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        Mamba2Config(**{"embed_dim": M, **SMALL, **kw})


def test_default_headdim_needs_a_wide_enough_block():
    with pytest.raises(ValueError, match="headdim"):
        Mamba2Config(embed_dim=16)  # d_inner 32 < headdim 64: lower headdim for small widths
