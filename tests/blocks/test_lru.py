"""The LRU layer against a complex128 NumPy oracle of minimal-LRU's recurrence on two backends,
its MIMO mixing, the ring init and config checks. The Mixer contract (decoding, causality,
packing, grad) is in test_contract.py."""

import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.lru import LRUBlock, LRUConfig
from tests.blocks.helpers import check_mimo, check_oracle

M, N, T = 8, 12, 12


def make_block(seed=0, **kw):
    return LRUBlock(LRUConfig(embed_dim=M, state_dim=N, **kw), rngs=nnx.Rngs(seed))


def oracle(block, u):
    """x_t = λ x_{t-1} + γ ⊙ B u_t, y_t = Re(C x_t) + D ⊙ u_t (paper eq. (1), minimal-LRU)."""
    p = {n: np.asarray(getattr(block, n)[...], np.float64) for n in (
        "nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D")}  # fmt: skip
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    B = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[:, None]
    C = p["C_re"] + 1j * p["C_im"]
    u = np.asarray(u, np.float64)
    x = np.zeros((u.shape[0], N), complex)
    ys = []
    for t in range(u.shape[1]):
        x = lam * x + u[:, t] @ B.T
        ys.append((x @ C.T).real + p["D"] * u[:, t])
    return np.stack(ys, 1)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_forward_matches_oracle(backend):
    check_oracle(make_block(backend=backend, r_min=0.4, r_max=0.99), oracle, (2, T, M))


def test_mimo_every_output_channel_sees_every_input_channel():
    check_mimo(make_block(), (2, T, M))


def test_ring_init():
    block = LRUBlock(
        LRUConfig(embed_dim=M, state_dim=256, r_min=0.5, r_max=0.9, max_phase=3.0),
        rngs=nnx.Rngs(0),
    )
    lam = np.exp(-np.exp(block.nu_log[...]) + 1j * np.exp(block.theta_log[...]))
    assert np.all((np.abs(lam) >= 0.5 - 1e-6) & (np.abs(lam) <= 0.9 + 1e-6))
    assert np.all((np.angle(lam) % (2 * np.pi)) <= 3.0 + 1e-6)
    np.testing.assert_allclose(
        np.exp(block.gamma_log[...]), np.sqrt(1 - np.abs(lam) ** 2), rtol=1e-5
    )
    np.testing.assert_allclose(np.std(block.B_re[...]), 1 / np.sqrt(2 * M), rtol=0.1)


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"embed_dim": 0}, "embed_dim"),
        ({"embed_dim": M, "state_dim": 0}, "state_dim"),
        ({"embed_dim": M, "r_min": 0.9, "r_max": 0.5}, "r_min"),
        ({"embed_dim": M, "r_max": 1.5}, "r_max"),
        ({"embed_dim": M, "max_phase": 0.0}, "max_phase"),
        ({"embed_dim": M, "backend": "fast"}, "backend"),
        ({"embed_dim": M, "chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        LRUConfig(**kw)
