"""The liquid-resistance liquid-capacitance (LRC) cell of LrcSSM (SPEC §6), sequential rollout.

One explicit-Euler step (Δt = 1) of dx/dt = ε ⊙ (a ⊙ x + b), state size D, input u in R^N:

    s_u = σ(σ_u ⊙ (u - μ_u))              s_x = σ(σ_x ⊙ (x - μ_x))
    a = -σ(g_leak + W_f s_u + w_x ⊙ s_x)   b = v_leak ⊙ tanh(g_leak + W_h s_u + h_x ⊙ s_x)
    ε = σ(k_e ⊙ x + b_e)                   x_t = x + ε ⊙ (a ⊙ x + b)

Every state term is a self-loop, so ∂x_t/∂x_{t-1} is exactly diagonal. The input terms W_f s_u,
W_h s_u (the only matmuls) do not depend on the state: `drive` computes them once for the whole
sequence and `step` is then elementwise in D, which is what lets the Newton solver take the
Jacobian diagonal from one jvp. In the complex variant μ_x, σ_x, w_x, h_x are complex, and so is
the state (σ and tanh are holomorphic, so the Jacobian stays a complex diagonal).

The input-only variant drops the state terms (and takes ε from the input): x_t = (1 + ε a) ⊙ x + ε b
with a, b, ε functions of u_t alone, a selective diagonal SSM that one exact scan solves.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class LrcParams(NamedTuple):
    """State-dependent LRC cell. Sensory (input) weights are real; the state ones may be complex."""

    sensory_mu: jax.Array  # [N]
    sensory_sigma: jax.Array  # [N]
    sensory_w: jax.Array  # [N, D]
    sensory_h: jax.Array  # [N, D]
    mu: jax.Array  # [D]
    sigma: jax.Array  # [D]
    w: jax.Array  # [D]
    h: jax.Array  # [D]
    g_leak: jax.Array  # [D]
    v_leak: jax.Array  # [D]
    k_e: jax.Array  # [D]
    b_e: jax.Array  # [D]


class InputLrcParams(NamedTuple):
    """Input-only LRC cell: a, b and ε are functions of u_t alone."""

    sensory_mu: jax.Array  # [N]
    sensory_sigma: jax.Array  # [N]
    sensory_w: jax.Array  # [N, D]
    sensory_h: jax.Array  # [N, D]
    sensory_e: jax.Array  # [N, D]
    g_leak: jax.Array  # [D]
    v_leak: jax.Array  # [D]
    b_e: jax.Array  # [D]


class Drive(NamedTuple):
    """Input terms of the state-dependent cell, precomputed for all steps: [B, T, D] each."""

    f: jax.Array
    g: jax.Array


_COMPLEX_FIELDS = ("mu", "sigma", "w", "h")


def init_params(key, num_inputs: int, state_size: int, *, complex_state: bool = False):
    """LrcParams with every entry ~ U(-1/√D, 1/√D) (real and imaginary parts alike)."""
    if num_inputs < 1 or state_size < 1:
        raise ValueError(f"num_inputs and state_size must be >= 1, got {num_inputs}, {state_size}")
    N, D = num_inputs, state_size
    shapes = {f: (D,) for f in LrcParams._fields}
    shapes.update(sensory_mu=(N,), sensory_sigma=(N,), sensory_w=(N, D), sensory_h=(N, D))
    return LrcParams(**_uniform(key, shapes, D, _COMPLEX_FIELDS if complex_state else ()))


def init_input_params(key, num_inputs: int, state_size: int) -> InputLrcParams:
    if num_inputs < 1 or state_size < 1:
        raise ValueError(f"num_inputs and state_size must be >= 1, got {num_inputs}, {state_size}")
    N, D = num_inputs, state_size
    shapes = {f: (D,) for f in InputLrcParams._fields}
    shapes.update(
        sensory_mu=(N,), sensory_sigma=(N,), sensory_w=(N, D), sensory_h=(N, D), sensory_e=(N, D)
    )
    return InputLrcParams(**_uniform(key, shapes, D, ()))


def _uniform(key, shapes: dict, D: int, complex_fields) -> dict:
    lim = 1.0 / math.sqrt(D)
    keys = jax.random.split(key, 2 * len(shapes))
    out = {}
    for index, (name, shape) in enumerate(shapes.items()):
        real = jax.random.uniform(keys[2 * index], shape, jnp.float32, -lim, lim)
        if name in complex_fields:
            imag = jax.random.uniform(keys[2 * index + 1], shape, jnp.float32, -lim, lim)
            real = jax.lax.complex(real, imag)
        out[name] = real
    return out


def is_complex(params: LrcParams) -> bool:
    return any(jnp.iscomplexobj(getattr(params, f)) for f in _COMPLEX_FIELDS)


def state_dtype(params: LrcParams):
    return jnp.complex64 if is_complex(params) else jnp.float32


def _lift(v, x):
    """A per-feature parameter [F] reshaped to broadcast explicitly against x [..., F]."""
    return v.reshape((1,) * (x.ndim - 1) + v.shape)


def _sensory(params, u_BxTxN):
    mu, sigma = _lift(params.sensory_mu, u_BxTxN), _lift(params.sensory_sigma, u_BxTxN)
    return jax.nn.sigmoid(sigma * (u_BxTxN - mu))


def _matmul(s_BxTxN, w_NxD):
    return jnp.einsum("btn,nd->btd", s_BxTxN, w_NxD, precision=jax.lax.Precision.HIGHEST)


def drive(params: LrcParams, u_BxTxN) -> Drive:
    """The state-independent parts of the pre-activations f and g (g_leak included)."""
    s_BxTxN = _sensory(params, u_BxTxN.astype(jnp.float32))
    f_BxTxD = _matmul(s_BxTxN, params.sensory_w)
    g_leak = _lift(params.g_leak, f_BxTxD)
    return Drive(f=g_leak + f_BxTxD, g=g_leak + _matmul(s_BxTxN, params.sensory_h))


def step(params: LrcParams, x_prev, d: Drive):
    """x_t from x_{t-1} and the step's drive; elementwise in D, any leading shape."""
    p = {name: _lift(v, x_prev) for name, v in params._asdict().items() if v.ndim == 1}
    s_x = jax.nn.sigmoid(p["sigma"] * (x_prev - p["mu"]))
    a = -jax.nn.sigmoid(d.f + p["w"] * s_x)
    b = p["v_leak"] * jnp.tanh(d.g + p["h"] * s_x)
    eps = jax.nn.sigmoid(p["k_e"] * x_prev + p["b_e"])
    return x_prev + eps * (a * x_prev + b)


def cell(params: LrcParams, x_prev_BxD, u_BxN):
    """One full step from the raw input (the matmuls included): the reference definition."""
    d = drive(params, u_BxN[:, None])
    return step(params, x_prev_BxD, Drive(f=d.f[:, 0], g=d.g[:, 0]))


def rollout(params: LrcParams, u_BxTxN, x0_BxD=None):
    """The sequential reference: `cell` applied step after step by `lax.scan`. Returns [B, T, D]."""
    check_input(params.sensory_w, u_BxTxN)
    B = u_BxTxN.shape[0]
    D = params.sensory_w.shape[1]
    x0_BxD = jnp.zeros((B, D), state_dtype(params)) if x0_BxD is None else x0_BxD

    def body(x, u_BxN):
        x = cell(params, x, u_BxN)
        return x, x

    _, x_TxBxD = jax.lax.scan(body, x0_BxD.astype(state_dtype(params)), jnp.moveaxis(u_BxTxN, 1, 0))
    return jnp.moveaxis(x_TxBxD, 0, 1)


def input_coefficients(params: InputLrcParams, u_BxTxN):
    """(decay, bias) [B, T, D] of the input-only cell: x_t = decay_t ⊙ x_{t-1} + bias_t.

    The decay 1 + ε a lies in (0, 1) because ε, -a ∈ (0, 1): a real contraction, log-decay < 0.
    """
    check_input(params.sensory_w, u_BxTxN)
    s_BxTxN = _sensory(params, u_BxTxN.astype(jnp.float32))
    f_BxTxD = _matmul(s_BxTxN, params.sensory_w)
    p = {name: _lift(v, f_BxTxD) for name, v in params._asdict().items() if v.ndim == 1}
    a = -jax.nn.sigmoid(p["g_leak"] + f_BxTxD)
    b = p["v_leak"] * jnp.tanh(p["g_leak"] + _matmul(s_BxTxN, params.sensory_h))
    eps = jax.nn.sigmoid(p["b_e"] + _matmul(s_BxTxN, params.sensory_e))
    return 1.0 + eps * a, eps * b


def input_rollout(params: InputLrcParams, u_BxTxN, x0_BxD=None):
    """Sequential reference of the input-only cell. Returns [B, T, D]."""
    decay, bias = input_coefficients(params, u_BxTxN)
    x0_BxD = jnp.zeros(decay[:, 0].shape, jnp.float32) if x0_BxD is None else x0_BxD

    def body(x, coeffs):
        x = coeffs[0] * x + coeffs[1]
        return x, x

    xs = (jnp.moveaxis(decay, 1, 0), jnp.moveaxis(bias, 1, 0))
    _, x_TxBxD = jax.lax.scan(body, x0_BxD.astype(jnp.float32), xs)
    return jnp.moveaxis(x_TxBxD, 0, 1)


def check_input(w_NxD, u_BxTxN) -> None:
    if jnp.ndim(u_BxTxN) != 3:
        raise ValueError(f"u must be [B, T, N] (rank 3), got shape {jnp.shape(u_BxTxN)}")
    if u_BxTxN.shape[-1] != w_NxD.shape[0]:
        raise ValueError(
            f"u has {u_BxTxN.shape[-1]} input features but the cell expects N={w_NxD.shape[0]}"
        )
    if u_BxTxN.shape[1] == 0:
        raise ValueError("the time axis T of u must be non-empty")
    if not jnp.issubdtype(u_BxTxN.dtype, jnp.floating):
        raise TypeError(f"u must be a real floating array, got dtype {u_BxTxN.dtype}")
