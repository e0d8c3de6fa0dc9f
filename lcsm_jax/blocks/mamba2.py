"""The Mamba-2 block (Dao and Gu, Transformers are SSMs: Generalized Models and Efficient
Algorithms Through Structured State Space Duality, arXiv 2405.21060, §7 and Fig. 6), as
`mamba_ssm/modules/mamba2.py` (and `mamba2_simple.py`) of github:state-spaces/mamba builds it:

    z, xBC, dt = in_proj(u)                    (order [z, x, B, C, dt]; no bias)
    x, B, C = silu(conv1d(xBC))                (one causal depthwise conv over x, B, C; bias)
    h_t = exp(Δ_t A_h) h_{t-1} + Δ_t x_t B_tᵀ,  y_t = h_t C_t + D_h x_t   (SSD, per head h)
    out = out_proj(RMSNorm_grouped(y ⊙ silu(z)))        (RMSNormGated, norm_before_gate=False)

with Δ = softplus(dt + dt_bias), dt_bias = softplus⁻¹ of a log-uniform dt in [dt_min, dt_max]
(floored at dt_init_floor), A = -exp(A_log), A_log = log U(A_init_range), D = 1 per head, the
norm's weight = 1 and its group size d_inner / ngroups (as mamba2.py). The conv follows PyTorch's
Conv1d init (U(±1/√d_conv)) as the official code does (conv_init=None); in_proj and out_proj use the
project's N(0, 0.02²) (`nn.init.dense`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops
from lcsm_jax.blocks.mamba import inverse_softplus_dt_bias
from lcsm_jax.blocks.parts import CausalConv, check_positive_ints
from lcsm_jax.nn.init import dense


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mamba2Config:
    """embed_dim M; d_state N; d_conv taps; expand E (d_inner = E·M); headdim P (must divide
    d_inner: H = d_inner / P heads; lower it for small widths); ngroups G of B and C (must divide
    H); A_init_range; dt_min / dt_max / dt_init_floor for dt_bias; conv_bias; bias (on in_proj /
    out_proj); norm_eps of the gated RMSNorm; backend and chunk_size of the SSD scan."""

    embed_dim: int
    d_state: int = 64
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    A_init_range: tuple[float, float] = (1.0, 16.0)
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    norm_eps: float = 1e-5
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        check_positive_ints(
            self, ("embed_dim", "d_state", "d_conv", "expand", "headdim", "ngroups")
        )
        if self.chunk_size is not None:
            check_positive_ints(self, ("chunk_size",))
        if self.d_inner % self.headdim:
            raise ValueError(
                f"Mamba2Config.headdim={self.headdim} must divide d_inner = expand * embed_dim = "
                f"{self.d_inner}"
            )
        if self.num_heads % self.ngroups:
            raise ValueError(
                f"Mamba2Config.ngroups={self.ngroups} must divide the {self.num_heads} heads"
            )
        lo, hi = self.A_init_range
        if not 0 < lo <= hi:
            raise ValueError(
                f"Mamba2Config.A_init_range needs 0 < low <= high, got {self.A_init_range!r}"
            )
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"Mamba2Config.dt_min / dt_max need 0 < dt_min <= dt_max, got "
                f"{self.dt_min!r}, {self.dt_max!r}"
            )
        if not self.dt_init_floor > 0:
            raise ValueError(f"Mamba2Config.dt_init_floor must be > 0, got {self.dt_init_floor!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"Mamba2Config.norm_eps must be > 0, got {self.norm_eps!r}")
        if not isinstance(self.backend, str):
            raise ValueError(f"Mamba2Config.backend must be a str, got {self.backend!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.embed_dim

    @property
    def num_heads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.ngroups * self.d_state


def gated_rms_norm(y, z, weight, group_size: int, eps: float):
    """mamba_ssm's RMSNormGated with norm_before_gate=False: RMSNorm(y ⊙ silu(z)) over groups of
    `group_size` channels, times `weight`; computed in float32 (the official `upcast`)."""
    g = y.astype(jnp.float32) * jax.nn.silu(z.astype(jnp.float32))
    grouped = g.reshape(g.shape[:-1] + (g.shape[-1] // group_size, group_size))
    rstd = jax.lax.rsqrt(jnp.mean(jnp.square(grouped), axis=-1, keepdims=True) + eps)
    out = (grouped * rstd).reshape(g.shape) * weight.reshape((1,) * (g.ndim - 1) + (-1,))
    return out.astype(y.dtype)


class Mamba2Block(nnx.Module):
    """The Mamba-2 mixer x [B, T, M] -> [B, T, M]; `step` decodes one token with the conv window
    and the SSM state [B, H, P, N] in the cache (as `mamba2.Mamba2.step`)."""

    def __init__(self, config: Mamba2Config, *, rngs: nnx.Rngs):
        if not isinstance(config, Mamba2Config):
            raise TypeError(f"config must be a Mamba2Config, got {type(config).__name__}")
        self.config = config
        cfg, H = config, config.num_heads
        self.in_proj = dense(cfg.embed_dim, cfg.d_inner + cfg.conv_dim + H, rngs, use_bias=cfg.bias)
        self.conv1d = CausalConv(
            cfg.conv_dim, cfg.d_conv, bias=cfg.conv_bias, init="torch", rngs=rngs
        )
        self.dt_bias = nnx.Param(
            inverse_softplus_dt_bias(rngs.params(), H, cfg.dt_min, cfg.dt_max, cfg.dt_init_floor)
        )
        lo, hi = cfg.A_init_range
        self.A_log = nnx.Param(
            jnp.log(jax.random.uniform(rngs.params(), (H,), minval=lo, maxval=hi))
        )
        self.D = nnx.Param(jnp.ones((H,)))
        self.norm_weight = nnx.Param(jnp.ones((cfg.d_inner,)))
        self.out_proj = dense(cfg.d_inner, cfg.embed_dim, rngs, use_bias=cfg.bias)

    def _split(self, zxbcdt):
        Di = self.config.d_inner
        return (
            zxbcdt[..., :Di],
            zxbcdt[..., Di : -self.config.num_heads],
            zxbcdt[..., -self.config.num_heads :],
        )

    def _ssd(self, xbc_BxTxC, dt_BxTxH, segment_ids=None, initial_states=None):
        cfg = self.config
        B, T = xbc_BxTxC.shape[:2]
        Di, GN = cfg.d_inner, cfg.ngroups * cfg.d_state
        x_BxTxHxP = xbc_BxTxC[..., :Di].reshape(B, T, cfg.num_heads, cfg.headdim)
        b_BxTxGxN = xbc_BxTxC[..., Di : Di + GN].reshape(B, T, cfg.ngroups, cfg.d_state)
        c_BxTxGxN = xbc_BxTxC[..., Di + GN :].reshape(B, T, cfg.ngroups, cfg.d_state)
        y_BxTxHxP, h_BxHxPxN = ops.ssd(
            x_BxTxHxP,
            dt_BxTxH,
            -jnp.exp(self.A_log[...]),
            b_BxTxGxN,
            c_BxTxGxN,
            chunk_size=cfg.chunk_size,
            D=self.D[...],
            dt_bias=self.dt_bias[...],
            initial_states=initial_states,
            seq_idx=segment_ids,
            dt_softplus=True,
            return_final_states=True,
            backend=cfg.backend,
        )
        return y_BxTxHxP.reshape(B, T, Di), h_BxHxPxN

    def _out(self, y, z):
        cfg = self.config
        y = gated_rms_norm(y, z, self.norm_weight[...], cfg.d_inner // cfg.ngroups, cfg.norm_eps)
        return self.out_proj(y)

    def __call__(self, x_BxTxM, *, segment_ids=None):
        z_BxTxDi, xbc_BxTxC, dt_BxTxH = self._split(self.in_proj(x_BxTxM))
        xbc_BxTxC = jax.nn.silu(self.conv1d(xbc_BxTxC, segment_ids))
        y_BxTxDi, _ = self._ssd(xbc_BxTxC, dt_BxTxH, segment_ids=segment_ids)
        return self._out(y_BxTxDi, z_BxTxDi)

    def init_cache(self, batch_size: int):
        cfg = self.config
        return {
            "conv": self.conv1d.init_cache(batch_size),
            "ssm": jnp.zeros((batch_size, cfg.num_heads, cfg.headdim, cfg.d_state), jnp.float32),
        }

    def step(self, x_BxM, cache):
        z_BxDi, xbc_BxC, dt_BxH = self._split(self.in_proj(x_BxM))
        xbc_BxC, conv = self.conv1d.step(xbc_BxC, cache["conv"])
        # One token of the SSD scan is one recurrence step from the cached state.
        y_Bx1xDi, h = self._ssd(
            jax.nn.silu(xbc_BxC)[:, None], dt_BxH[:, None], initial_states=cache["ssm"]
        )
        return self._out(y_Bx1xDi[:, 0], z_BxDi), {"conv": conv, "ssm": h}
