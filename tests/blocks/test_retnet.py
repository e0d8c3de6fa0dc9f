"""RetNetBlock against a float64 NumPy oracle of multi-scale retention (arXiv 2307.08621 §2;
fla's fla/layers/multiscale_retention.py), plus decoding, causality, packing, jit/grad and config
checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.retnet import RetNetBlock, RetNetConfig, positions, rotary
from lcsm_jax.nn.mixer import Mixer

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


@nnx.jit
def _run(block, x, segment_ids=None):
    """One compiled program per shape (eager dispatch compiles every primitive)."""
    return block(x, segment_ids=segment_ids)


def _np(a):
    return np.asarray(a, np.float64)


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _starts(ids):
    B, T = ids.shape
    start = np.zeros((B, T), int)
    for b in range(B):
        for t in range(1, T):
            start[b, t] = start[b, t - 1] if ids[b, t] == ids[b, t - 1] else t
    return start


def _linear(lin, a):
    return a @ _np(lin.kernel[...])


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
    x = _np(x)
    B, T, _ = x.shape
    H = cfg.num_heads
    Kh, Vh = cfg.key_dim // H, cfg.value_dim // H
    ids = np.zeros((B, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = _starts(ids)
    q = _linear(block.q_proj, x).reshape(B, T, H, Kh)
    k = _linear(block.k_proj, x).reshape(B, T, H, Kh)
    v = _linear(block.v_proj, x).reshape(B, T, H, Vh)
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
        ("chunked", {"chunk_size": 8}),
        ("auto", {"num_heads": 2, "expand_k": 0.5, "expand_v": 1.0}),
        ("associative", {"use_output_gate": False}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    block = _block(backend=backend, **kw)
    x = _x()
    ref = oracle(block, x)
    assert np.abs(ref).max() > 0.1
    _close(_run(block, x), ref)


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
    _close(s5, s0)
    ids = jnp.array([[3, 3, 3, 4, 4, 9]])
    np.testing.assert_array_equal(np.asarray(positions(ids, 6)), [[0, 1, 2, 0, 1, 0]])


def test_step_matches_parallel():
    block = _block()
    x = _x(T=13)
    y = _run(block, x)
    cache = block.init_cache(2)
    step = nnx.jit(lambda m, xt, c: m.step(xt, c))
    ys = []
    for t in range(x.shape[1]):
        yt, cache = step(block, x[:, t], cache)
        ys.append(yt)
    _close(jnp.stack(ys, axis=1), y)
    assert cache["state"].shape == (2, 4, 8, 16) and int(cache["pos"]) == 13


def test_causal_by_gradient():
    block = _block(scale=4.0)
    T = 10
    x = _x(B=1, T=T)
    jac = np.asarray(jax.jit(jax.jacrev(lambda x: block(x)[0]))(x)[:, :, 0])  # [T, M, T, M]
    future = np.broadcast_to(np.triu(np.ones((T, T), bool), k=1)[:, None, :, None], jac.shape)
    assert np.all(jac[future] == 0)
    assert np.abs(jac[~future]).max() > 0


def test_segment_ids_keep_packed_sequences_apart():
    block = _block()
    x = _x(B=2, T=16)
    ids = jnp.array([[0] * 7 + [1] * 9, [5] * 3 + [6] * 13])
    y = _run(block, x, ids)
    for b, cut in ((0, 7), (1, 3)):
        _close(y[b : b + 1, :cut], _run(block, x[b : b + 1, :cut]))
        _close(y[b : b + 1, cut:], _run(block, x[b : b + 1, cut:]))
    _close(y, oracle(block, x, ids))


def test_jit_and_grad_are_finite():
    block = _block(scale=4.0)
    x = _x(T=12)
    ids = jnp.array([[0] * 5 + [1] * 7] * 2)
    y = _run(block, x, ids)
    assert bool(jnp.all(jnp.isfinite(y)))
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) ** 2)))(block, x)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads.k_proj.kernel[...]).max()) > 0


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


def test_wrong_config_class_raises():
    with pytest.raises(TypeError, match="RetNetConfig"):
        RetNetBlock(object(), rngs=nnx.Rngs(0))
