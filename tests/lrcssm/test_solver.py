"""The parallel Newton solve against the sequential rollout: values, gradients, Jacobian diagonal,
stopping rule and divergence reporting."""

import chex
import jax
import jax.numpy as jnp
import pytest

from lcsm_jax import lrcssm
from lcsm_jax.lrcssm import cell, solver

N, D, B = 4, 8, 2
# ×3 the paper's U(-1/√D, 1/√D) init: clearly nonlinear (4-5 Newton iterations instead of 3).
SCALE = 3.0


def make(seed: int, T: int, *, complex_state: bool = False, scale: float = SCALE):
    params = lrcssm.init_params(jax.random.key(seed), N, D, complex_state=complex_state)
    params = jax.tree.map(lambda a: a * scale, params)
    u = jax.random.normal(jax.random.key(seed + 100), (B, T, N), jnp.float32)
    return params, u


_solve = jax.jit(lrcssm.solve, static_argnames="config")
_rollout = jax.jit(lrcssm.rollout)


@pytest.mark.parametrize(
    ("seed", "T", "with_x0", "complex_state"),
    [
        (0, 1, False, False),
        (1, 37, True, False),
        (2, 2048, False, False),
        pytest.param(3, 1, False, True, marks=pytest.mark.slow),
        (4, 37, True, True),
        pytest.param(6, 2048, False, True, marks=pytest.mark.slow),
    ],
)
def test_parallel_solve_equals_rollout(seed, T, with_x0, complex_state):
    params, u = make(seed, T, complex_state=complex_state)
    x0 = None
    if with_x0:
        x0 = jax.random.normal(jax.random.key(seed + 1), (B, D)).astype(cell.state_dtype(params))
    x, info = _solve(params, u, x0)
    expected = _rollout(params, u, x0)
    chex.assert_shape(x, (B, T, D))
    assert x.dtype == (jnp.complex64 if complex_state else jnp.float32)
    assert lrcssm.check(info, lrcssm.SolverConfig()) is info
    assert 1 <= int(info.iterations) <= T + 1
    chex.assert_trees_all_close(x, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "associative", "reference"])
def test_parallel_solve_long_sequences(backend):
    params, u = make(3, 8192)
    x, info = jax.jit(lrcssm.solve, static_argnames="config")(
        params, u, config=lrcssm.SolverConfig(backend=backend)
    )
    assert bool(info.converged)
    chex.assert_trees_all_close(x, _rollout(params, u), atol=1e-4, rtol=0)


@pytest.mark.parametrize("complex_state", [False, True])
def test_implicit_gradient_equals_backprop_through_rollout(complex_state):
    params, u = make(6, 64, complex_state=complex_state)
    x0 = jax.random.normal(jax.random.key(7), (B, D)).astype(cell.state_dtype(params))
    weights = jax.random.normal(jax.random.key(8), (B, 64, D))

    def loss(run):
        def f(p, u, x0):
            x = run(p, u, x0)
            return jnp.sum(weights * jnp.real(x)) + jnp.sum(jnp.imag(x) ** 2)

        return f

    tight = lrcssm.SolverConfig(tol=1e-5)
    parallel = jax.jit(jax.grad(loss(lambda p, u, x0: lrcssm.solve(p, u, x0, tight)[0]), (0, 1, 2)))
    sequential = jax.jit(jax.grad(loss(lrcssm.rollout), (0, 1, 2)))
    got, want = parallel(params, u, x0), sequential(params, u, x0)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = max(float(jnp.max(jnp.abs(w))), 1.0)
        chex.assert_trees_all_close(g, w, atol=2e-4 * scale, rtol=0)


@pytest.mark.parametrize("complex_state", [False, True])
def test_jvp_diagonal_equals_dense_jacobian_diagonal(complex_state):
    params, u = make(9, 1, complex_state=complex_state, scale=5.0)
    x_prev = jax.random.normal(jax.random.key(10), (D,)).astype(cell.state_dtype(params))
    u_1xN = u[0]

    def f(x):  # the full cell (matmuls included) for one series, one step
        return cell.cell(params, x[None], u_1xN)[0]

    @jax.jit
    def both(params, x_prev, u_1xN):
        dense = jax.jacfwd(f, holomorphic=complex_state)(x_prev)
        d = cell.drive(params, u_1xN[None])
        drive = cell.Drive(d.f[0, 0], d.g[0, 0])
        return dense, solver.step_and_diagonal(params, x_prev, drive)[1]

    dense, diagonal = both(params, x_prev, u_1xN)
    chex.assert_trees_all_close(diagonal, jnp.diagonal(dense), atol=1e-6, rtol=1e-5)
    off_diagonal = dense - jnp.diag(jnp.diagonal(dense))
    assert float(jnp.max(jnp.abs(off_diagonal))) == 0.0  # exactly diagonal by construction


# The stopping-rule tests use the sequential backend for the linear scans: it compiles fastest,
# and the rule does not depend on how each linear recurrence is solved.
REF = "reference"


def test_stops_at_tolerance_and_reports_iterations():
    params, u = make(11, 200)
    iterations = {}
    for tol in (1e-1, 1e-5):
        _, info = _solve(params, u, config=lrcssm.SolverConfig(tol=tol, backend=REF))
        assert bool(info.converged) and float(info.error) <= tol
        iterations[tol] = int(info.iterations)
    assert 1 <= iterations[1e-1] < iterations[1e-5] <= 10
    # One iteration fewer does not reach the tolerance: the count is where it stopped.
    capped = lrcssm.SolverConfig(tol=1e-5, max_iter=iterations[1e-5] - 1, backend=REF)
    _, early = _solve(params, u, config=capped)
    assert int(early.iterations) == iterations[1e-5] - 1
    assert float(early.error) > 1e-5 and not bool(early.converged)


def test_newton_reaches_the_exact_solution_in_at_most_T_iterations():
    # Strongly nonlinear cell: Newton still fixes one more step per iteration (DEER property).
    params, u = make(12, 6, scale=10.0)
    x, info = _solve(params, u, config=lrcssm.SolverConfig(tol=1e-5, max_iter=7, backend=REF))
    assert bool(info.converged) and int(info.iterations) <= 7
    chex.assert_trees_all_close(x, lrcssm.rollout(params, u), atol=1e-5, rtol=0)


def test_non_convergence_is_reported_not_returned_as_nan():
    params, u = make(13, 256, scale=10.0)  # Newton overshoots (|J| >> 1) and wanders
    config = lrcssm.SolverConfig(max_iter=20, backend=REF)
    x, info = _solve(params, u, config=config)
    assert not bool(info.converged) and int(info.iterations) == 20
    assert bool(jnp.all(jnp.isfinite(x)))
    with pytest.raises(lrcssm.NotConvergedError, match="did not converge.*max \\|Δx\\|"):
        lrcssm.check(info, config)


@pytest.mark.parametrize("case", ["huge_states", "nan_input"])
def test_overflow_is_reported_as_divergence(case):
    params, u = make(14, 64)
    if case == "huge_states":
        params = params._replace(v_leak=jnp.full((D,), 1e30), b_e=jnp.full((D,), 10.0))
    else:
        u = u.at[1, 30, 2].set(jnp.nan)
    expected = _rollout(params, u)
    config = lrcssm.SolverConfig(backend=REF)
    # The cell itself leaves any sane range (or is NaN): no iterate can be the trajectory.
    assert not float(jnp.max(jnp.abs(expected))) <= config.clip
    x, info = _solve(params, u, config=config)
    assert bool(info.clipped) and not bool(info.converged)
    assert bool(jnp.all(jnp.isfinite(x))) and float(jnp.max(jnp.abs(x))) <= config.clip
    with pytest.raises(lrcssm.NotConvergedError, match="overflowed.*diverges"):
        lrcssm.check(info, config)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tol": 0.0}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"clip": -1.0}, "clip"),
        ({"backend": "cuda"}, "backend"),
        ({"max_jacobian": 0.0}, "max_jacobian"),
    ],
)
def test_bad_solver_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lrcssm.SolverConfig(**kwargs)


def test_bad_inputs():
    params, u = make(16, 8)
    with pytest.raises(ValueError, match="rank 3"):
        lrcssm.solve(params, u[0])
    with pytest.raises(ValueError, match="input features"):
        lrcssm.solve(params, u[..., :2])
    with pytest.raises(TypeError, match="real floating"):
        lrcssm.solve(params, u.astype(jnp.int32))
    with pytest.raises(ValueError, match="x0"):
        lrcssm.solve(params, u, jnp.zeros((B, D + 1)))
    with pytest.raises(TypeError, match="SolverConfig"):
        lrcssm.solve(params, u, config={"tol": 1e-4})
    with pytest.raises(ValueError, match="non-empty"):
        lrcssm.solve(params, jnp.zeros((B, 0, N)))


@pytest.mark.slow
def test_unstable_linearisation_is_reported_and_rescued_by_the_jacobian_cap():
    # This complex cell expands locally (|J| up to ~25 on ~1% of the steps): plain Newton's
    # linear solves overflow. Capping |J| at 1 keeps the fixed point and converges (slowly).
    params, u = make(5, 2048, complex_state=True)
    expected = _rollout(params, u)
    plain = lrcssm.SolverConfig(backend=REF)
    x, info = _solve(params, u, config=plain)
    assert bool(info.clipped) and bool(jnp.all(jnp.isfinite(x)))
    with pytest.raises(lrcssm.NotConvergedError, match="max_jacobian=1"):
        lrcssm.check(info, plain)
    capped = lrcssm.SolverConfig(backend=REF, max_jacobian=1.0, max_iter=2048)
    x, info = _solve(params, u, config=capped)
    assert bool(lrcssm.check(info, capped).converged) and int(info.iterations) > 100
    # Local expansion amplifies f32 rounding in both computations, hence the looser tolerance.
    chex.assert_trees_all_close(x, expected, atol=3e-2, rtol=0)
