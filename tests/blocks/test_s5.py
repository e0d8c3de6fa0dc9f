"""The S5 layer against a complex128 NumPy oracle of the discretised MIMO SSM (ZOH and bilinear,
with and without conjugate symmetry), the HiPPO-N init, its MIMO mixing and config checks. The
Mixer contract (decoding, causality, packing, grad) is in test_contract.py."""

import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.s5 import S5Block, S5Config
from tests.blocks.helpers import check_mimo, check_oracle

M, P, T = 8, 16, 12
OPTIONS = {"dt_min": 0.01, "dt_max": 1.0}  # larger steps than the default: faster dynamics


def make_block(seed=0, **kw):
    return S5Block(S5Config(embed_dim=M, state_dim=P, **{**OPTIONS, **kw}), rngs=nnx.Rngs(seed))


def oracle(block, u):
    """Paper eqs. (6)-(7): x_t = Λ̄ x_{t-1} + B̄ u_t, y_t = Re(C̃ x_t) (2·Re with conj_sym) + D u_t,
    with Λ̄, B̄ by zero-order hold or the bilinear transform of (Λ, B̃, Δ)."""
    p = {n: np.asarray(getattr(block, n)[...], np.float64) for n in (
        "Lambda_re", "Lambda_im", "B_re", "B_im", "C_re", "C_im", "D", "log_step")}  # fmt: skip
    lam = p["Lambda_re"] + 1j * p["Lambda_im"]
    dt = np.exp(p["log_step"])
    B, C = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]
    if block.config.discretisation == "zoh":
        lam_bar = np.exp(lam * dt)
        B_bar = ((lam_bar - 1) / lam)[:, None] * B
    else:
        lam_bar = (1 + dt / 2 * lam) / (1 - dt / 2 * lam)
        B_bar = (dt / (1 - dt / 2 * lam))[:, None] * B
    factor = 2.0 if block.config.conj_sym else 1.0
    u = np.asarray(u, np.float64)
    x = np.zeros((u.shape[0], lam.shape[0]), complex)
    ys = []
    for t in range(u.shape[1]):
        x = lam_bar * x + u[:, t] @ B_bar.T
        ys.append(factor * (x @ C.T).real + p["D"] * u[:, t])
    return np.stack(ys, 1)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"backend": "reference"},
        {"discretisation": "bilinear"},
        {"conj_sym": False, "blocks": 2, "C_init": "lecun_normal"},
        {"C_init": "complex_normal", "clip_eigs": True},
    ],
)
def test_forward_matches_oracle(kw):
    check_oracle(make_block(**kw), oracle, (2, T, M))


def hippo_legs_normal(N):
    """S = A + p pᵀ with A the HiPPO-LegS matrix (Gu et al., arXiv 2008.07669, written anew)."""
    A = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            if n > k:
                A[n, k] = -np.sqrt(2 * n + 1) * np.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    p = np.sqrt(np.arange(N) + 0.5)
    return A + np.outer(p, p)


@pytest.mark.parametrize("conj_sym, blocks", [(False, 1), (True, 1), (True, 2)])
def test_hippo_n_init(conj_sym, blocks):
    block = make_block(conj_sym=conj_sym, blocks=blocks)
    spectrum = np.linalg.eigvals(hippo_legs_normal(P // blocks))
    np.testing.assert_allclose(spectrum.real, -0.5, atol=1e-8)
    lam = np.asarray(block.Lambda_re[...]) + 1j * np.asarray(block.Lambda_im[...])
    assert lam.shape == ((P // 2) if conj_sym else P,)
    np.testing.assert_allclose(lam.real, -0.5, atol=1e-6)
    per_block = np.split(lam, blocks)
    for part in per_block:
        kept = np.concatenate([part, part.conj()]) if conj_sym else part
        np.testing.assert_allclose(np.sort(kept.imag), np.sort(spectrum.imag), atol=1e-4)
    steps = np.exp(np.asarray(block.log_step[...]))
    assert np.all((steps >= OPTIONS["dt_min"] * 0.999) & (steps <= OPTIONS["dt_max"] * 1.001))


def test_mimo_every_output_channel_sees_every_input_channel():
    check_mimo(make_block(), (2, T, M))


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"state_dim": 0}, "state_dim"),
        ({"blocks": 3}, "blocks"),
        ({"state_dim": 6, "blocks": 2}, "state_dim / blocks"),
        ({"discretisation": "euler"}, "discretisation"),
        ({"C_init": "zeros"}, "C_init"),
        ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min"),
        ({"backend": "fast"}, "backend"),
        ({"chunk_size": -1}, "chunk_size"),
    ],
)
def test_bad_config_raises(kw, field):
    with pytest.raises(ValueError, match=field):
        S5Config(embed_dim=M, **{"state_dim": P, **kw})
