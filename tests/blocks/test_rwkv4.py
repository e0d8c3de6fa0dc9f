"""RWKV-4 time-mix: a float64 NumPy oracle of RWKV_TimeMix, decoding, causality, packing, init."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.rwkv4 import RWKV4Block, RWKV4Config

M, T = 16, 12


def make_block(seed=0, **kw):
    """A block whose parameters are all perturbed (the official init zeroes three linears)."""
    block = RWKV4Block(RWKV4Config(embed_dim=M, **kw), rngs=nnx.Rngs(seed))
    state = nnx.state(block, nnx.Param)
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    leaves = [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    nnx.update(block, jax.tree.unflatten(tree, leaves))
    return block


def inputs(seed=1):
    return jax.random.normal(jax.random.key(seed), (2, T, M))


def oracle(block, x):
    """RWKV_TimeMix's forward from the paper's time-mixing equations, float64, naive sums."""
    p = {name: np.asarray(getattr(block, name)[...], np.float64) for name in (
        "time_decay", "time_first", "time_mix_k", "time_mix_v", "time_mix_r")}  # fmt: skip
    W = {n: np.asarray(getattr(block, n).kernel[...], np.float64) for n in (
        "key", "value", "receptance", "output")}  # fmt: skip
    x = np.asarray(x, np.float64)
    prev = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    mix = lambda mu: x * mu + prev * (1 - mu)  # noqa: E731
    k = mix(p["time_mix_k"]) @ W["key"]
    v = mix(p["time_mix_v"]) @ W["value"]
    r = mix(p["time_mix_r"]) @ W["receptance"]
    w, u = np.exp(p["time_decay"]), p["time_first"]
    wkv = np.zeros_like(v)
    for t in range(x.shape[1]):
        num = np.exp(u + k[:, t]) * v[:, t]
        den = np.exp(u + k[:, t])
        for i in range(t):
            weight = np.exp(-(t - 1 - i) * w + k[:, i])
            num, den = num + weight * v[:, i], den + weight
        wkv[:, t] = num / den
    return (wkv / (1 + np.exp(-r))) @ W["output"]


def close(y, ref, tol=1e-5):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    assert np.max(np.abs(y - ref)) <= tol * np.max(np.abs(ref))


def test_forward_matches_oracle():
    block, x = make_block(), inputs()
    close(block(x), oracle(block, x))


def test_reference_backend_matches_oracle():
    block, x = make_block(backend="reference"), inputs()
    close(block(x), oracle(block, x))


def test_step_matches_parallel():
    block, x = make_block(), inputs()
    cache, ys = block.init_cache(2), []
    for t in range(T):
        y_t, cache = block.step(x[:, t], cache)
        ys.append(y_t)
    close(jnp.stack(ys, 1), block(x))


def test_causal_by_gradient():
    block, x = make_block(), inputs()
    J = jax.jit(jax.jacrev(lambda x: block(x)[0]))(x)[
        :, :, 0
    ]  # d y[0, t] / d x[0, s]: [T, M, T, M]
    for t in range(T):
        assert np.all(np.asarray(J[t, :, t + 1 :]) == 0)
    assert np.any(np.asarray(J[T - 1, :, 0]) != 0)


def test_segment_ids_keep_sequences_apart():
    # Row 0 packs a (5 tokens) and b (7 tokens); alone, each runs from t = 0 of its own row
    # (zero padded to T, which causality makes harmless).
    block, x = make_block(), inputs()
    a, b = x[0, :5], x[1, :7]
    packed = jnp.stack([jnp.concatenate([a, b]), x[1]])
    ids = jnp.asarray([[0] * 5 + [1] * 7, [0] * T])
    y = block(packed, segment_ids=ids)
    alone = block(jnp.stack([jnp.pad(a, ((0, T - 5), (0, 0))), jnp.pad(b, ((0, T - 7), (0, 0)))]))
    close(y[0, :5], alone[0, :5])
    close(y[0, 5:], alone[1, :7])
    close(y[1], block(x)[1])


def test_jit_and_grad_finite():
    block, x = make_block(), inputs()
    graphdef, state = nnx.split(block)

    @jax.jit
    def loss(state, x):
        return jnp.sum(jnp.square(nnx.merge(graphdef, state)(x)))

    value, grads = jax.value_and_grad(loss)(state, x)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_official_init():
    block = RWKV4Block(RWKV4Config(embed_dim=M, layer_id=1, num_layers=3), rngs=nnx.Rngs(0))
    r01, r10 = 1 / 2, 1 - 1 / 3
    h = np.arange(M)
    np.testing.assert_allclose(
        block.time_decay[...], -5 + 8 * (h / (M - 1)) ** (0.7 + 1.3 * r01), rtol=1e-6
    )
    zigzag = np.array([((i + 1) % 3 - 1) * 0.5 for i in range(M)])
    np.testing.assert_allclose(block.time_first[...], math.log(0.3) + zigzag, rtol=1e-6)
    np.testing.assert_allclose(block.time_mix_v[...], (h / M) ** r10 + 0.3 * r01, rtol=1e-6)
    np.testing.assert_allclose(block.time_mix_r[...], (h / M) ** (0.5 * r10), rtol=1e-6)
    assert not np.any(block.output.kernel[...])  # zero output: the block starts as the identity
    W = np.asarray(block.value.kernel[...])
    np.testing.assert_allclose(W.T @ W, np.eye(M), atol=1e-5)


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"embed_dim": M, "num_layers": 0}, "num_layers"),
        ({"embed_dim": M, "layer_id": 2, "num_layers": 2}, "layer_id"),
        ({"embed_dim": M, "backend": "chunked"}, "backend"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        RWKV4Config(**kw)


def test_wrong_config_type_raises():
    with pytest.raises(TypeError):
        RWKV4Block(object(), rngs=nnx.Rngs(0))
