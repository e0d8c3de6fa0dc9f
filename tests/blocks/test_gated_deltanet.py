"""GatedDeltaNetBlock against a float64 NumPy oracle of the Gated DeltaNet layer (arXiv 2412.06464;
fla's fla/layers/gated_deltanet.py), plus decoding, fla's init and config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.gated_deltanet import GatedDeltaNetBlock, GatedDeltaNetConfig
from lcsm_jax.nn.mixer import Mixer

from .helpers import causal_conv, close, f64, linear, run, silu, starts

M = 32
SMALL = {"num_heads": 2, "head_dim": 8}


def _block(seed=0, scale=8.0, backend="reference", **kw):
    """A block with scaled-up projections, moderate decays (A in [0.05, 1]) and random conv / norm
    weights, so that every nonlinearity is exercised away from its init regime."""
    cfg = GatedDeltaNetConfig(embed_dim=M, backend=backend, **{**SMALL, **kw})
    block = GatedDeltaNetBlock(cfg, rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 100)
    for lin in (block.q_proj, block.k_proj, block.v_proj, block.a_proj, block.b_proj):
        lin.kernel.set_value(lin.kernel[...] * scale)
    if block.g_proj is not None:
        block.g_proj.kernel.set_value(block.g_proj.kernel[...] * scale)
    A = jax.random.uniform(jax.random.fold_in(key, 9), block.A_log[...].shape, minval=0.05)
    block.A_log.set_value(jnp.log(A))
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
    """Float64 Gated DeltaNet: q, k, v = SiLU(conv(W x)), q, k L2-normalised per head,
    β = sigmoid(W_b x), α = exp(-exp(A_log) softplus(W_a x + dt_bias)),
    S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ, o_t = K^-½ S_tᵀ q_t,
    RMSNorm(o)·w (⊙ swish(W_g x)), W_o; value head j reads q / k head j // (HV / H)."""
    cfg = block.config
    x = f64(x)
    B, T, _ = x.shape
    H, HV, Kh, Vh = cfg.num_heads, cfg.v_heads, cfg.head_k_dim, cfg.head_v_dim
    ids = np.zeros((B, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = starts(ids, B, T)
    q, k, v = (linear(p, x) for p in (block.q_proj, block.k_proj, block.v_proj))
    if cfg.use_short_conv:
        q, k, v = (causal_conv(c, a, start) for c, a in zip(block.convs, (q, k, v), strict=True))
    q, k, v = silu(q), silu(k), silu(v)
    q, k = (a.reshape(B, T, H, Kh) for a in (q, k))
    q, k = (a / np.sqrt(np.sum(a**2, -1, keepdims=True) + 1e-6) for a in (q, k))  # fla's l2norm
    v = v.reshape(B, T, HV, Vh)
    beta = 1 / (1 + np.exp(-linear(block.b_proj, x)))
    beta = 2 * beta if cfg.allow_neg_eigval else beta
    a = linear(block.a_proj, x) + f64(block.dt_bias[...])
    alpha = np.exp(-np.exp(f64(block.A_log[...])) * np.logaddexp(0.0, a))
    o = np.zeros((B, T, HV, Vh))
    I = np.eye(Kh)  # noqa: E741
    for b in range(B):
        S = np.zeros((HV, Kh, Vh))
        for t in range(T):
            if start[b, t] == t:
                S = np.zeros((HV, Kh, Vh))
            for j in range(HV):
                h = j // (HV // H)
                kt, bt = k[b, t, h], beta[b, t, j]
                S[j] = alpha[b, t, j] * (I - bt * np.outer(kt, kt)) @ S[j] + bt * np.outer(
                    kt, v[b, t, j]
                )
                o[b, t, j] = Kh**-0.5 * S[j].T @ q[b, t, h]
    o = o / np.sqrt(np.mean(o**2, axis=-1, keepdims=True) + cfg.norm_eps)
    o = o * f64(block.o_norm.weight[...])
    if cfg.use_gate:
        o = o * silu(linear(block.g_proj, x).reshape(B, T, HV, Vh))
    return linear(block.o_proj, o.reshape(B, T, cfg.value_dim))


def _x(B=2, T=20, seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, M))


IDS = np.array([[0] * 7 + [1] * 13, [5] * 11 + [6] * 9])


@pytest.mark.parametrize(
    "backend,kw,ids",
    [
        ("reference", {}, IDS),
        (
            "chunked",
            {
                "chunk_size": 8,
                "conv_bias": True,
                "num_v_heads": 4,
                "head_dim": 4,
                "use_gate": False,
            },
            IDS,
        ),
        (
            "chunked",
            {"chunk_size": 8, "use_short_conv": False, "allow_neg_eigval": True, "expand_v": 1.0},
            None,
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
    cfg = GatedDeltaNetConfig(embed_dim=64)
    # Shapes from an abstract block (no compiles); values from a wide one below.
    block = nnx.eval_shape(lambda: GatedDeltaNetBlock(cfg, rngs=nnx.Rngs(0)))
    # fla's 6 heads with num_heads · head_dim = 0.75 · hidden; value heads twice as wide.
    assert (cfg.num_heads, cfg.head_k_dim, cfg.head_v_dim) == (6, 8, 16)
    assert (cfg.key_dim, cfg.value_dim, cfg.use_gate) == (48, 96, True)
    assert GatedDeltaNetConfig(embed_dim=2048).head_k_dim == 256
    assert block.q_proj.kernel.shape == (64, 48) and block.q_proj.bias is None
    assert block.v_proj.kernel.shape == (64, 96)
    assert block.a_proj.kernel.shape == (64, 6) and block.a_proj.bias is None
    assert block.b_proj.kernel.shape == (64, 6) and block.b_proj.bias is None
    assert block.g_proj.kernel.shape == (64, 96) and block.o_proj.kernel.shape == (96, 64)
    assert [c.conv.weight.shape for c in block.convs] == [(4, 48), (4, 48), (4, 96)]
    assert all(c.bias is None and c.silu for c in block.convs)
    assert isinstance(block, Mixer)
    wide_cfg = GatedDeltaNetConfig(
        embed_dim=8, num_heads=1, head_dim=1, expand_v=1.0, num_v_heads=4096
    )
    wide = GatedDeltaNetBlock(wide_cfg, rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(np.asarray(wide.o_norm.weight[...]), 1.0)
    for w in (wide.o_proj.kernel[...], wide.convs[2].conv.weight[...]):
        assert 0.019 < float(np.std(np.asarray(w))) < 0.021
    A = np.exp(np.asarray(wide.A_log[...], np.float64))  # U(0, 16]
    assert np.all(np.isfinite(A)) and A.min() > 0 and A.max() <= 16 and 7.5 < A.mean() < 8.5
    dt = np.logaddexp(0.0, np.asarray(wide.dt_bias[...], np.float64))  # log-uniform [1e-3, 0.1]
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert abs(np.mean(np.log(dt)) - np.log(1e-2)) < 0.1


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"num_heads": 0}, "num_heads"),
        ({"num_heads": 5, "head_dim": None}, "head_dim"),
        ({"head_dim": 0}, "head_dim"),
        ({"num_v_heads": 3}, "num_v_heads"),
        ({"expand_v": 0.3}, "expand_v"),
        ({"expand_v": -1.0}, "expand_v"),
        ({"conv_size": 0}, "conv_size"),
        ({"A_init_range": (2.0, 1.0)}, "A_init_range"),
        ({"dt_min": 0.0}, "dt_min"),
        ({"dt_min": 0.5}, "dt_min"),
        ({"dt_init_floor": -1.0}, "dt_init_floor"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"backend": "associative"}, "backend"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        GatedDeltaNetConfig(**{"embed_dim": M, **SMALL, **kw})
