"""The Linear Recurrent Unit (Orvieto et al., "Resurrecting Recurrent Neural Networks for Long
Sequences", arXiv 2303.06349), following `LRU` of github:NicolasZucchet/minimal-LRU, lru/model.py.

    x_t = λ ⊙ x_{t-1} + γ ⊙ (B u_t),   y_t = Re(C x_t) + D ⊙ u_t

One complex diagonal state of size N (`state_dim`) is shared by all M channels (MIMO): B is N×M
and C is M×N complex, D real. λ = exp(-exp(ν) + i exp(θ)) is drawn uniformly on the ring
r_min <= |λ| <= r_max with phase in [0, max_phase] (the paper's Lemma 3.2), and γ is a learned
log-parameter initialised to sqrt(1 - |λ|²) (minimal-LRU's `gamma_log`). B ~ N(0, 1/(2M)) per
real and imaginary part (Glorot-like), C ~ N(0, 1/N), D ~ N(0, 1).

The block is the paper's LRU layer alone: the GELU/GLU, normalisation and skip of the paper's
`SequenceLayer` belong to the model around it. The recurrence is one `eos_scan`: one head,
K = 1 (e = s = 1), a D-wise complex decay log λ over D = N, i = γ ⊙ (B u_t); C and D are applied
outside the scan.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import eos


@dataclasses.dataclass(frozen=True, kw_only=True)
class LRUConfig:
    """embed_dim M (the H of the paper); state_dim N (minimal-LRU's d_hidden); r_min / r_max the
    ring of |λ| at init; max_phase the largest initial angle of λ; backend / chunk_size go to
    `eos_scan`."""

    embed_dim: int
    state_dim: int = 128
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        for name in ("embed_dim", "state_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LRUConfig.{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.r_min < self.r_max <= 1.0:
            raise ValueError(
                f"LRUConfig.r_min, r_max must satisfy 0 <= r_min < r_max <= 1, "
                f"got r_min={self.r_min!r}, r_max={self.r_max!r}"
            )
        if not self.max_phase > 0:
            raise ValueError(f"LRUConfig.max_phase must be > 0, got {self.max_phase!r}")
        if self.backend not in eos.BACKENDS:
            raise ValueError(
                f"LRUConfig.backend must be one of {eos.BACKENDS}, got {self.backend!r}"
            )
        if self.chunk_size is not None and (
            not isinstance(self.chunk_size, int) or self.chunk_size < 1
        ):
            raise ValueError(
                f"LRUConfig.chunk_size must be a positive int or None, got {self.chunk_size!r}"
            )


class LRUBlock(nnx.Module):
    """The LRU layer: u [B, T, M] -> y [B, T, M]; the cache is the complex state [B, 1, 1, N]."""

    def __init__(self, config: LRUConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, LRUConfig):
            raise TypeError(f"config must be an LRUConfig, got {type(config).__name__}")
        self.config = config
        M, N = config.embed_dim, config.state_dim
        # |λ|² uniform on [r_min², r_max²], so that λ is uniform on the ring (Lemma 3.2).
        u1 = jax.random.uniform(rngs.params(), (N,))
        u2 = jax.random.uniform(rngs.params(), (N,))
        r2 = u1 * (config.r_max**2 - config.r_min**2) + config.r_min**2
        self.nu_log = nnx.Param(jnp.log(-0.5 * jnp.log(r2)))
        self.theta_log = nnx.Param(jnp.log(config.max_phase * u2))
        self.gamma_log = nnx.Param(0.5 * jnp.log1p(-r2))  # log sqrt(1 - |λ|²)
        normal = lambda shape, std: std * jax.random.normal(rngs.params(), shape)  # noqa: E731
        self.B_re = nnx.Param(normal((N, M), 1 / math.sqrt(2 * M)))
        self.B_im = nnx.Param(normal((N, M), 1 / math.sqrt(2 * M)))
        self.C_re = nnx.Param(normal((M, N), 1 / math.sqrt(N)))
        self.C_im = nnx.Param(normal((M, N), 1 / math.sqrt(N)))
        self.D = nnx.Param(normal((M,), 1.0))

    def _log_lambda(self):
        """[1, 1, 1, N] complex log λ (D-wise decay of one head)."""
        log_lam = -jnp.exp(self.nu_log[...]) + 1j * jnp.exp(self.theta_log[...])
        return log_lam.astype(jnp.complex64).reshape(1, 1, 1, -1)

    def _drive(self, u_xM):
        """γ ⊙ (B u), complex [..., N]."""
        u = u_xM.astype(jnp.float32)
        B = (self.B_re[...] + 1j * self.B_im[...]) * jnp.exp(self.gamma_log[...])[:, None]
        return jnp.einsum("...m,nm->...n", u.astype(jnp.complex64), B.astype(jnp.complex64))

    def _read(self, x_xN, u_xM):
        C = (self.C_re[...] + 1j * self.C_im[...]).astype(jnp.complex64)
        y = jnp.einsum("...n,mn->...m", x_xN, C).real
        D = self.D[...].reshape((1,) * (u_xM.ndim - 1) + (-1,))
        return (y + D * u_xM.astype(jnp.float32)).astype(u_xM.dtype)

    def __call__(self, x_BxTxM, *, segment_ids=None):
        B, T, _ = x_BxTxM.shape
        i_BxTx1xN = self._drive(x_BxTxM)[:, :, None]
        ones = jnp.ones((B, T, 1, 1), jnp.complex64)
        m_BxTx1xN, _ = eos.eos_scan(
            ones,
            i_BxTx1xN,
            self._log_lambda()[None],
            ones,
            segment_ids=segment_ids,
            backend=self.config.backend,
            chunk_size=self.config.chunk_size,
        )
        return self._read(m_BxTx1xN[:, :, 0], x_BxTxM)

    def init_cache(self, batch_size: int):
        return jnp.zeros((batch_size, 1, 1, self.config.state_dim), jnp.complex64)

    def step(self, x_BxM, cache):
        B = x_BxM.shape[0]
        ones = jnp.ones((B, 1, 1), jnp.complex64)
        m_Bx1xN, state = eos.eos_step(
            ones, self._drive(x_BxM)[:, None], self._log_lambda()[0], ones, cache
        )
        return self._read(m_Bx1xN[:, 0], x_BxM), state
