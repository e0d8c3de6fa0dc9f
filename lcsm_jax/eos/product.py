"""Factored (product) log-decays: ``log o[r, c] = scale · fn(k[r] · d[c] · p[r, c])``.

Mamba's selective decay is ``Δ_t[c] · A[r, c]`` and the LCSM paper's o_types 6–9 are
``log σ(z_t[r] · P[r, c]) / τ`` and its K / D variants: full K×D decays, but each the image of a
K-vector, a D-vector and a (usually data-independent) parameter. Handed to `eos_scan` in this form
the [B, T, H, K, D] log-decay is never built: the sequential backends (`reference`, `recurrent`)
compute each step's K×D decay inside the step, and the `recurrent` backend's gradient accumulates
the parameter's cotangent in its reverse scan. The other backends need the decay itself and take it
materialised (`ProductLog.log`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

FUNCTIONS = ("identity", "log_sigmoid")
_STATIC = {"static": True}  # a pytree meta field of `register_dataclass`


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProductDecay:
    """A factored log-oscillation ``log o[r, c] = scale · fn(k[r] · d[c] · p[r, c])``.

    Args (any factor may be None, meaning 1; at least one must be given):
      k: broadcastable to [B, T, H, K] (a data-dependent K-vector, e.g. o_type 6's projection).
      d: broadcastable to [B, T, H, D] (e.g. Mamba's step size Δ_t).
      p: broadcastable to [B, T, H, K, D]; give it size-1 leading dims (e.g. [H, K, D] or
        [1, 1, H, K, 1]) when it is a parameter, so it is never broadcast over B and T.
      fn: "identity" (Mamba: Δ ⊗ A with A < 0 gives log o = Δ[c] A[r, c]) or "log_sigmoid"
        (the paper's g(z) = σ(z)^(1/τ) in log space, with scale = 1/τ).
      scale: a Python float multiplying fn's value.

    The result must be a valid log-decay (real part ≤ 0), as for a plain ``log_o``; "log_sigmoid"
    always is for scale ≥ 0. Complex factors are allowed with "identity" (complex e, i, s then).
    """

    k: Any = None
    d: Any = None
    p: Any = None
    fn: str = dataclasses.field(default="identity", metadata=_STATIC)
    scale: float = dataclasses.field(default=1.0, metadata=_STATIC)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProductLog:
    """The canonical product decay inside a `Problem`: k [b,t,h,K|1], d [b,t,h,D|1],
    p [b,t,h,K|1,D|1] (each None or in the accumulation dtype); fn and scale are static. The same
    class holds one step's factors (the time axis removed), which `log` handles alike."""

    k: jax.Array | None
    d: jax.Array | None
    p: jax.Array | None
    fn: str = dataclasses.field(metadata=_STATIC)
    scale: float = dataclasses.field(metadata=_STATIC)

    def log(self) -> jax.Array:
        """The log-decay, [..., K|1, D|1] (the factors broadcast against each other)."""
        z = None
        for factor in (
            None if self.k is None else self.k[..., :, None],
            None if self.d is None else self.d[..., None, :],
            self.p,
        ):
            if factor is not None:
                z = factor if z is None else z * factor
        if self.fn == "log_sigmoid":
            z = jax.nn.log_sigmoid(z)
        return z if self.scale == 1.0 else z * jnp.asarray(self.scale, z.dtype)
