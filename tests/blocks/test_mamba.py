"""MambaBlock against a float64 NumPy oracle of the paper's equations (arXiv 2312.00752 §3, Alg. 2;
mamba_simple.py), plus decoding, causality, packing, jit/grad and config checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.mamba import MambaBlock, MambaConfig
from lcsm_jax.nn.mixer import Mixer

M = 16


def _block(seed=0, scale=20.0, **kw):
    """A block whose projections are scaled up so that every nonlinearity is exercised (the
    sequential reference backend unless told: it compiles fastest on CPU)."""
    kw.setdefault("backend", "reference")
    block = MambaBlock(MambaConfig(embed_dim=M, **kw), rngs=nnx.Rngs(seed))
    for lin in (block.in_proj, block.x_proj, block.out_proj):
        lin.kernel[...] = lin.kernel[...] * scale
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
    """Float64 Mamba: in_proj -> causal depthwise conv + bias -> SiLU -> x_proj -> Δ, B, C ->
    selective scan h_t = exp(Δ A) h + Δ x B, y = h·C + D x -> ⊙ silu(z) -> out_proj."""
    cfg = block.config
    u = _np(u)
    Bsz, T, _ = u.shape
    ids = np.zeros((Bsz, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = _starts(ids)
    xz = u @ _np(block.in_proj.kernel[...])
    if block.in_proj.bias is not None:
        xz = xz + _np(block.in_proj.bias[...])
    Di = cfg.d_inner
    x, z = xz[..., :Di], xz[..., Di:]
    w = _np(block.conv1d.conv.weight[...])  # w[i] multiplies x_{t-i}
    xc = np.zeros_like(x)
    if block.conv1d.bias is not None:
        xc = xc + _np(block.conv1d.bias[...])
    for b in range(Bsz):
        for t in range(T):
            for i in range(cfg.d_conv):
                if t - i >= start[b, t]:
                    xc[b, t] += w[i] * x[b, t - i]
    x = _silu(xc)
    R, N = cfg.rank, cfg.d_state
    dbl = x @ _np(block.x_proj.kernel[...])
    dt_low, Bm, Cm = dbl[..., :R], dbl[..., R : R + N], dbl[..., R + N :]
    delta = _softplus(dt_low @ _np(block.dt_proj.kernel[...]) + _np(block.dt_proj.bias[...]))
    A = -np.exp(_np(block.A_log[...]))
    Dskip = _np(block.D[...])
    y = np.zeros_like(x)
    for b in range(Bsz):
        h = np.zeros((Di, N))
        for t in range(T):
            if start[b, t] == t:
                h = np.zeros((Di, N))
            h = np.exp(delta[b, t][:, None] * A) * h + (delta[b, t] * x[b, t])[:, None] * Bm[b, t]
            y[b, t] = h @ Cm[b, t] + Dskip * x[b, t]
    y = y * _silu(z)
    out = y @ _np(block.out_proj.kernel[...])
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
        ("auto", {"dt_rank": 4, "bias": True}),
        ("chunked", {"chunk_size": 8, "d_state": 8, "conv_bias": False, "d_conv": 3}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    block = _block(backend=backend, **kw)
    x = _x()
    ref = oracle(block, x)
    assert np.abs(ref).max() > 0.1  # the check is not on a vanishing signal
    _close(_apply(block, x), ref)


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


def test_step_matches_parallel():
    block = _block()
    x = _x(T=13)
    y = _apply(block, x)
    cache = block.init_cache(2)
    step = nnx.jit(lambda m, xt, c: m.step(xt, c))
    ys = []
    for t in range(x.shape[1]):
        yt, cache = step(block, x[:, t], cache)
        ys.append(yt)
    _close(jnp.stack(ys, axis=1), y)
    assert cache["ssm"].shape == (2, 2 * M, 16) and cache["conv"].shape == (2, 3, 2 * M)


def test_causal_by_gradient():
    block = _block(scale=5.0)
    T = 10
    x = _x(B=1, T=T)
    jac = nnx.jit(lambda m, x: jax.jacrev(lambda x: m(x)[0])(x)[:, :, 0])(block, x)  # [T,M,T,M]
    future = np.triu(np.ones((T, T), bool), k=1)  # s > t
    assert np.all(np.asarray(jac)[future[:, None, :, None].repeat(M, 1).repeat(M, 3)] == 0)
    assert np.abs(np.asarray(jac)[~future[:, None, :, None].repeat(M, 1).repeat(M, 3)]).max() > 0


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
    y = _apply(block, x, ids)
    assert bool(jnp.all(jnp.isfinite(y)))
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) ** 2)))(block, x)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads.A_log[...]).max()) > 0


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


def test_wrong_config_class_raises():
    with pytest.raises(TypeError, match="MambaConfig"):
        MambaBlock(object(), rngs=nnx.Rngs(0))
