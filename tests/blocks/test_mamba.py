"""MambaBlock against a float64 NumPy oracle of the paper's equations (arXiv 2312.00752 §3, Alg. 2;
mamba_simple.py) for every backend and with packed sequences, its init, cache layout and config
checks. The Mixer contract (decoding, causality, packing, grad) is in test_contract.py."""

import math

import jax
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.mamba import MambaBlock, MambaConfig
from lcsm_jax.nn.mixer import Mixer
from tests.blocks.helpers import (
    causal_conv,
    check_oracle,
    f64,
    linear,
    silu,
    softplus,
    starts,
)

M = 16


def _block(seed=0, scale=20.0, **kw):
    """A block whose projections are scaled up so that every nonlinearity is exercised (the
    sequential reference backend unless told: it compiles fastest on CPU)."""
    kw.setdefault("backend", "reference")
    block = MambaBlock(MambaConfig(embed_dim=M, **kw), rngs=nnx.Rngs(seed))
    for lin in (block.in_proj, block.x_proj, block.out_proj):
        lin.kernel[...] = lin.kernel[...] * scale
    return block


def oracle(block, u, segment_ids=None):
    """Float64 Mamba: in_proj -> causal depthwise conv + bias -> SiLU -> x_proj -> Δ, B, C ->
    selective scan h_t = exp(Δ A) h + Δ x B, y = h·C + D x -> ⊙ silu(z) -> out_proj."""
    cfg = block.config
    u = f64(u)
    Bsz, T, _ = u.shape
    start = starts(segment_ids, Bsz, T)
    xz = linear(block.in_proj, u)
    Di = cfg.d_inner
    x, z = xz[..., :Di], xz[..., Di:]
    x = silu(causal_conv(block.conv1d, x, start))
    R, N = cfg.rank, cfg.d_state
    dbl = x @ f64(block.x_proj.kernel[...])
    dt_low, Bm, Cm = dbl[..., :R], dbl[..., R : R + N], dbl[..., R + N :]
    delta = softplus(dt_low @ f64(block.dt_proj.kernel[...]) + f64(block.dt_proj.bias[...]))
    A = -np.exp(f64(block.A_log[...]))
    Dskip = f64(block.D[...])
    y = np.zeros_like(x)
    for b in range(Bsz):
        h = np.zeros((Di, N))
        for t in range(T):
            if start[b, t] == t:
                h = np.zeros((Di, N))
            h = np.exp(delta[b, t][:, None] * A) * h + (delta[b, t] * x[b, t])[:, None] * Bm[b, t]
            y[b, t] = h @ Cm[b, t] + Dskip * x[b, t]
    y = y * silu(z)
    return linear(block.out_proj, y)


@pytest.mark.parametrize(
    "backend,kw",
    [
        ("reference", {}),
        ("auto", {"dt_rank": 4, "bias": True}),
        ("chunked", {"chunk_size": 8, "d_state": 8, "conv_bias": False, "d_conv": 3}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    check_oracle(_block(backend=backend, **kw), oracle, (2, 24, M))


def test_init_follows_official_code():
    cfg = MambaConfig(embed_dim=M)
    block = MambaBlock(cfg, rngs=nnx.Rngs(3))
    assert cfg.rank == math.ceil(M / 16) and cfg.d_inner == 2 * M
    np.testing.assert_allclose(
        np.exp(np.asarray(block.A_log[...])), np.tile(np.arange(1, 17), (2 * M, 1)), rtol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(block.D[...]), np.ones(2 * M))
    dt = np.asarray(jax.nn.softplus(block.dt_proj.bias[...]))
    assert dt.min() >= 1e-4 * 0.999 and dt.max() <= 0.1 * 1.001
    assert np.abs(np.asarray(block.dt_proj.kernel[...])).max() <= cfg.rank**-0.5
    bound = cfg.d_conv**-0.5
    assert np.abs(np.asarray(block.conv1d.conv.weight[...])).max() <= bound
    assert np.abs(np.asarray(block.conv1d.bias[...])).max() <= bound
    assert block.in_proj.kernel[...].shape == (M, 4 * M)
    assert block.x_proj.kernel[...].shape == (2 * M, cfg.rank + 32)
    assert isinstance(block, Mixer)
    constant = MambaBlock(MambaConfig(embed_dim=M, dt_init="constant"), rngs=nnx.Rngs(0))
    np.testing.assert_allclose(np.asarray(constant.dt_proj.kernel[...]), cfg.rank**-0.5)


def test_packed_sequences_match_float64_oracle():
    """Up to three sequences a row: the conv window and the scan state restart with each."""
    ids = np.array([[0] * 7 + [1] * 9, [5] * 3 + [6] * 4 + [7] * 9])
    check_oracle(_block(), oracle, (2, 16, M), ids)


def test_cache_layout():
    """The scan state [B, d_inner, d_state] and the last d_conv - 1 conv inputs."""
    cache = MambaBlock(MambaConfig(embed_dim=M), rngs=nnx.Rngs(0)).init_cache(2)
    assert cache["ssm"].shape == (2, 2 * M, 16) and cache["conv"].shape == (2, 3, 2 * M)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"d_state": -1}, "d_state"),
        ({"d_conv": 0}, "d_conv"),
        ({"expand": 1.5}, "expand"),
        ({"dt_rank": 0}, "dt_rank"),
        ({"dt_min": 0.2}, "dt_min"),
        ({"dt_init": "normal"}, "dt_init"),
        ({"dt_init_floor": 0.0}, "dt_init_floor"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        MambaConfig(**{"embed_dim": M, **kw})
