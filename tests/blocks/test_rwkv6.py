"""RWKV-6 time-mix against a float64 NumPy oracle of RWKV_Tmix_x060 on two backends, the official
init and config checks. The Mixer contract (decoding, causality, packing, grad) is in
test_contract.py."""

import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.rwkv6 import RWKV6Block, RWKV6Config
from tests.blocks.helpers import check_oracle, perturb

M, HS, T = 16, 8, 12
SMALL = {"embed_dim": M, "head_size": HS, "mix_lora_rank": 4, "decay_lora_rank": 8}


def make_block(seed=0, backend="reference", **kw):
    """A block whose parameters are all perturbed (the official init zeroes the LoRA A and the
    output). The sequential backend keeps compile times short; one test runs "auto"."""
    block = RWKV6Block(RWKV6Config(**{**SMALL, **kw}, backend=backend), rngs=nnx.Rngs(seed))
    return perturb(block, 0.3, seed + 100)


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


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_forward_matches_oracle(backend):
    check_oracle(make_block(backend=backend), oracle, (2, T, M))


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
