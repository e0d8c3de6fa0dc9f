"""The LRU layer: a complex128 NumPy oracle of minimal-LRU's recurrence, MIMO mixing, decoding,
causality, packing, the ring init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcsm_jax.blocks.lru import LRUBlock, LRUConfig

M, N, T = 8, 12, 12


def make_block(seed=0, **kw):
    return LRUBlock(LRUConfig(embed_dim=M, state_dim=N, **kw), rngs=nnx.Rngs(seed))


def inputs(seed=1):
    return jax.random.normal(jax.random.key(seed), (2, T, M))


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


def close(y, ref, tol=1e-5):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    assert np.max(np.abs(y - ref)) <= tol * np.max(np.abs(ref))


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_forward_matches_oracle(backend):
    block, u = make_block(backend=backend, r_min=0.4, r_max=0.99), inputs()
    close(block(u), oracle(block, u))


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
    assert float(jnp.abs(grads["nu_log"][...]).max()) > 0


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


def test_wrong_config_type_raises():
    with pytest.raises(TypeError):
        LRUBlock(object(), rngs=nnx.Rngs(0))
