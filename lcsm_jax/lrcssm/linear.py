"""Diagonal linear recurrences x_t = J_t ⊙ x_{t-1} + c_t on the EOS core's scan.

As an EOS problem it is one head with K = 1 expand row and value width D: e = 1, i_t = c_t,
a D-wise log-oscillation log J_t, s = 1, so the memory m_t [1, D] is x_t itself and y_t reads it.

The core takes decays in log space, which a negative real J_t does not have. Rather than paying
for complex arithmetic, the signs are moved out of the recurrence: with σ_t = Π_{l≤t} sign(J_l),
z_t = σ_t x_t obeys z_t = |J_t| z_{t-1} + σ_t c_t (since σ_t sign(J_t) = σ_{t-1}), a recurrence with
positive decays, and x_t = σ_t z_t. Complex J_t (the complex LRC variant) take the complex log.
"""

from __future__ import annotations

import jax.numpy as jnp

from lcsm_jax import eos

# |J| is floored here before the log: exp(-69) = 1e-30 is zero next to any state it multiplies,
# while a finite log keeps the core's cumulative log-decays (and their differences) finite. The
# price: autodiff gives an exactly-zero J_t a zero J-gradient (the Newton solver does not
# differentiate through this function, and the input-only cell's decays are never 0).
TINY = 1e-30


def linear_recurrence(J_BxTxD, c_BxTxD, x0_BxD=None, *, backend: str = "auto"):
    """Solves x_t = J_t ⊙ x_{t-1} + c_t for t = 0..T-1 from x_{-1} = x0 (zeros if None).

    Real or complex J, c (complex if either is); returns x [B, T, D] in float32 / complex64.
    """
    if jnp.ndim(J_BxTxD) != 3 or jnp.shape(J_BxTxD) != jnp.shape(c_BxTxD):
        raise ValueError(
            f"J and c must both be [B, T, D]; got {jnp.shape(J_BxTxD)} and {jnp.shape(c_BxTxD)}"
        )
    is_complex = jnp.iscomplexobj(J_BxTxD) or jnp.iscomplexobj(c_BxTxD)
    dtype = jnp.complex64 if is_complex else jnp.float32
    J, c = J_BxTxD.astype(dtype), c_BxTxD.astype(dtype)
    B, T, D = J.shape
    if x0_BxD is not None and jnp.shape(x0_BxD) != (B, D):
        raise ValueError(f"x0 must be [B, D]={(B, D)}, got {jnp.shape(x0_BxD)}")
    if is_complex:
        log_J = jnp.log(jnp.where(jnp.abs(J) < TINY, TINY, J))
        x_BxTxD = _eos_solve(log_J, c, x0_BxD, backend)
        return x_BxTxD
    negative = J < 0
    sign = 1.0 - 2.0 * (jnp.cumsum(negative, axis=1, dtype=jnp.int32) % 2).astype(dtype)
    log_abs = jnp.log(jnp.maximum(jnp.abs(J), TINY))
    z_BxTxD = _eos_solve(log_abs, sign * c, x0_BxD, backend)
    return sign * z_BxTxD


def _eos_solve(log_J_BxTxD, c_BxTxD, x0_BxD, backend: str):
    B, T, D = c_BxTxD.shape
    ones = jnp.ones((B, T, 1, 1), c_BxTxD.dtype)
    m0 = None if x0_BxD is None else x0_BxD.astype(c_BxTxD.dtype).reshape(B, 1, 1, D)
    y_BxTx1xD, _ = eos.eos_scan(
        ones,
        c_BxTxD[:, :, None, :],
        eos.Decay(d=log_J_BxTxD[:, :, None, :]),
        ones,
        initial_state=m0,
        backend=backend,
    )
    return y_BxTx1xD[:, :, 0, :]


def reverse_recurrence(J_BxTxD, g_BxTxD, *, backend: str = "auto"):
    """The adjoint of `linear_recurrence`: λ_t = g_t + J_{t+1} ⊙ λ_{t+1}, λ_{T-1} = g_{T-1}.

    JAX's VJPs are transposes (no complex conjugation), and a diagonal is its own transpose.
    """
    J_next = jnp.concatenate([J_BxTxD[:, 1:], jnp.zeros_like(J_BxTxD[:, :1])], axis=1)
    lam_rev = linear_recurrence(J_next[:, ::-1], g_BxTxD[:, ::-1], backend=backend)
    return lam_rev[:, ::-1]
