"""RWKV-6 time-mix: a float64 NumPy oracle of RWKV_Tmix_x060, decoding, causality, packing, init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.rwkv6 import RWKV6Block, RWKV6Config

M, HS, T = 16, 8, 12
SMALL = {"embed_dim": M, "head_size": HS, "mix_lora_rank": 4, "decay_lora_rank": 8}


def make_block(seed=0, backend="reference", **kw):
    """A block whose parameters are all perturbed (the official init zeroes the LoRA A and the
    output). The sequential backend keeps compile times short; one test runs "auto"."""
    block = RWKV6Block(RWKV6Config(**{**SMALL, **kw}, backend=backend), rngs=nnx.Rngs(seed))
    state = nnx.state(block, nnx.Param)
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    leaves = [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    nnx.update(block, jax.tree.unflatten(tree, leaves))
    return block


def inputs(seed=1):
    return jax.random.normal(jax.random.key(seed), (2, T, M))


def oracle(block, x):
    """The x060 time-mix from the Finch equations, float64, one token and one head at a time."""
    P = {
        n: np.asarray(v[...], np.float64) for n, v in nnx.to_flat_state(nnx.state(block, nnx.Param))
    }
    p = {".".join(map(str, k)): v for k, v in P.items()}
    x = np.asarray(x, np.float64)
    Bsz, T, _ = x.shape
    H = M // HS
    delta = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1) - x
    low = np.tanh((x + delta * p["time_maa_x"]) @ p["time_maa_w1"]).reshape(Bsz, T, 5, -1)
    m = np.einsum("btfr,frm->fbtm", low, p["time_maa_w2"])
    names = ("w", "k", "v", "r", "g")
    xs = {n: x + delta * (p[f"time_maa_{n}"] + m[f]) for f, n in enumerate(names)}
    r = xs["r"] @ p["receptance.kernel"]
    k = xs["k"] @ p["key.kernel"]
    v = xs["v"] @ p["value.kernel"]
    g = xs["g"] @ p["gate.kernel"]
    g = g / (1 + np.exp(-g))
    w = np.exp(
        -np.exp(p["time_decay"] + np.tanh(xs["w"] @ p["time_decay_w1"]) @ p["time_decay_w2"])
    )
    u = p["time_faaaa"]
    heads = lambda a: a.reshape(Bsz, T, H, HS)  # noqa: E731
    r, k, v, w = map(heads, (r, k, v, w))
    o = np.zeros((Bsz, T, H, HS))
    S = np.zeros((Bsz, H, HS, HS))
    for t in range(T):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        o[:, t] = np.einsum("bhk,bhkv->bhv", r[:, t], S + u[None, :, :, None] * kv)
        S = w[:, t, :, :, None] * S + kv
    mean = o.mean(-1, keepdims=True)
    var = ((o - mean) ** 2).mean(-1, keepdims=True)
    o = ((o - mean) / np.sqrt(var + 1e-5 * 64)).reshape(Bsz, T, M)
    o = o * p["ln_x_weight"] + p["ln_x_bias"]
    return (o * g) @ p["output.kernel"]


def close(y, ref, tol=1e-5):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    assert np.max(np.abs(y - ref)) <= tol * np.max(np.abs(ref))


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_forward_matches_oracle(backend):
    block, x = make_block(backend=backend), inputs()
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
    block = RWKV6Block(RWKV6Config(**SMALL, layer_id=1, num_layers=3), rngs=nnx.Rngs(0))
    r01, r10 = 1 / 2, 1 - 1 / 3
    n = np.arange(M)
    np.testing.assert_allclose(
        block.time_decay[...], -6 + 5 * (n / (M - 1)) ** (0.7 + 1.3 * r01), rtol=1e-6
    )
    zigzag = ((n + 1) % 3 - 1) * 0.1
    np.testing.assert_allclose(
        block.time_faaaa[...].reshape(-1), r01 * (1 - n / (M - 1)) + zigzag, atol=1e-6
    )
    np.testing.assert_allclose(block.time_maa_v[...], 1 - ((n / M) ** r10 + 0.3 * r01), atol=1e-6)
    np.testing.assert_allclose(block.ln_x_weight[...], (2 / 3) ** 0.7, rtol=1e-6)
    assert not np.any(block.time_maa_w1[...]) and not np.any(block.output.kernel[...])
    assert np.max(np.abs(block.time_maa_w2[...])) <= 0.01
    Wk = np.asarray(block.key.kernel[...])
    np.testing.assert_allclose(Wk.T @ Wk, 0.01 * np.eye(M), atol=1e-6)


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"head_size": 5}, "head_size"),
        ({"head_size": 0}, "head_size"),
        ({"mix_lora_rank": 0}, "mix_lora_rank"),
        ({"layer_id": 1}, "layer_id"),
        ({"head_size_divisor": 0.0}, "head_size_divisor"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        RWKV6Config(**{**SMALL, **kw})


def test_wrong_config_type_raises():
    with pytest.raises(TypeError):
        RWKV6Block(object(), rngs=nnx.Rngs(0))
