"""RWKV-4 time-mix against a float64 NumPy oracle of RWKV_TimeMix on both backends, the official
init and config checks. The Mixer contract (decoding, causality, packing, grad) is in
test_contract.py."""

import math

import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.rwkv4 import RWKV4Block, RWKV4Config
from tests.blocks.helpers import check_oracle, perturb

M, T = 16, 12


def make_block(seed=0, **kw):
    """A block whose parameters are all perturbed (the official init zeroes three linears)."""
    block = RWKV4Block(RWKV4Config(embed_dim=M, **kw), rngs=nnx.Rngs(seed))
    return perturb(block, 0.3, seed + 100)


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


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_forward_matches_oracle(backend):
    check_oracle(make_block(backend=backend), oracle, (2, T, M))


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
