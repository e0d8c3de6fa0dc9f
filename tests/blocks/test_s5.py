"""The S5 layer: a complex128 NumPy oracle of the discretised MIMO SSM (ZOH and bilinear, with and
without conjugate symmetry), the HiPPO-N init, MIMO mixing, decoding, causality, packing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.s5 import S5Block, S5Config

M, P, T = 8, 16, 12
OPTIONS = {"dt_min": 0.01, "dt_max": 1.0}  # larger steps than the default: faster dynamics


def make_block(seed=0, **kw):
    return S5Block(S5Config(embed_dim=M, state_dim=P, **{**OPTIONS, **kw}), rngs=nnx.Rngs(seed))


def inputs(seed=1):
    return jax.random.normal(jax.random.key(seed), (2, T, M))


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


def close(y, ref, tol=1e-5):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    assert np.max(np.abs(y - ref)) <= tol * np.max(np.abs(ref))


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
    block, u = make_block(**kw), inputs()
    close(block(u), oracle(block, u))


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
    # One shared state: input channel 0 at t = 0 moves every output channel at every t >= 0,
    # in batch row 0 only.
    block, u = make_block(), inputs()
    delta = np.asarray(block(u.at[0, 0, 0].add(1.0)) - block(u))
    assert np.all(np.abs(delta[0]) > 1e-7)
    assert np.all(delta[1] == 0)


def test_step_matches_parallel():
    block, u = make_block(), inputs()
    cache, ys = block.init_cache(2), []
    for t in range(T):
        y_t, cache = block.step(u[:, t], cache)
        ys.append(y_t)
    close(jnp.stack(ys, 1), block(u))


def test_causal_by_gradient():
    block, u = make_block(), inputs()
    J = jax.jit(jax.jacrev(lambda u: block(u)[0]))(u)[
        :, :, 0
    ]  # d y[0, t] / d u[0, s]: [T, M, T, M]
    for t in range(T):
        assert np.all(np.asarray(J[t, :, t + 1 :]) == 0)
    assert np.any(np.asarray(J[T - 1, :, 0]) != 0)


def test_segment_ids_keep_sequences_apart():
    block, u = make_block(), inputs()
    a, b = u[0, :5], u[1, :7]
    packed = jnp.stack([jnp.concatenate([a, b]), u[1]])
    ids = jnp.asarray([[0] * 5 + [1] * 7, [0] * T])
    y = block(packed, segment_ids=ids)
    alone = block(jnp.stack([jnp.pad(a, ((0, T - 5), (0, 0))), jnp.pad(b, ((0, T - 7), (0, 0)))]))
    close(y[0, :5], alone[0, :5])
    close(y[0, 5:], alone[1, :7])
    close(y[1], block(u)[1])


def test_jit_and_grad_finite():
    block, u = make_block(), inputs()
    graphdef, state = nnx.split(block)

    @jax.jit
    def loss(state, u):
        return jnp.sum(jnp.square(nnx.merge(graphdef, state)(u)))

    value, grads = jax.value_and_grad(loss)(state, u)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["log_step"][...]).max()) > 0


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


def test_wrong_config_type_raises():
    with pytest.raises(TypeError):
        S5Block(object(), rngs=nnx.Rngs(0))
