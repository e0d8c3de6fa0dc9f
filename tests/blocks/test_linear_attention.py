"""LinearAttentionBlock against a float64 NumPy oracle of linear attention (arXiv 2006.16236
§3.2-3.4; fla's fla/layers/linear_attn.py), plus decoding, causality, packing, jit/grad and
config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.linear_attention import LinearAttentionBlock, LinearAttentionConfig
from lcsm_jax.nn.mixer import Mixer

M = 32


def _block(seed=0, scale=8.0, backend="reference", **kw):
    """A block with scaled-up projections, a random norm weight and, for hedgehog, maps moved
    off the identity. The sequential reference backend compiles fastest; the oracle test covers
    the others."""
    cfg = LinearAttentionConfig(**{"embed_dim": M, "num_heads": 4, "backend": backend, **kw})
    block = LinearAttentionBlock(cfg, rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 5)
    for lin in (block.q_proj, block.k_proj, block.v_proj):
        lin.kernel.set_value(lin.kernel[...] * scale)
    if block.norm is not None:
        w = block.norm.weight[...]
        block.norm.weight.set_value(w + 0.3 * jax.random.normal(key, w.shape))
    for i, fmap in enumerate((block.q_map, block.k_map)):
        if fmap is not None:
            k1, k2 = jax.random.split(jax.random.fold_in(key, i))
            W = fmap.layer.kernel[...]
            fmap.layer.kernel.set_value(W + 0.3 * jax.random.normal(k1, W.shape))
            fmap.layer.bias.set_value(0.3 * jax.random.normal(k2, W.shape[:1]))
    return block


@nnx.jit
def _run(block, x, segment_ids=None):
    """One compiled program per shape (eager dispatch compiles every primitive)."""
    return block(x, segment_ids=segment_ids)


def _np(a):
    return np.asarray(a, np.float64)


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


def _phi(block, fmap, x):
    name = block.config.feature_map
    if name == "elu":
        return np.where(x > 0, x + 1.0, np.exp(x))
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "identity":
        return x
    y = 2.0 * _linear(fmap.layer, x)
    e = np.exp(np.concatenate([y, -y], axis=-1))
    return e / e.sum(axis=-1, keepdims=True)


def oracle(block, x, segment_ids=None):
    """Float64 linear attention: o_t = K^-½ φ(q_t)ᵀ Σ_{i<=t} φ(k_i) v_iᵀ, optionally divided by
    K^-½ φ(q_t)·Σ φ(k_i) (+1e-10), per-head RMSNorm·w, W_o."""
    cfg = block.config
    x = _np(x)
    B, T, _ = x.shape
    H = cfg.num_heads
    Kh, Vh = cfg.key_dim // H, cfg.value_dim // H
    ids = np.zeros((B, T), int) if segment_ids is None else np.asarray(segment_ids)
    start = _starts(ids)
    q = _phi(block, block.q_map, _linear(block.q_proj, x).reshape(B, T, H, Kh))
    k = _phi(block, block.k_map, _linear(block.k_proj, x).reshape(B, T, H, Kh))
    v = _linear(block.v_proj, x).reshape(B, T, H, Vh)
    K = q.shape[-1]
    o = np.zeros((B, T, H, Vh))
    for b in range(B):
        for t in range(T):
            s = start[b, t]
            S = np.einsum("jhk,jhv->hkv", k[b, s : t + 1], v[b, s : t + 1])
            o[b, t] = K**-0.5 * np.einsum("hk,hkv->hv", q[b, t], S)
            if cfg.normalize:
                z = K**-0.5 * np.einsum("hk,hk->h", q[b, t], k[b, s : t + 1].sum(0))
                o[b, t] = o[b, t] / (z[:, None] + 1e-10)
    if cfg.output_norm == "rmsnorm":
        o = o / np.sqrt(np.mean(o**2, axis=-1, keepdims=True) + cfg.norm_eps)
        o = o * _np(block.norm.weight[...])
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
        ("chunked", {"chunk_size": 8, "normalize": True}),
        ("auto", {"feature_map": "hedgehog", "normalize": True, "num_heads": 2}),
        ("associative", {"feature_map": "relu", "expand_v": 0.5}),
        ("reference", {"feature_map": "identity", "output_norm": "identity", "expand_k": 0.5}),
        ("reference", {"normalize": True, "output_norm": "identity"}),
    ],
)
def test_matches_float64_oracle(backend, kw):
    block = _block(backend=backend, **kw)
    x = _x()
    ref = oracle(block, x)
    assert np.abs(ref).max() > 0.1
    _close(_run(block, x), ref)


def test_defaults_and_init():
    cfg = LinearAttentionConfig(embed_dim=64)
    block = LinearAttentionBlock(cfg, rngs=nnx.Rngs(0))
    assert (cfg.num_heads, cfg.key_dim, cfg.value_dim, cfg.feature_map) == (8, 64, 64, "elu")
    assert not cfg.normalize and cfg.output_norm == "rmsnorm"
    np.testing.assert_array_equal(np.asarray(block.norm.weight[...]), np.ones(8))
    assert 0.017 < float(np.std(np.asarray(block.q_proj.kernel[...]))) < 0.023
    assert block.q_map is None and isinstance(block, Mixer)
    hh = LinearAttentionBlock(
        LinearAttentionConfig(embed_dim=64, feature_map="hedgehog", normalize=True),
        rngs=nnx.Rngs(0),
    )
    np.testing.assert_array_equal(np.asarray(hh.q_map.layer.kernel[...]), np.eye(8))
    np.testing.assert_array_equal(np.asarray(hh.k_map.layer.bias[...]), np.zeros(8))
    cache = hh.init_cache(3)
    assert cache["state"].shape == (3, 8, 16, 8) and cache["z"].shape == (3, 8, 16, 1)


@pytest.mark.parametrize("kw", [{"normalize": True}, {"feature_map": "hedgehog"}])
def test_step_matches_parallel(kw):
    block = _block(**kw)
    x = _x(T=13)
    y = _run(block, x)
    cache = block.init_cache(2)
    step = nnx.jit(lambda m, xt, c: m.step(xt, c))
    ys = []
    for t in range(x.shape[1]):
        yt, cache = step(block, x[:, t], cache)
        ys.append(yt)
    _close(jnp.stack(ys, axis=1), y)


def test_causal_by_gradient():
    block = _block(scale=4.0, normalize=True)
    T = 10
    x = _x(B=1, T=T)
    jac = np.asarray(jax.jit(jax.jacrev(lambda x: block(x)[0]))(x)[:, :, 0])  # [T, M, T, M]
    future = np.broadcast_to(np.triu(np.ones((T, T), bool), k=1)[:, None, :, None], jac.shape)
    assert np.all(jac[future] == 0)
    assert np.abs(jac[~future]).max() > 0


def test_segment_ids_keep_packed_sequences_apart():
    block = _block(normalize=True)
    x = _x(B=2, T=16)
    ids = jnp.array([[0] * 7 + [1] * 9, [5] * 3 + [6] * 13])
    y = _run(block, x, ids)
    for b, cut in ((0, 7), (1, 3)):
        _close(y[b : b + 1, :cut], _run(block, x[b : b + 1, :cut]))
        _close(y[b : b + 1, cut:], _run(block, x[b : b + 1, cut:]))
    _close(y, oracle(block, x, ids))


def test_jit_and_grad_are_finite():
    block = _block(scale=4.0, feature_map="hedgehog", normalize=True)
    x = _x(T=12)
    ids = jnp.array([[0] * 5 + [1] * 7] * 2)
    y = _run(block, x, ids)
    assert bool(jnp.all(jnp.isfinite(y)))
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) ** 2)))(block, x)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads.q_map.layer.kernel[...]).max()) > 0


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"num_heads": 3}, "num_heads"),
        ({"expand_k": 0.0}, "expand_k"),
        ({"expand_v": -1.0}, "expand_v"),
        ({"feature_map": "dpfp"}, "feature_map"),
        ({"output_norm": "layernorm"}, "output_norm"),
        ({"normalize": 1}, "normalize"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"backend": "x"}, "backend"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        LinearAttentionConfig(**{"embed_dim": M, **kw})


def test_wrong_config_class_raises():
    with pytest.raises(TypeError, match="LinearAttentionConfig"):
        LinearAttentionBlock(object(), rngs=nnx.Rngs(0))
