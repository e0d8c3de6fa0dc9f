"""The S5 layer (Smith, Warrington & Linderman, "Simplified State Space Layers for Sequence
Modeling", arXiv 2208.04933), following `S5SSM` of github:lindermanlab/S5, s5/ssm.py and
s5/ssm_init.py (and the block-diagonal init of s5/train.py).

    x_t = Λ̄ ⊙ x_{t-1} + B̄ u_t,   y_t = Re(C̃ x_t) + D ⊙ u_t    (2·Re(C̃ x_t) with conj_sym)

One complex diagonal state of size P (`state_dim`) is shared by all M channels (MIMO). Λ is the
diagonal of HiPPO-N: the normal part of HiPPO-LegS, S = A + p pᵀ = V Λ V*, whose real parts are
all -1/2 (`make_DPLR_HiPPO`), repeated over `blocks` diagonal blocks of size P / blocks. With
conj_sym (the official default) only one eigenvalue of each conjugate pair is kept (P/2 states)
and the output takes 2·Re. B̃ = V⁻¹B and C̃ = CV with B, C drawn as the official code does
(lecun_normal B; C by `C_init`); D ~ N(0, 1); one learnable log step per state,
log Δ ~ U[log dt_min, log dt_max]. Discretisation is zero-order hold (Λ̄ = e^{ΛΔ},
B̄ = (Λ̄ - 1)/Λ · B̃) or bilinear.

The block is the paper's S5 SSM layer alone: the activation (GELU / GLU), normalisation and skip
of the paper's sequence layer belong to the model around it. The recurrence is one `eos_scan`:
one head, K = 1 (e = s = 1), a D-wise complex decay log Λ̄ over D = P, i = B̄ u_t.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcsm_jax import eos

DISCRETISATIONS = ("zoh", "bilinear")
C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")


def hippo_n(N: int):
    """HiPPO-N, the normal part of HiPPO-LegS of size N: (eigenvalues Λ [N], eigenvectors V
    [N, N]) of S = A + p pᵀ, float64 / complex128 NumPy, imaginary parts ascending."""
    n = np.arange(N)
    q = np.sqrt(1 + 2 * n)
    A = -(np.tril(q[:, None] * q[None, :]) - np.diag(n))  # HiPPO-LegS
    p = np.sqrt(n + 0.5)
    S = A + p[:, None] * p[None, :]  # -1/2 on the diagonal, skew-symmetric elsewhere
    diag = np.diagonal(S)
    # -i(S - diag) is Hermitian: its eigenvectors diagonalise S, its eigenvalues are Im Λ.
    lam_imag, V = np.linalg.eigh(-1j * (S - np.diag(diag)))
    return np.mean(diag) + 1j * lam_imag, V


@dataclasses.dataclass(frozen=True, kw_only=True)
class S5Config:
    """embed_dim M (the H of the paper); state_dim P (the official ssm_size, before conj_sym
    halves it); blocks, the number of HiPPO-N blocks of the init; conj_sym; discretisation "zoh"
    or "bilinear"; dt_min / dt_max, the range of the initial steps; C_init as the official
    option; clip_eigs keeps Re Λ <= -1e-4; backend / chunk_size go to `eos_scan`."""

    embed_dim: int
    state_dim: int = 256
    blocks: int = 1
    conj_sym: bool = True
    discretisation: str = "zoh"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    C_init: str = "trunc_standard_normal"
    clip_eigs: bool = False
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        for name in ("embed_dim", "state_dim", "blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"S5Config.{name} must be a positive int, got {value!r}")
        if self.state_dim % self.blocks:
            raise ValueError(
                f"S5Config.blocks={self.blocks} must divide state_dim={self.state_dim}"
            )
        if self.conj_sym and (self.state_dim // self.blocks) % 2:
            raise ValueError(
                f"S5Config.state_dim / blocks = {self.state_dim // self.blocks} must be even "
                "with conj_sym (each block keeps half of its conjugate pairs)"
            )
        if self.discretisation not in DISCRETISATIONS:
            raise ValueError(
                f"S5Config.discretisation must be one of {DISCRETISATIONS}, "
                f"got {self.discretisation!r}"
            )
        if self.C_init not in C_INITS:
            raise ValueError(f"S5Config.C_init must be one of {C_INITS}, got {self.C_init!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"S5Config.dt_min, dt_max must satisfy 0 < dt_min <= dt_max, "
                f"got dt_min={self.dt_min!r}, dt_max={self.dt_max!r}"
            )
        if self.backend not in eos.BACKENDS:
            raise ValueError(
                f"S5Config.backend must be one of {eos.BACKENDS}, got {self.backend!r}"
            )
        if self.chunk_size is not None and (
            not isinstance(self.chunk_size, int) or self.chunk_size < 1
        ):
            raise ValueError(
                f"S5Config.chunk_size must be a positive int or None, got {self.chunk_size!r}"
            )


class S5Block(nnx.Module):
    """The S5 SSM layer: u [B, T, M] -> y [B, T, M]; the cache is the complex state
    [B, 1, 1, P'] (P' = P/2 with conj_sym, else P)."""

    def __init__(self, config: S5Config, *, rngs: nnx.Rngs):
        if not isinstance(config, S5Config):
            raise TypeError(f"config must be an S5Config, got {type(config).__name__}")
        self.config = config
        M, P, nb = config.embed_dim, config.state_dim, config.blocks
        lam, V = hippo_n(P // nb)
        keep = P // nb // 2 if config.conj_sym else P // nb
        lam, V = lam[:keep], V[:, :keep]
        lam = np.tile(lam, nb)
        V_full = np.kron(np.eye(nb), V)  # block-diagonal, [P, P'] (P' = nb · keep)
        Vinv = V_full.conj().T  # [P', P]: V is unitary per block
        self.Lambda_re = nnx.Param(jnp.asarray(lam.real, jnp.float32))
        self.Lambda_im = nnx.Param(jnp.asarray(lam.imag, jnp.float32))
        # B and C are drawn real over the full state P, then mapped to the eigenbasis. In jnp
        # (not NumPy), so the block also builds abstractly (nnx.eval_shape in the training loop).
        hi = jax.lax.Precision.HIGHEST
        B = nnx.initializers.lecun_normal()(rngs.params(), (P, M)).astype(jnp.complex64)
        B_tilde = jnp.matmul(jnp.asarray(Vinv, jnp.complex64), B, precision=hi)
        self.B_re = nnx.Param(jnp.real(B_tilde).astype(jnp.float32))
        self.B_im = nnx.Param(jnp.imag(B_tilde).astype(jnp.float32))
        if config.C_init == "complex_normal":  # sampled directly in the eigenbasis
            C = jax.random.normal(rngs.params(), (M, lam.shape[0], 2)) * 0.5**0.5
            C_tilde = jax.lax.complex(C[..., 0], C[..., 1])
        else:
            # trunc_standard_normal: lecun_normal per output row (fan-in P); lecun_normal: over
            # the whole [M, P, 2] array (fan-in M · P), as jax's initialiser counts it.
            batch = (0,) if config.C_init == "trunc_standard_normal" else ()
            init = nnx.initializers.lecun_normal(batch_axis=batch)
            C = init(rngs.params(), (M, P, 2))
            C_tilde = jnp.matmul(
                jax.lax.complex(C[..., 0], C[..., 1]), jnp.asarray(V_full, jnp.complex64),
                precision=hi,
            )  # fmt: skip
        self.C_re = nnx.Param(jnp.real(C_tilde).astype(jnp.float32))
        self.C_im = nnx.Param(jnp.imag(C_tilde).astype(jnp.float32))
        self.D = nnx.Param(jax.random.normal(rngs.params(), (M,)))
        lo, hi = np.log(config.dt_min), np.log(config.dt_max)
        self.log_step = nnx.Param(
            lo + (hi - lo) * jax.random.uniform(rngs.params(), (lam.shape[0],))
        )

    def discretised(self):
        """(log Λ̄ [P'], B̄ [P', M]) complex64 of the current parameters."""
        lam_re = self.Lambda_re[...]
        if self.config.clip_eigs:
            lam_re = jnp.minimum(lam_re, -1e-4)
        lam = (lam_re + 1j * self.Lambda_im[...]).astype(jnp.complex64)
        step = jnp.exp(self.log_step[...]).astype(jnp.complex64)
        B = (self.B_re[...] + 1j * self.B_im[...]).astype(jnp.complex64)
        if self.config.discretisation == "zoh":
            log_bar = lam * step
            gain = jnp.expm1(log_bar) / lam
        else:
            half = step / 2 * lam
            log_bar = jnp.log1p(half) - jnp.log1p(-half)
            gain = step / (1 - half)
        return log_bar, gain[:, None] * B

    def _read(self, x_xP, u_xM):
        C = (self.C_re[...] + 1j * self.C_im[...]).astype(jnp.complex64)
        y = jnp.einsum("...p,mp->...m", x_xP, C).real
        if self.config.conj_sym:
            y = 2 * y
        D = self.D[...].reshape((1,) * (u_xM.ndim - 1) + (-1,))
        return (y + D * u_xM.astype(jnp.float32)).astype(u_xM.dtype)

    def __call__(self, x_BxTxM, *, segment_ids=None):
        B, T, _ = x_BxTxM.shape
        log_bar, B_bar = self.discretised()
        u = x_BxTxM.astype(jnp.float32).astype(jnp.complex64)
        i_BxTx1xP = jnp.einsum("btm,pm->btp", u, B_bar)[:, :, None]
        ones = jnp.ones((B, T, 1, 1), jnp.complex64)
        m_BxTx1xP, _ = eos.eos_scan(
            ones,
            i_BxTx1xP,
            log_bar.reshape(1, 1, 1, 1, -1),
            ones,
            segment_ids=segment_ids,
            backend=self.config.backend,
            chunk_size=self.config.chunk_size,
        )
        return self._read(m_BxTx1xP[:, :, 0], x_BxTxM)

    def init_cache(self, batch_size: int):
        return jnp.zeros((batch_size, 1, 1, self.Lambda_re.shape[0]), jnp.complex64)

    def step(self, x_BxM, cache):
        log_bar, B_bar = self.discretised()
        u = x_BxM.astype(jnp.float32).astype(jnp.complex64)
        i_Bx1xP = jnp.einsum("bm,pm->bp", u, B_bar)[:, None]
        ones = jnp.ones((x_BxM.shape[0], 1, 1), jnp.complex64)
        m_Bx1xP, state = eos.eos_step(ones, i_Bx1xP, log_bar.reshape(1, 1, 1, -1), ones, cache)
        return self._read(m_Bx1xP[:, 0], x_BxM), state
