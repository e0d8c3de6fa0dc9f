"""The gated linear attention layer (Yang, Wang, Shen, Panda and Kim, "Gated Linear Attention
Transformers with Hardware-Efficient Training", arXiv 2312.06635, §4, the GLA Transformer layer), as
`GatedLinearAttention` of github:fla-org/flash-linear-attention, fla/layers/gla.py, builds it:

    q, k, v = W_q x, W_k x, W_v x                  (key width expand_k·M, value width expand_v·M)
    g_t     = logsigmoid(W_2 W_1 x_t + b_2) / 16    (low-rank gate, rank 16; clamped at clamp_min)
    S_t     = diag(exp g_t) S_{t-1} + k_t v_tᵀ,   o_t = K^-½ S_tᵀ q_t      (`ops.gla`, per head)
    y       = W_o (RMSNorm_head(o) ⊙ swish(W_r x))  (fla's fused norm-gate; the paper's LayerNorm)

with fla's defaults (4 heads, expand_k 0.5, expand_v 1, no short conv) and fla's model
initialisation (`GLAPreTrainedModel._init_weights`): every linear and conv weight N(0, 0.02²),
biases zero, norm weights one. With `use_short_conv`, q, k and v each pass a causal depthwise conv
and SiLU first (fla's `ShortConvolution(activation='silu')`).

"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops
from lcsm_jax.blocks.parts import (
    CausalConv,
    HeadRMSNorm,
    check_heads,
    check_positive,
    check_positive_ints,
    check_scan_options,
    step_convs,
)
from lcsm_jax.nn.init import dense


@dataclasses.dataclass(frozen=True, kw_only=True)
class GLAConfig:
    """embed_dim M; num_heads H; expand_k / expand_v (key width int(M·expand_k), value width
    int(M·expand_v), both split over H heads); gate_low_rank_dim and gate_logit_normalizer of the
    forget gate, clamp_min (None: no clamp) its lower clamp in log space; use_output_gate (else
    RMSNorm alone); use_short_conv / conv_size / conv_bias; norm_eps; backend and chunk_size go
    to `ops.gla`."""

    embed_dim: int
    num_heads: int = 4
    expand_k: float = 0.5
    expand_v: float = 1.0
    gate_low_rank_dim: int = 16
    gate_logit_normalizer: float = 16.0
    clamp_min: float | None = None
    use_output_gate: bool = True
    use_short_conv: bool = False
    conv_size: int = 4
    conv_bias: bool = False
    norm_eps: float = 1e-5
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        check_positive_ints(self, ("embed_dim", "num_heads", "gate_low_rank_dim", "conv_size"))
        check_positive(self, ("expand_k", "expand_v", "gate_logit_normalizer", "norm_eps"))
        check_heads(self, ("key_dim", "value_dim"))
        if self.clamp_min is not None and not (
            isinstance(self.clamp_min, (int, float)) and self.clamp_min < 0
        ):
            raise ValueError(f"GLAConfig.clamp_min must be None or < 0, got {self.clamp_min!r}")
        check_scan_options(self)

    @property
    def key_dim(self) -> int:
        return int(self.embed_dim * self.expand_k)

    @property
    def value_dim(self) -> int:
        return int(self.embed_dim * self.expand_v)


class GLABlock(nnx.Module):
    """The GLA layer x [B, T, M] -> [B, T, M]; `step` decodes one token with the state
    [B, H, K, V] (and the conv windows with `use_short_conv`) in the cache."""

    def __init__(self, config: GLAConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, GLAConfig):
            raise TypeError(f"config must be a GLAConfig, got {type(config).__name__}")
        self.config = config
        cfg, M = config, config.embed_dim
        Dk, Dv = cfg.key_dim, cfg.value_dim
        self.q_proj = dense(M, Dk, rngs)
        self.k_proj = dense(M, Dk, rngs)
        self.v_proj = dense(M, Dv, rngs)
        self.g_proj = dense(M, Dv, rngs) if cfg.use_output_gate else None
        self.gk_down = dense(M, cfg.gate_low_rank_dim, rngs)
        self.gk_up = dense(cfg.gate_low_rank_dim, Dk, rngs, use_bias=True)
        self.convs = (
            nnx.List(
                CausalConv(d, cfg.conv_size, bias=cfg.conv_bias, silu=True, rngs=rngs)
                for d in (Dk, Dk, Dv)
            )
            if cfg.use_short_conv
            else None
        )
        self.g_norm = HeadRMSNorm(Dv // cfg.num_heads, eps=cfg.norm_eps)
        self.o_proj = dense(Dv, M, rngs)

    def _mix(self, x_BxTxM, q, k, v, segment_ids, initial_state):
        """Everything after the (optional) convs: the gate, the scan, the norm-gate, o_proj."""
        cfg, H = self.config, self.config.num_heads
        B, T, _ = x_BxTxM.shape
        heads = lambda a: a.reshape(B, T, H, a.shape[-1] // H)  # noqa: E731
        gk = self.gk_up(self.gk_down(x_BxTxM)).astype(jnp.float32)
        g_BxTxHxK = jax.nn.log_sigmoid(gk) / cfg.gate_logit_normalizer
        if cfg.clamp_min is not None:
            g_BxTxHxK = jnp.maximum(g_BxTxHxK, cfg.clamp_min)
        o_BxTxHxV, state = ops.gla(
            heads(q),
            heads(k),
            heads(v),
            heads(g_BxTxHxK),
            initial_state=initial_state,
            output_final_state=True,
            segment_ids=segment_ids,
            backend=cfg.backend,
            chunk_size=cfg.chunk_size,
        )
        gate = None if self.g_proj is None else heads(self.g_proj(x_BxTxM))
        o = self.g_norm(o_BxTxHxV, gate).reshape(B, T, cfg.value_dim)
        return self.o_proj(o), state

    def __call__(self, x_BxTxM, *, segment_ids=None):
        qkv = [proj(x_BxTxM) for proj in (self.q_proj, self.k_proj, self.v_proj)]
        if self.convs is not None:
            qkv = [conv(a, segment_ids) for conv, a in zip(self.convs, qkv, strict=True)]
        return self._mix(x_BxTxM, *qkv, segment_ids, None)[0]

    def init_cache(self, batch_size: int):
        cfg = self.config
        H, Dk, Dv = cfg.num_heads, cfg.key_dim, cfg.value_dim
        cache = {"state": jnp.zeros((batch_size, H, Dk // H, Dv // H), jnp.float32)}
        if self.convs is not None:
            cache["conv"] = tuple(conv.init_cache(batch_size) for conv in self.convs)
        return cache

    def step(self, x_BxM, cache):
        qkv = [proj(x_BxM) for proj in (self.q_proj, self.k_proj, self.v_proj)]
        new_cache = {}
        if self.convs is not None:
            qkv, new_cache["conv"] = step_convs(self.convs, qkv, cache["conv"])
        y, new_cache["state"] = self._mix(
            x_BxM[:, None], *(a[:, None] for a in qkv), None, cache["state"]
        )
        return y[:, 0], new_cache
