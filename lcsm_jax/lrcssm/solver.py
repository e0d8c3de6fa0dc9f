"""Parallel solution of the LRC recurrence: quasi-DEER Newton iterations on the EOS scan.

Newton's method on the residual r_t(x) = x_t - f(x_{t-1}, u_t) linearises every step around the
current guess x⁽ᵏ⁾: x_t = J_t ⊙ x_{t-1} + (F_t - J_t ⊙ x⁽ᵏ⁾_{t-1}), with F_t = f(x⁽ᵏ⁾_{t-1}, u_t)
and J_t = ∂f/∂x_{t-1}, a diagonal linear recurrence (one EOS scan). The LRC Jacobian is diagonal by
construction, so this is exact Newton (DEER) and not an approximation; its diagonal comes from one
forward-mode jvp with a ones tangent, O(T·D) instead of the dense D×D. After k iterations the first
k steps are exact, so Newton always reaches the sequential solution in at most T iterations; in
practice a contractive cell takes a handful.

The gradient is implicit: at the solution x = f(shift(x), u), so for a cotangent g the adjoint
λ_t = g_t + J_{t+1} λ_{t+1} (one reverse linear scan) and one VJP of f at (shift(x), u) give the
gradients of params, inputs and x0 without differentiating through the iterations.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lcsm_jax import eos
from lcsm_jax.lrcssm import cell
from lcsm_jax.lrcssm.linear import linear_recurrence, reverse_recurrence


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    """tol: stop when max |x⁽ᵏ⁺¹⁾ - x⁽ᵏ⁾| ≤ tol; max_iter: iteration cap; clip: iterates are
    clipped to ±clip and NaN set to 0 (one overflowing step must not poison the next linear
    solve); backend: the EOS backend of the linear scans.

    max_jacobian: |J_t| is capped at this value in the iterations (phase kept), inf = off (pure
    Newton). Any J leaves the fixed point x_t = f(x_{t-1}, u_t) unchanged and keeps the
    one-more-exact-step-per-iteration property, so a cap of 1 trades Newton's fast convergence
    at expanding steps for linear solves that cannot overflow: it rescues cells whose
    linearisation is unstable (|J| ≫ 1 on some steps), where plain Newton iterates blow up. The
    implicit gradient always uses the true J."""

    tol: float = 1e-4
    max_iter: int = 100
    clip: float = 1e8
    backend: str = "auto"
    max_jacobian: float = float("inf")

    def __post_init__(self):
        if not self.tol > 0:
            raise ValueError(f"SolverConfig.tol must be > 0, got {self.tol}")
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"SolverConfig.max_iter must be an int >= 1, got {self.max_iter!r}")
        if not self.clip > 0:
            raise ValueError(f"SolverConfig.clip must be > 0, got {self.clip}")
        if not self.max_jacobian > 0:
            raise ValueError(f"SolverConfig.max_jacobian must be > 0, got {self.max_jacobian}")
        if self.backend not in eos.BACKENDS:
            raise ValueError(
                f"SolverConfig.backend={self.backend!r}; valid: {', '.join(eos.BACKENDS)}"
            )


class SolveInfo(NamedTuple):
    """iterations: Newton iterations run (int32); error: the last max |Δx|; clipped: the last
    iterate had NaN or values beyond ±clip (its fixed point is then not the cell's trajectory);
    converged: error ≤ tol and not clipped."""

    iterations: jax.Array
    error: jax.Array
    clipped: jax.Array
    converged: jax.Array


class NotConvergedError(RuntimeError):
    """The Newton iterations hit the cap without reaching the tolerance."""


def check(info: SolveInfo, config: SolverConfig) -> SolveInfo:
    """Raises NotConvergedError (outside jit) if the solve did not converge; returns `info`."""
    if not bool(jnp.all(info.converged)):
        error, iterations = float(jnp.max(info.error)), int(jnp.max(info.iterations))
        if bool(jnp.any(info.clipped)):
            reason = (
                f"the states overflowed (NaN or beyond ±{config.clip:g}, clipped) after "
                f"{iterations} iterations: the cell or its Newton linearisation diverges for "
                "these parameters/inputs (max_jacobian=1 keeps the linear solves stable)"
            )
        else:
            reason = (
                f"max |Δx| = {error:.3g} > tol {config.tol} after {iterations} iterations (cap "
                f"{config.max_iter}); raise max_iter, or cap the Jacobian (max_jacobian=1)"
            )
        raise NotConvergedError(f"LrcSSM Newton solve did not converge: {reason}")
    return info


def shift(x_BxTxD, x0_BxD):
    """x_{t-1} for every t: x0 then x_0..x_{T-2}."""
    return jnp.concatenate([x0_BxD[:, None], x_BxTxD[:, :-1]], axis=1)


def step_and_diagonal(params, x_prev, d):
    """(F, J) = (f(x_prev, d), diag ∂f/∂x_prev): one jvp with a ones tangent (f is elementwise)."""
    return jax.jvp(lambda x: cell.step(params, x, d), (x_prev,), (jnp.ones_like(x_prev),))


def _guard(x, clip: float):
    """(x with NaN → 0 and clipped to ±clip per real component, whether anything was changed)."""
    parts = (jnp.real(x), jnp.imag(x)) if jnp.iscomplexobj(x) else (x,)
    bad = functools.reduce(jnp.logical_or, [jnp.any(~(jnp.abs(p) <= clip)) for p in parts])
    parts = [jnp.clip(jnp.where(jnp.isnan(p), 0.0, p), -clip, clip) for p in parts]
    return (jax.lax.complex(*parts) if len(parts) == 2 else parts[0]), bad


def _newton(params, d: cell.Drive, x0_BxD, config: SolverConfig):
    def iterate(carry):
        x, k, _, _ = carry
        x_prev = shift(x, x0_BxD)
        F, J = step_and_diagonal(params, x_prev, d)
        if config.max_jacobian != float("inf"):
            size = jnp.abs(J)
            J = J * jnp.minimum(1.0, config.max_jacobian / jnp.maximum(size, 1e-30))
        x_new, clipped = _guard(
            linear_recurrence(J, F - J * x_prev, x0_BxD, backend=config.backend), config.clip
        )
        return x_new, k + 1, jnp.max(jnp.abs(x_new - x)), clipped

    def keep_going(carry):
        _, k, error, _ = carry
        return (k < config.max_iter) & (error > config.tol)

    B, D = x0_BxD.shape
    x = jnp.zeros((B, d.f.shape[1], D), x0_BxD.dtype)
    start = (x, jnp.zeros((), jnp.int32), jnp.array(jnp.inf, jnp.float32), jnp.array(False))
    x, k, error, clipped = jax.lax.while_loop(keep_going, iterate, start)
    converged = (error <= config.tol) & ~clipped
    return x, SolveInfo(iterations=k, error=error, clipped=clipped, converged=converged)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _solve(params, d, x0_BxD, config):
    return _newton(params, d, x0_BxD, config)


def _solve_fwd(params, d, x0_BxD, config):
    x, info = _newton(params, d, x0_BxD, config)
    return (x, info), (params, d, x0_BxD, x)


def _solve_bwd(config, residuals, cotangents):
    params, d, x0_BxD, x = residuals
    g_BxTxD = cotangents[0]  # the SolveInfo outputs carry no gradient
    x_prev = shift(x, x0_BxD)
    _, J = step_and_diagonal(params, x_prev, d)
    lam = reverse_recurrence(J, g_BxTxD, backend=config.backend)
    _, vjp = jax.vjp(cell.step, params, x_prev, d)
    d_params, d_x_prev, d_drive = vjp(lam.astype(x.dtype))
    return d_params, d_drive, d_x_prev[:, 0]


_solve.defvjp(_solve_fwd, _solve_bwd)


def solve(params: cell.LrcParams, u_BxTxN, x0_BxD=None, config: SolverConfig = SolverConfig()):
    """All states of the LRC cell over a sequence, in parallel over time.

    Args:
      params: the cell (real or complex state parameters).
      u_BxTxN: inputs [B, T, N] (real).
      x0_BxD: the state before t = 0 (zeros if None).
      config: tolerance, iteration cap, clipping and scan backend.

    Returns:
      ``(x_BxTxD, info)``: the states (float32, complex64 for complex parameters) and a SolveInfo
      with the iteration count for logging; `check(info, config)` raises if it did not converge.
      Differentiable: the gradient is implicit (one adjoint scan and one VJP of the cell).
    """
    if not isinstance(config, SolverConfig):
        raise TypeError(f"config must be a SolverConfig, got {type(config).__name__}")
    d = cell.drive(params, _checked(params, u_BxTxN))
    dtype = cell.state_dtype(params)
    B, D = u_BxTxN.shape[0], params.sensory_w.shape[1]
    x0_BxD = jnp.zeros((B, D), dtype) if x0_BxD is None else jnp.asarray(x0_BxD).astype(dtype)
    if x0_BxD.shape != (B, D):
        raise ValueError(f"x0 must be [B, D]={(B, D)}, got {x0_BxD.shape}")
    return _solve(params, cell.Drive(f=d.f.astype(dtype), g=d.g.astype(dtype)), x0_BxD, config)


def solve_input_only(params: cell.InputLrcParams, u_BxTxN, x0_BxD=None, *, backend="auto"):
    """The input-only cell, x_t = (1 + ε a) ⊙ x_{t-1} + ε b: one exact scan. Returns [B, T, D]."""
    decay, bias = cell.input_coefficients(params, u_BxTxN)
    return linear_recurrence(decay, bias, x0_BxD, backend=backend)


def _checked(params, u_BxTxN):
    cell.check_input(params.sensory_w, u_BxTxN)
    return u_BxTxN
