"""GLABlock against a float64 NumPy oracle of the GLA layer (arXiv 2312.06635 §4; fla's
fla/layers/gla.py), plus decoding, causality, packing, jit/grad and config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.gla import GLABlock, GLAConfig
from lcsm_jax.nn.mixer import Mixer

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
        for i, conv in enumerate(block.convs):
            cw = conv.conv.weight[...]
            conv.conv.weight.set_value(cw * 20 + jnp.zeros_like(cw).at[0].set(1.0))
            if conv.bias is not None:
                conv.bias.set_value(
                    0.1 * jax.random.normal(jax.random.fold_in(key, 2 + i), cw[0].shape)
                )
    return block


@nnx.jit
def _run(block, x, segment_ids=None):
    """One compiled program per shape (eager dispatch compiles every primitive)."""
    return block(x, segment_ids=segment_ids)


def _np(a):
    return np.asarray(a, np.float64)


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _starts(ids):
    B, T = ids.shape
    start = np.zeros((B, T), int)
    for b in range(B):
        for t in range(1, T):
            start[b, t] = start[b, t - 1] if ids[b, t] == ids[b, t - 1] else t
    return start


def _linear(lin, a):
    out = a @ _np(lin.kernel[...])
    return out if lin.bias is None else out + _np(lin.bias[...])


def _conv(conv, a, start):
    """Causal depthwise conv (w[i] multiplies a_{t-i}), restarting with each sequence."""
    w = _np(conv.conv.weight[...])
    y = np.zeros_like(a)
    for b in range(a.shape[0]):
        for t in range(a.shape[1]):
            for i in range(w.shape[0]):
                if t - i >= start[b, t]:
                    y[b, t] += w[i] * a[b, t - i]
    if conv.bias is not None:
        y = y + _np(conv.bias[...])
    return _silu(y)


def oracle(block, x, segment_ids=None):
    """Float64 GLA: q, k, v (-> conv -> SiLU), α_t = sigmoid(W2 W1 x + b)^(1/16),
    S_t = diag(α_t) S_{t-1} + k_t v_tᵀ, o_t = K^-½ S_tᵀ q_t, RMSNorm(o)·w ⊙ swish(W_g x), W_o."""
    cfg = block.config
    x = _np(x)
    B, T, _ = x.shape
    H = cfg.num_heads
    ids = np.zeros((B, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = _starts(ids)
    q, k, v = (_linear(p, x) for p in (block.q_proj, block.k_proj, block.v_proj))
    if cfg.use_short_conv:
        q, k, v = (_conv(c, a, start) for c, a in zip(block.convs, (q, k, v), strict=True))
    g = _log_sigmoid(_linear(block.gk_up, _linear(block.gk_down, x))) / cfg.gate_logit_normalizer
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
    o = o / np.sqrt(np.mean(o**2, axis=-1, keepdims=True) + cfg.norm_eps)
    o = o * _np(block.g_norm.weight[...])
    if cfg.use_output_gate:
        o = o * _silu(_linear(block.g_proj, x).reshape(B, T, H, Vh))
    return _linear(block.o_proj, o.reshape(B, T, cfg.value_dim))


def _x(B=2, T=24, seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, M))


def _close(y, ref, rtol=1e-5):
    ref = np.asarray(ref)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=rtol, atol=rtol * np.abs(ref).max())


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
    block = _block(backend=backend, **kw)
    x = _x()
    ref = oracle(block, x)
    assert np.abs(ref).max() > 0.1
    _close(_run(block, x), ref)


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


def test_step_matches_parallel():
    block = _block(use_short_conv=True, conv_bias=True)
    x = _x(T=13)
    y = _run(block, x)
    cache = block.init_cache(2)
    step = nnx.jit(lambda m, xt, c: m.step(xt, c))
    ys = []
    for t in range(x.shape[1]):
        yt, cache = step(block, x[:, t], cache)
        ys.append(yt)
    _close(jnp.stack(ys, axis=1), y)
    assert cache["state"].shape == (2, 4, 4, 8)
    assert [c.shape for c in cache["conv"]] == [(2, 3, 16), (2, 3, 16), (2, 3, 32)]


def test_causal_by_gradient():
    block = _block(scale=4.0, use_short_conv=True)
    T = 10
    x = _x(B=1, T=T)
    jac = np.asarray(jax.jit(jax.jacrev(lambda x: block(x)[0]))(x)[:, :, 0])  # [T, M, T, M]
    future = np.triu(np.ones((T, T), bool), k=1)[:, None, :, None]  # s > t
    future = np.broadcast_to(future, jac.shape)
    assert np.all(jac[future] == 0)
    assert np.abs(jac[~future]).max() > 0


def test_segment_ids_keep_packed_sequences_apart():
    block = _block(use_short_conv=True)
    x = _x(B=2, T=16)
    ids = jnp.array([[0] * 7 + [1] * 9, [5] * 3 + [6] * 13])
    y = _run(block, x, ids)
    for b, cut in ((0, 7), (1, 3)):
        _close(y[b : b + 1, :cut], _run(block, x[b : b + 1, :cut]))
        _close(y[b : b + 1, cut:], _run(block, x[b : b + 1, cut:]))
    _close(y, oracle(block, x, ids))


def test_jit_and_grad_are_finite():
    block = _block(scale=4.0, use_short_conv=True)
    x = _x(T=12)
    ids = jnp.array([[0] * 5 + [1] * 7] * 2)
    y = nnx.jit(lambda m, x, ids: m(x, segment_ids=ids))(block, x, ids)
    assert bool(jnp.all(jnp.isfinite(y)))
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) ** 2)))(block, x)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads.gk_up.kernel[...]).max()) > 0


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


def test_wrong_config_class_raises():
    with pytest.raises(TypeError, match="GLAConfig"):
        GLABlock(object(), rngs=nnx.Rngs(0))
