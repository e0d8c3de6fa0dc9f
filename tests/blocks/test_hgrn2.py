"""HGRN2Block against a float64 NumPy oracle of the HGRN2 recurrence (arXiv 2404.07904 §3;
hgru2-pytorch's models/modeling_hgrn2.py), plus decoding, causality, packing, jit/grad and config
checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.hgrn2 import HGRN2Block, HGRN2Config
from lcsm_jax.nn.mixer import Mixer

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
        for i, conv in enumerate(block.convs):
            cw = conv.conv.weight[...]
            conv.conv.weight.set_value(cw * 20 + jnp.zeros_like(cw).at[0].set(1.0))
            if conv.bias is not None:
                conv.bias.set_value(0.1 * jax.random.normal(jax.random.fold_in(key, i), (M,)))
    return block


@nnx.jit
def _run(block, x, segment_ids=None):
    """One compiled program per shape (eager dispatch compiles every primitive)."""
    return block(x, segment_ids=segment_ids)


def _np(a):
    return np.asarray(a, np.float64)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


_ACT = {"none": lambda x: x, "silu": lambda x: x * _sigmoid(x), "sigmoid": _sigmoid}


def _starts(ids):
    B, T = ids.shape
    start = np.zeros((B, T), int)
    for b in range(B):
        for t in range(1, T):
            start[b, t] = start[b, t - 1] if ids[b, t] == ids[b, t - 1] else t
    return start


def _linear(lin, a):
    return a @ _np(lin.kernel[...])


def _conv(conv, a, start):
    """Causal depthwise conv (w[i] multiplies a_{t-i}), restarting with each sequence."""
    w = _np(conv.conv.weight[...])
    y = np.zeros_like(a)
    for b in range(a.shape[0]):
        for t in range(a.shape[1]):
            for i in range(w.shape[0]):
                if t - i >= start[b, t]:
                    y[b, t] += w[i] * a[b, t - i]
    return y if conv.bias is None else y + _np(conv.bias[...])


def oracle(block, x, segment_ids=None):
    """Float64 HGRN2: λ = β + (1 - β) σ(W_f x), h_t = Diag(λ_t) h_{t-1} + (1 - λ_t) ⊗ i_t per
    head, y_t = q_tᵀ h_t with q = out_act(W_o x), i = in_act(W_i x); RMSNorm over M; W_out."""
    cfg = block.config
    x = _np(x)
    B, T, _ = x.shape
    H, E = cfg.num_heads, cfg.expand_ratio
    ids = np.zeros((B, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = _starts(ids)
    q, f, i = (_linear(p, x) for p in (block.q_proj, block.f_proj, block.i_proj))
    if cfg.use_short_conv:
        q, f, i = (_conv(c, a, start) for c, a in zip(block.convs, (q, f, i), strict=True))
    q = _ACT[cfg.output_gate_act](q).reshape(B, T, H, E)
    i = _ACT[cfg.input_act](i).reshape(B, T, H, E)
    lam = (cfg.lower_bound + (1 - cfg.lower_bound) * _sigmoid(f)).reshape(B, T, H, E)
    y = np.zeros((B, T, H, E))
    for b in range(B):
        h = np.zeros((H, E, E))
        for t in range(T):
            if start[b, t] == t:
                h = np.zeros((H, E, E))
            h = lam[b, t][:, :, None] * h + (1 - lam[b, t])[:, :, None] * i[b, t][:, None, :]
            y[b, t] = np.einsum("hd,hde->he", q[b, t], h)
    y = y.reshape(B, T, M)
    y = y / np.sqrt(np.mean(y**2, axis=-1, keepdims=True) + cfg.norm_eps)
    if cfg.elementwise_affine:
        y = y * _np(block.g_norm.weight[...])
    return _linear(block.o_proj, y)


def _x(B=2, T=24, seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, M))


def _close(y, ref, rtol=1e-5):
    ref = np.asarray(ref)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=rtol, atol=rtol * np.abs(ref).max())


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
    block = _block(backend=backend, **kw)
    x = _x()
    ref = oracle(block, x)
    assert np.abs(ref).max() > 0.1
    _close(_run(block, x), ref)


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
    block = _block(lower_bound=0.75, scale=40.0)
    x = _x(B=1, T=6)
    ref = oracle(block, x)
    _close(_run(block, x), ref)


def test_step_matches_parallel():
    block = _block(use_short_conv=True, conv_bias=True, lower_bound=0.3)
    x = _x(T=13)
    y = _run(block, x)
    cache = block.init_cache(2)
    step = nnx.jit(lambda m, xt, c: m.step(xt, c))
    ys = []
    for t in range(x.shape[1]):
        yt, cache = step(block, x[:, t], cache)
        ys.append(yt)
    _close(jnp.stack(ys, axis=1), y)
    assert cache["state"].shape == (2, 4, 8, 8)
    assert [c.shape for c in cache["conv"]] == [(2, 3, M)] * 3


def test_causal_by_gradient():
    block = _block(scale=4.0, use_short_conv=True)
    T = 10
    x = _x(B=1, T=T)
    jac = np.asarray(jax.jit(jax.jacrev(lambda x: block(x)[0]))(x)[:, :, 0])  # [T, M, T, M]
    future = np.broadcast_to(np.triu(np.ones((T, T), bool), k=1)[:, None, :, None], jac.shape)
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
    block = _block(scale=4.0, lower_bound=0.5)
    x = _x(T=12)
    ids = jnp.array([[0] * 5 + [1] * 7] * 2)
    y = _run(block, x, ids)
    assert bool(jnp.all(jnp.isfinite(y)))
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) ** 2)))(block, x)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads.f_proj.kernel[...]).max()) > 0


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


def test_wrong_config_class_raises():
    with pytest.raises(TypeError, match="HGRN2Config"):
        HGRN2Block(object(), rngs=nnx.Rngs(0))
