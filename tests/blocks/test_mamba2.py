"""Mamba2Block against a float64 NumPy oracle of the paper's equations (arXiv 2405.21060 §7;
mamba2.py, layernorm_gated.rms_norm_ref), plus decoding, causality, packing, jit/grad and config
checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.mamba2 import Mamba2Block, Mamba2Config
from lcsm_jax.nn.mixer import Mixer

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


def _np(a):
    return np.asarray(a, np.float64)


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def _starts(ids):
    """Index of each token's sequence start, per row."""
    B, T = ids.shape
    start = np.zeros((B, T), int)
    for b in range(B):
        for t in range(1, T):
            start[b, t] = start[b, t - 1] if ids[b, t] == ids[b, t - 1] else t
    return start


def oracle(block, u, segment_ids=None):
    """Float64 Mamba-2: in_proj -> [z, xBC, dt] -> causal depthwise conv + bias on xBC -> SiLU ->
    per head h_t = exp(Δ A_h) h + Δ x_t B_tᵀ, y = h C_t + D_h x_t (Δ = softplus(dt + dt_bias),
    head h reads group h // (H / G)) -> RMSNorm over groups of y ⊙ silu(z), × weight -> out_proj."""
    cfg = block.config
    u = _np(u)
    Bsz, T, _ = u.shape
    ids = np.zeros((Bsz, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = _starts(ids)
    Di, H, P, G, N = cfg.d_inner, cfg.num_heads, cfg.headdim, cfg.ngroups, cfg.d_state
    proj = u @ _np(block.in_proj.kernel[...])
    if block.in_proj.bias is not None:
        proj = proj + _np(block.in_proj.bias[...])
    z, xbc, dt = proj[..., :Di], proj[..., Di : Di + cfg.conv_dim], proj[..., Di + cfg.conv_dim :]
    w = _np(block.conv1d.conv.weight[...])  # w[i] multiplies xbc_{t-i}
    conv = np.zeros_like(xbc)
    if block.conv1d.bias is not None:
        conv = conv + _np(block.conv1d.bias[...])
    for b in range(Bsz):
        for t in range(T):
            for i in range(cfg.d_conv):
                if t - i >= start[b, t]:
                    conv[b, t] += w[i] * xbc[b, t - i]
    xbc = _silu(conv)
    x = xbc[..., :Di].reshape(Bsz, T, H, P)
    Bm = xbc[..., Di : Di + G * N].reshape(Bsz, T, G, N)
    Cm = xbc[..., Di + G * N :].reshape(Bsz, T, G, N)
    delta = _softplus(dt + _np(block.dt_bias[...]))
    A = -np.exp(_np(block.A_log[...]))
    Dskip = _np(block.D[...])
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
    gated = (y.reshape(Bsz, T, Di) * _silu(z)).reshape(Bsz, T, G, Di // G)
    normed = gated / np.sqrt(np.mean(gated**2, axis=-1, keepdims=True) + cfg.norm_eps)
    out = normed.reshape(Bsz, T, Di) * _np(block.norm_weight[...])
    out = out @ _np(block.out_proj.kernel[...])
    if block.out_proj.bias is not None:
        out = out + _np(block.out_proj.bias[...])
    return out


@nnx.jit
def _apply(block, x, segment_ids=None):
    return block(x, segment_ids=segment_ids)


def _x(B=2, T=24, seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, M))


def _close(y, ref, rtol=1e-5):
    ref = np.asarray(ref)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=rtol, atol=rtol * np.abs(ref).max())


@pytest.mark.parametrize(
    "backend,kw",
    [
        ("reference", {}),
        ("auto", {"ngroups": 2, "bias": True}),
        ("chunked", {"chunk_size": 8, "headdim": 16, "conv_bias": False, "d_conv": 3}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    block = _block(backend=backend, **kw)
    x = _x()
    ref = oracle(block, x)
    assert np.abs(ref).max() > 0.1  # the check is not on a vanishing signal
    _close(_apply(block, x), ref)


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


def test_step_matches_parallel():
    block = _block(ngroups=2)
    x = _x(T=13)
    y = _apply(block, x)
    cache = block.init_cache(2)
    step = nnx.jit(lambda m, xt, c: m.step(xt, c))
    ys = []
    for t in range(x.shape[1]):
        yt, cache = step(block, x[:, t], cache)
        ys.append(yt)
    _close(jnp.stack(ys, axis=1), y)
    assert cache["ssm"].shape == (2, 4, 8, 8) and cache["conv"].shape == (2, 3, 32 + 32)


def test_causal_by_gradient():
    block = _block(scale=5.0)
    T = 10
    x = _x(B=1, T=T)
    jac = nnx.jit(lambda m, x: jax.jacrev(lambda x: m(x)[0])(x)[:, :, 0])(block, x)  # [T,M,T,M]
    future = np.broadcast_to(np.triu(np.ones((T, T), bool), k=1)[:, None, :, None], jac.shape)
    assert np.all(np.asarray(jac)[future] == 0)
    assert np.abs(np.asarray(jac)[~future]).max() > 0


def test_segment_ids_keep_packed_sequences_apart():
    block = _block()
    x = _x(B=2, T=16)
    halves = jnp.array([[0] * 8 + [1] * 8, [5] * 8 + [6] * 8])
    y = _apply(block, x, halves)
    _close(y[:, :8], _apply(block, x[:, :8]))
    _close(y[:, 8:], _apply(block, x[:, 8:]))
    uneven = jnp.array([[0] * 7 + [1] * 9, [5] * 3 + [6] * 4 + [7] * 9])
    _close(_apply(block, x, uneven), oracle(block, x, uneven))


def test_jit_and_grad_are_finite():
    block = _block(scale=5.0)
    x = _x(T=12)
    ids = jnp.array([[0] * 5 + [1] * 7] * 2)
    assert bool(jnp.all(jnp.isfinite(_apply(block, x, ids))))
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) ** 2)))(block, x)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads.A_log[...]).max()) > 0


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
    with pytest.raises(TypeError, match="Mamba2Config"):
        Mamba2Block(Mamba2Config(embed_dim=16, headdim=8).__dict__, rngs=nnx.Rngs(0))
