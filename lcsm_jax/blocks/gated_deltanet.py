"""The Gated DeltaNet layer (Yang, Kautz and Hatamizadeh, "Gated Delta Networks: Improving Mamba2
with Delta Rule", arXiv 2412.06464: the gated delta rule and the block of its Fig. 1), as
`GatedDeltaNet` of github:fla-org/flash-linear-attention, fla/layers/gated_deltanet.py, builds it
(github:NVlabs/GatedDeltaNet, lit_gpt/gated_delta_net.py, is the same layer; it adds a bias to
W_b, which fla and this block do not):

    q, k, v = silu(conv(W_q x)), silu(conv(W_k x)), silu(conv(W_v x))   (short convs, SiLU)
    q, k    = q / ‖q‖, k / ‖k‖  per head                      (L2 norm, in the op)
    β_t     = sigmoid(W_b x_t),   g_t = -exp(A_log) · softplus(W_a x_t + dt_bias)   (per head)
    S_t     = (I - β_t k_t k_tᵀ) exp(g_t) S_{t-1} + β_t k_t v_tᵀ,   o_t = K^-½ S_tᵀ q_t
    y       = W_o (RMSNorm_head(o) ⊙ swish(W_g x))              (fla's FusedRMSNormGated)

(`ops.gated_delta_rule`), with fla's defaults (expand_v 2, short convs of 4 taps without bias,
output gate on) and fla's initialisation (`GatedDeltaNetPreTrainedModel._init_weights`): linear and
conv weights N(0, 0.02²), norm weights one, A = exp(A_log) ~ U(0, 16] (fla draws U(0, 16);
leaving 0 out keeps A_log finite), dt_bias = softplus⁻¹(dt), dt log-uniform in [1e-3, 0.1]
floored at 1e-4 (`blocks.mamba.inverse_softplus_dt_bias`). fla's head_dim 256 with 6 heads is
sized for hidden 2048 (num_heads · head_dim = 0.75 · hidden); head_dim None keeps that ratio at
any width. num_v_heads > num_heads is fla's grouped value attention: value head
j reads q and k of head j // (num_v_heads / num_heads).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops
from lcsm_jax.blocks.mamba import inverse_softplus_dt_bias
from lcsm_jax.blocks.parts import (
    CausalConv,
    HeadRMSNorm,
    check_positive,
    check_positive_ints,
    check_scan_options,
    step_convs,
)
from lcsm_jax.eos import DELTA_BACKENDS
from lcsm_jax.nn.init import dense

KEY_FRACTION = 0.75  # fla: num_heads · head_dim = 0.75 · hidden_size


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatedDeltaNetConfig:
    """embed_dim M; num_heads H of q and k; head_dim K (None: 0.75·M / H, fla's allocation);
    expand_v (value head width K·expand_v); num_v_heads (None: H; else a multiple of H); use_gate
    (output gate and fused norm-gate, else RMSNorm alone); use_short_conv / conv_size / conv_bias;
    allow_neg_eigval (β doubled); A_init_range of A = exp(A_log); dt_min / dt_max / dt_init_floor
    of dt_bias; norm_eps; backend ("auto", "reference", "chunked") and chunk_size go to
    `ops.gated_delta_rule`."""

    embed_dim: int
    num_heads: int = 6
    head_dim: int | None = None
    expand_v: float = 2.0
    num_v_heads: int | None = None
    use_gate: bool = True
    use_short_conv: bool = True
    conv_size: int = 4
    conv_bias: bool = False
    allow_neg_eigval: bool = False
    A_init_range: tuple[float, float] = (0.0, 16.0)
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    norm_eps: float = 1e-5
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        name = "GatedDeltaNetConfig"
        check_positive_ints(self, ("embed_dim", "num_heads", "conv_size"))
        if self.head_dim is not None:
            check_positive_ints(self, ("head_dim",))
        elif (KEY_FRACTION * self.embed_dim) % self.num_heads or self.head_k_dim < 1:
            raise ValueError(
                f"{name}.head_dim=None needs num_heads={self.num_heads} to divide 0.75 * "
                f"embed_dim = {KEY_FRACTION * self.embed_dim}; set head_dim"
            )
        if self.num_v_heads is not None:
            check_positive_ints(self, ("num_v_heads",))
            if self.num_v_heads % self.num_heads:
                raise ValueError(
                    f"{name}.num_v_heads={self.num_v_heads} must be a multiple of "
                    f"num_heads={self.num_heads}"
                )
        check_positive(self, ("expand_v", "dt_min", "dt_max", "dt_init_floor", "norm_eps"))
        width = self.head_k_dim * self.expand_v
        if width != int(width) or width < 1:
            raise ValueError(
                f"{name}.expand_v={self.expand_v} must make head_dim * expand_v a positive int, "
                f"got {width}"
            )
        if self.dt_min > self.dt_max:
            raise ValueError(f"{name}.dt_min must be <= dt_max, got {self.dt_min}, {self.dt_max}")
        lo, hi = self.A_init_range
        if not 0 <= lo <= hi or not hi > 0:
            raise ValueError(
                f"{name}.A_init_range needs 0 <= low <= high, high > 0, got {self.A_init_range!r}"
            )
        check_scan_options(self, DELTA_BACKENDS)

    @property
    def head_k_dim(self) -> int:
        if self.head_dim is not None:
            return self.head_dim
        return int(KEY_FRACTION * self.embed_dim) // self.num_heads

    @property
    def head_v_dim(self) -> int:
        return int(self.head_k_dim * self.expand_v)

    @property
    def v_heads(self) -> int:
        return self.num_heads if self.num_v_heads is None else self.num_v_heads

    @property
    def key_dim(self) -> int:
        return self.num_heads * self.head_k_dim

    @property
    def value_dim(self) -> int:
        return self.v_heads * self.head_v_dim


class GatedDeltaNetBlock(nnx.Module):
    """The Gated DeltaNet layer x [B, T, M] -> [B, T, M]; `step` decodes one token with the state
    [B, HV, K, V] (and the conv windows with `use_short_conv`) in the cache."""

    def __init__(self, config: GatedDeltaNetConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, GatedDeltaNetConfig):
            raise TypeError(f"config must be a GatedDeltaNetConfig, got {type(config).__name__}")
        self.config = config
        cfg, M, HV = config, config.embed_dim, config.v_heads
        Dk, Dv = cfg.key_dim, cfg.value_dim
        self.q_proj = dense(M, Dk, rngs)
        self.k_proj = dense(M, Dk, rngs)
        self.v_proj = dense(M, Dv, rngs)
        self.a_proj = dense(M, HV, rngs)
        self.b_proj = dense(M, HV, rngs)
        # A ~ U(lo, hi] (1 - u for u in [0, 1) keeps A > 0, so A_log is finite).
        lo, hi = cfg.A_init_range
        u = jax.random.uniform(rngs.params(), (HV,))
        self.A_log = nnx.Param(jnp.log(lo + (hi - lo) * (1.0 - u)))
        self.dt_bias = nnx.Param(
            inverse_softplus_dt_bias(rngs.params(), HV, cfg.dt_min, cfg.dt_max, cfg.dt_init_floor)
        )
        self.convs = (
            nnx.List(
                CausalConv(d, cfg.conv_size, bias=cfg.conv_bias, silu=True, rngs=rngs)
                for d in (Dk, Dk, Dv)
            )
            if cfg.use_short_conv
            else None
        )
        self.g_proj = dense(M, Dv, rngs) if cfg.use_gate else None
        self.o_norm = HeadRMSNorm(cfg.head_v_dim, eps=cfg.norm_eps)
        self.o_proj = dense(Dv, M, rngs)

    def _mix(self, x_BxTxM, q, k, v, segment_ids, initial_state, backend):
        """Everything after the convs: gates, the gated delta rule, the norm-gate, o_proj."""
        cfg, H, HV = self.config, self.config.num_heads, self.config.v_heads
        B, T, _ = x_BxTxM.shape
        # Grouped value attention: each q / k head serves HV / H consecutive value heads.
        q_BxTxHVxK, k_BxTxHVxK = (
            jnp.repeat(a.reshape(B, T, H, cfg.head_k_dim), HV // H, axis=2) for a in (q, k)
        )
        v_BxTxHVxV = v.reshape(B, T, HV, cfg.head_v_dim)
        beta_BxTxHV = jax.nn.sigmoid(self.b_proj(x_BxTxM).astype(jnp.float32))
        if cfg.allow_neg_eigval:
            beta_BxTxHV = 2.0 * beta_BxTxHV
        a_BxTxHV = self.a_proj(x_BxTxM).astype(jnp.float32) + self.dt_bias[...][None, None]
        g_BxTxHV = -jnp.exp(self.A_log[...])[None, None] * jax.nn.softplus(a_BxTxHV)
        o_BxTxHVxV, state = ops.gated_delta_rule(
            q_BxTxHVxK,
            k_BxTxHVxK,
            v_BxTxHVxV,
            g_BxTxHV,
            beta_BxTxHV,
            initial_state=initial_state,
            output_final_state=True,
            use_qk_l2norm_in_kernel=True,
            segment_ids=segment_ids,
            backend=backend,
            chunk_size=cfg.chunk_size,
        )
        gate = None
        if self.g_proj is not None:
            gate = self.g_proj(x_BxTxM).reshape(B, T, HV, cfg.head_v_dim)
        o = self.o_norm(o_BxTxHVxV, gate).reshape(B, T, cfg.value_dim)
        return self.o_proj(o), state

    def _qkv(self, x):
        qkv = [proj(x) for proj in (self.q_proj, self.k_proj, self.v_proj)]
        return qkv if self.convs is not None else [jax.nn.silu(a) for a in qkv]

    def __call__(self, x_BxTxM, *, segment_ids=None):
        qkv = self._qkv(x_BxTxM)
        if self.convs is not None:
            qkv = [conv(a, segment_ids) for conv, a in zip(self.convs, qkv, strict=True)]
        return self._mix(x_BxTxM, *qkv, segment_ids, None, self.config.backend)[0]

    def init_cache(self, batch_size: int):
        cfg = self.config
        shape = (batch_size, cfg.v_heads, cfg.head_k_dim, cfg.head_v_dim)
        cache = {"state": jnp.zeros(shape, jnp.float32)}
        if self.convs is not None:
            cache["conv"] = tuple(conv.init_cache(batch_size) for conv in self.convs)
        return cache

    def step(self, x_BxM, cache):
        qkv = self._qkv(x_BxM)
        new_cache = {}
        if self.convs is not None:
            qkv, new_cache["conv"] = step_convs(self.convs, qkv, cache["conv"])
        # One token: the sequential backend is one exact recurrence step.
        y, new_cache["state"] = self._mix(
            x_BxM[:, None], *(a[:, None] for a in qkv), None, cache["state"], "reference"
        )
        return y[:, 0], new_cache
