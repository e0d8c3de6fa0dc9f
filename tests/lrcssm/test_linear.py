"""Diagonal linear recurrences on the EOS scan (signed, complex, reversed) and the input-only cell
as one exact scan."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcsm_jax import lrcssm
from lcsm_jax.lrcssm import cell
from lcsm_jax.lrcssm.linear import linear_recurrence, reverse_recurrence

B, T, D, N = 2, 45, 5, 3


def loop(J, c, x0):
    """float64 NumPy oracle: x_t = J_t x_{t-1} + c_t."""
    J, c = np.asarray(J, np.complex128), np.asarray(c, np.complex128)
    x = np.asarray(x0, np.complex128)
    out = []
    for t in range(J.shape[1]):
        x = J[:, t] * x + c[:, t]
        out.append(x)
    return np.stack(out, axis=1)


def signed_coefficients(seed: int, zeros: bool = True):
    """J with both signs, |J| > 1 at a few steps and (if `zeros`) exact zeros at one step."""
    rng = np.random.default_rng(seed)
    J = rng.uniform(-1.05, 1.05, (B, T, D))
    if zeros:
        J[:, 7] = 0.0
    J[0, 20:23] = -1.3
    c = rng.normal(size=(B, T, D))
    x0 = rng.normal(size=(B, D))
    return (jnp.asarray(a, jnp.float32) for a in (J, c, x0))


class LinearRecurrenceTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_signed_real_decays(self):
        J, c, x0 = signed_coefficients(0)
        x = self.variant(linear_recurrence)(J, c, x0)
        assert x.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(x), loop(J, c, x0).real, atol=2e-5, rtol=1e-5)

    def test_signed_real_decays_associative(self):
        J, c, x0 = signed_coefficients(1)
        x = linear_recurrence(J, c, x0, backend="associative")
        np.testing.assert_allclose(np.asarray(x), loop(J, c, x0).real, atol=2e-5, rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_complex_decays(self):
        rng = np.random.default_rng(1)
        J = rng.uniform(0.2, 1.0, (B, T, D)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (B, T, D)))
        c = rng.normal(size=(B, T, D)) + 1j * rng.normal(size=(B, T, D))
        J, c = jnp.asarray(J, jnp.complex64), jnp.asarray(c, jnp.complex64)
        x = self.variant(linear_recurrence)(J, c)
        assert x.dtype == jnp.complex64
        np.testing.assert_allclose(np.asarray(x), loop(J, c, np.zeros((B, D))), atol=2e-5)

    @pytest.mark.slow
    def test_reverse_recurrence_is_the_transpose(self):
        # <g, L c> = <L^T g, c> for the linear map L: c -> x (x0 = 0).
        J, c, _ = signed_coefficients(2)
        g = jax.random.normal(jax.random.key(3), (B, T, D))
        x, vjp = jax.vjp(lambda c: linear_recurrence(J, c), c)
        lam = reverse_recurrence(J, g)
        chex.assert_trees_all_close(lam, vjp(g)[0], atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(float(jnp.sum(g * x)), float(jnp.sum(lam * c)), rtol=1e-4)

    @pytest.mark.slow
    def test_gradient_through_signed_scan(self):
        # Exact zeros are left out: the floored log gives them a zero J-gradient (documented).
        J, c, x0 = signed_coefficients(4, zeros=False)

        def via_scan(J, c):
            return jnp.sum(jnp.sin(linear_recurrence(J, c, x0)))

        def via_loop(J, c):
            def body(x, jc):
                x = jc[0] * x + jc[1]
                return x, x

            _, xs = jax.lax.scan(body, x0, (jnp.moveaxis(J, 1, 0), jnp.moveaxis(c, 1, 0)))
            return jnp.sum(jnp.sin(xs))

        got = jax.grad(via_scan, (0, 1))(J, c)
        want = jax.grad(via_loop, (0, 1))(J, c)
        # Relative to the largest gradient: the chunked backend's log-space form loses ~1e-4 of
        # it on J-gradients where |J| ~ 1e-3 (a strong decay inside a chunk).
        for g, w in zip(got, want, strict=True):
            atol = 3e-4 * float(jnp.max(jnp.abs(w)))
            chex.assert_trees_all_close(g, w, atol=atol, rtol=0)

    def test_bad_shapes(self):
        J, c, x0 = signed_coefficients(5)
        with self.assertRaisesRegex(ValueError, "J and c"):
            linear_recurrence(J, c[:, :-1])
        with self.assertRaisesRegex(ValueError, "x0"):
            linear_recurrence(J, c, x0[:, :-1])


@pytest.mark.parametrize("T_", [pytest.param(1, marks=pytest.mark.slow), 300])
def test_input_only_cell_is_one_exact_scan(T_):
    params = lrcssm.init_input_params(jax.random.key(0), N, D)
    params = jax.tree.map(lambda a: 3.0 * a, params)
    u = jax.random.normal(jax.random.key(1), (B, T_, N))

    def with_gradient(run):
        def f(p, u):
            x, vjp = jax.vjp(run, p, u)
            return x, vjp(jnp.cos(x))

        return jax.jit(f)

    x, grads = with_gradient(lrcssm.solve_input_only)(params, u)
    x_ref, grads_ref = with_gradient(cell.input_rollout)(params, u)
    chex.assert_shape(x, (B, T_, D))
    chex.assert_trees_all_close(x, x_ref, atol=1e-5, rtol=1e-5)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref), strict=True):
        # Each leaf sums B·T terms in float32: compare relative to the leaf's largest entry.
        chex.assert_trees_all_close(g, w, atol=1e-5 * float(jnp.max(jnp.abs(w))), rtol=1e-4)
    decay, _ = cell.input_coefficients(params, u)
    assert bool(jnp.all((decay > 0) & (decay < 1)))  # a contraction: real log-decays < 0


def test_init_shapes_and_range():
    params = lrcssm.init_params(jax.random.key(0), N, 16, complex_state=True)
    chex.assert_shape(params.sensory_w, (N, 16))
    chex.assert_shape(params.mu, (16,))
    assert jnp.iscomplexobj(params.mu) and not jnp.iscomplexobj(params.sensory_w)
    for leaf in jax.tree.leaves(params):
        assert float(jnp.max(jnp.abs(jnp.real(leaf)))) <= 0.25  # U(-1/√16, 1/√16)
    with pytest.raises(ValueError, match="state_size"):
        lrcssm.init_params(jax.random.key(0), N, 0)
