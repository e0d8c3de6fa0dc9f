"""The Mamba block (Gu and Dao, Mamba: Linear-Time Sequence Modeling with Selective State Spaces,
arXiv 2312.00752, §3 and Fig. 3), as `mamba_ssm/modules/mamba_simple.py` of
github:state-spaces/mamba builds it:

    x, z = in_proj(u)                          (expand E: two [E·M] halves, no bias)
    x = silu(conv1d(x))                        (causal depthwise, d_conv taps, with bias)
    Δ_low, B, C = x_proj(x)                    (dt_rank, d_state, d_state)
    Δ = softplus(dt_proj(Δ_low))               (dt_proj with bias)
    h_t = exp(Δ_t ⊗ A) ⊙ h_{t-1} + (Δ_t ⊙ x_t) ⊗ B_t,   y_t = h_t C_t + D ⊙ x_t   (selective scan)
    out = out_proj(y ⊙ silu(z))

with A = -exp(A_log), A_log = log(1..d_state) per channel (S4D-real), D = 1, and the dt init of the
official code: softplus(dt_proj.bias) log-uniform in [dt_min, dt_max] (floored at dt_init_floor),
dt_proj.weight ~ U(±dt_scale·dt_rank^-½) ("random") or that constant ("constant"). The conv follows
PyTorch's Conv1d init (U(±1/√d_conv), weight and bias) as the official code does; in_proj, x_proj
and out_proj use the project's N(0, 0.02²) (`nn.init.dense`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops
from lcsm_jax.blocks.parts import CausalConv, check_positive_ints
from lcsm_jax.nn.init import dense


def inverse_softplus_dt_bias(key, size, dt_min, dt_max, dt_init_floor):
    """The official dt bias: dt log-uniform in [dt_min, dt_max], floored, then softplus⁻¹(dt)."""
    u = jax.random.uniform(key, (size,))
    dt = jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = jnp.maximum(dt, dt_init_floor)
    return dt + jnp.log(-jnp.expm1(-dt))  # softplus⁻¹, stable for small dt


@dataclasses.dataclass(frozen=True, kw_only=True)
class MambaConfig:
    """embed_dim M; d_state N; d_conv taps; expand E (d_inner = E·M); dt_rank (None: ⌈M/16⌉);
    dt_min / dt_max / dt_init_floor / dt_scale / dt_init ("random" or "constant") for Δ;
    conv_bias; bias (on in_proj / out_proj); backend and chunk_size of the selective scan."""

    embed_dim: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init: str = "random"
    dt_scale: float = 1.0
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        check_positive_ints(self, ("embed_dim", "d_state", "d_conv", "expand"))
        if self.dt_rank is not None:
            check_positive_ints(self, ("dt_rank",))
        if self.chunk_size is not None:
            check_positive_ints(self, ("chunk_size",))
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"MambaConfig.dt_min / dt_max need 0 < dt_min <= dt_max, got "
                f"{self.dt_min!r}, {self.dt_max!r}"
            )
        if not self.dt_init_floor > 0:
            raise ValueError(f"MambaConfig.dt_init_floor must be > 0, got {self.dt_init_floor!r}")
        if not self.dt_scale > 0:
            raise ValueError(f"MambaConfig.dt_scale must be > 0, got {self.dt_scale!r}")
        if self.dt_init not in ("random", "constant"):
            raise ValueError(
                f"MambaConfig.dt_init must be 'random' or 'constant', got {self.dt_init!r}"
            )
        if not isinstance(self.backend, str):
            raise ValueError(f"MambaConfig.backend must be a str, got {self.backend!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.embed_dim

    @property
    def rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.embed_dim / 16)


class MambaBlock(nnx.Module):
    """The Mamba mixer x [B, T, M] -> [B, T, M]; `step` decodes one token with the conv window
    and the SSM state [B, d_inner, d_state] in the cache (as `mamba_simple.Mamba.step`)."""

    def __init__(self, config: MambaConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, MambaConfig):
            raise TypeError(f"config must be a MambaConfig, got {type(config).__name__}")
        self.config = config
        M, D, N, R = config.embed_dim, config.d_inner, config.d_state, config.rank
        self.in_proj = dense(M, 2 * D, rngs, use_bias=config.bias)
        self.conv1d = CausalConv(D, config.d_conv, bias=config.conv_bias, init="torch", rngs=rngs)
        self.x_proj = dense(D, R + 2 * N, rngs)
        # Δ's init keeps softplus(dt_proj(·)) in [dt_min, dt_max] at the start ("preserve
        # variance", mamba_simple.py).
        std = config.dt_scale * R**-0.5
        if config.dt_init == "random":
            kernel_init = lambda key, shape, dtype: jax.random.uniform(  # noqa: E731
                key, shape, dtype, minval=-std, maxval=std
            )
        else:
            kernel_init = nnx.initializers.constant(std)
        bias_init = lambda key, shape, dtype: inverse_softplus_dt_bias(  # noqa: E731
            key, shape[0], config.dt_min, config.dt_max, config.dt_init_floor
        ).astype(dtype)
        self.dt_proj = nnx.Linear(
            R, D, use_bias=True, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs
        )
        # S4D-real: A[d, n] = -(n + 1), kept as a log so that A stays negative.
        self.A_log = nnx.Param(jnp.log(jnp.tile(jnp.arange(1, N + 1, dtype=jnp.float32), (D, 1))))
        self.D = nnx.Param(jnp.ones((D,)))
        self.out_proj = dense(D, M, rngs, use_bias=config.bias)

    def _in_proj(self, x_BxTxM):
        xz = self.in_proj(x_BxTxM)
        return jnp.split(xz, 2, axis=-1)

    def _dt_b_c(self, x):
        R, N = self.config.rank, self.config.d_state
        dbl = self.x_proj(x)
        dt_low, b, c = dbl[..., :R], dbl[..., R : R + N], dbl[..., R + N :]
        # dt_proj without its bias: the scan adds it before the softplus (delta_bias).
        return dt_low @ self.dt_proj.kernel[...], b, c

    def __call__(self, x_BxTxM, *, segment_ids=None):
        x_BxTxD, z_BxTxD = self._in_proj(x_BxTxM)
        x_BxTxD = jax.nn.silu(self.conv1d(x_BxTxD, segment_ids))
        dt_BxTxD, b_BxTxN, c_BxTxN = self._dt_b_c(x_BxTxD)
        A_DxN = -jnp.exp(self.A_log[...])
        to_bdl = lambda a: jnp.swapaxes(a, 1, 2)  # noqa: E731  (mamba_ssm's [B, D, L] layout)
        y_BxDxT = ops.selective_scan(
            to_bdl(x_BxTxD),
            to_bdl(dt_BxTxD),
            A_DxN,
            to_bdl(b_BxTxN),
            to_bdl(c_BxTxN),
            D=self.D[...],
            z=to_bdl(z_BxTxD),
            delta_bias=self.dt_proj.bias[...],
            delta_softplus=True,
            segment_ids=segment_ids,
            backend=self.config.backend,
            chunk_size=self.config.chunk_size,
        )
        return self.out_proj(to_bdl(y_BxDxT))

    def init_cache(self, batch_size: int):
        cfg = self.config
        return {
            "conv": self.conv1d.init_cache(batch_size),
            "ssm": jnp.zeros((batch_size, cfg.d_inner, cfg.d_state), jnp.float32),
        }

    def step(self, x_BxM, cache):
        x_BxD, z_BxD = self._in_proj(x_BxM)
        x_BxD, conv = self.conv1d.step(x_BxD, cache["conv"])
        x_BxD = jax.nn.silu(x_BxD)
        dt_BxD, b_BxN, c_BxN = self._dt_b_c(x_BxD)
        # The recurrence in float32, as the selective scan accumulates.
        x32, b32, c32 = (a.astype(jnp.float32) for a in (x_BxD, b_BxN, c_BxN))
        dt_BxD = jax.nn.softplus(dt_BxD.astype(jnp.float32) + self.dt_proj.bias[...][None])
        A_DxN = -jnp.exp(self.A_log[...])
        decay_BxDxN = jnp.exp(dt_BxD[:, :, None] * A_DxN[None])
        h_BxDxN = decay_BxDxN * cache["ssm"] + (dt_BxD * x32)[:, :, None] * b32[:, None, :]
        y_BxD = jnp.einsum("bdn,bn->bd", h_BxDxN, c32) + self.D[...][None] * x32
        y_BxD = (y_BxD * jax.nn.silu(z_BxD.astype(jnp.float32))).astype(x_BxM.dtype)
        return self.out_proj(y_BxD), {"conv": conv, "ssm": h_BxDxN}
