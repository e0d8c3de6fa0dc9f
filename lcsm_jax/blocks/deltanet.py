"""The DeltaNet layer (Yang, Wang, Zhang, Shen and Kim, "Parallelizing Linear Transformers with the
Delta Rule over Sequence Length", arXiv 2406.06484: the delta rule and the DeltaNet layer), as
`DeltaNet` of github:fla-org/flash-linear-attention, fla/layers/delta_net.py, builds it:

    q, k, v = silu(conv(W_q x)), silu(conv(W_k x)), silu(conv(W_v x))   (short convs, SiLU)
    q, k    = q / ‖q‖, k / ‖k‖  per head                    (qk_norm "l2", in the op)
    β_t     = sigmoid(W_b x_t)  per head                   (use_beta; 2β with allow_neg_eigval)
    S_t     = (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,   o_t = K^-½ S_tᵀ q_t   (`ops.delta_rule`)
    y       = W_o RMSNorm_head(o)                          (use_gate: RMSNorm(o) ⊙ swish(W_g x))

with fla's defaults (4 heads, expand_k = expand_v = 1, short convs of 4 taps without bias,
qk_activation "silu", qk_norm "l2", use_beta, no output gate) and fla's model initialisation
(`DeltaNetPreTrainedModel._init_weights`): linear and conv weights N(0, 0.02²), biases zero, norm
weights one. The other fla options are kept: qk_activation "relu" / "elu" (elu + 1) / "identity"
(the q, k convs then have no activation; v's keeps SiLU), qk_norm "sum" (q / Σq, k / Σk) and
allow_neg_eigval (β ∈ (0, 2), arXiv 2411.12537).
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
from lcsm_jax.eos import DELTA_BACKENDS
from lcsm_jax.nn.init import dense

QK_ACTIVATIONS = ("silu", "relu", "elu", "identity")
QK_NORMS = ("l2", "sum")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeltaNetConfig:
    """embed_dim M; num_heads H; expand_k / expand_v (key width int(M·expand_k), value width
    int(M·expand_v), both split over H heads); use_beta (else β = 1); use_gate (output gate and
    fused norm-gate, else RMSNorm alone); use_short_conv / conv_size / conv_bias;
    allow_neg_eigval (β doubled); qk_activation ("silu", "relu", "elu", "identity") and qk_norm
    ("l2", "sum") of q and k; norm_eps; backend ("auto", "reference", "chunked") and chunk_size go
    to `ops.delta_rule`."""

    embed_dim: int
    num_heads: int = 4
    expand_k: float = 1.0
    expand_v: float = 1.0
    use_beta: bool = True
    use_gate: bool = False
    use_short_conv: bool = True
    conv_size: int = 4
    conv_bias: bool = False
    allow_neg_eigval: bool = False
    qk_activation: str = "silu"
    qk_norm: str = "l2"
    norm_eps: float = 1e-5
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        check_positive_ints(self, ("embed_dim", "num_heads", "conv_size"))
        check_positive(self, ("expand_k", "expand_v", "norm_eps"))
        check_heads(self, ("key_dim", "value_dim"))
        if self.qk_activation not in QK_ACTIVATIONS:
            raise ValueError(
                f"DeltaNetConfig.qk_activation must be one of {QK_ACTIVATIONS}, got "
                f"{self.qk_activation!r}"
            )
        if self.qk_norm not in QK_NORMS:
            raise ValueError(
                f"DeltaNetConfig.qk_norm must be one of {QK_NORMS}, got {self.qk_norm!r}"
            )
        check_scan_options(self, DELTA_BACKENDS)

    @property
    def key_dim(self) -> int:
        return int(self.embed_dim * self.expand_k)

    @property
    def value_dim(self) -> int:
        return int(self.embed_dim * self.expand_v)


def _qk_activation(name: str, x):
    """fla's activations of q and k after the head split (SiLU is applied by the conv)."""
    if name == "relu":
        return jax.nn.relu(x)
    if name == "elu":
        return jax.nn.elu(x) + 1.0
    return x


class DeltaNetBlock(nnx.Module):
    """The DeltaNet layer x [B, T, M] -> [B, T, M]; `step` decodes one token with the state
    [B, H, K, V] (and the conv windows with `use_short_conv`) in the cache."""

    def __init__(self, config: DeltaNetConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, DeltaNetConfig):
            raise TypeError(f"config must be a DeltaNetConfig, got {type(config).__name__}")
        self.config = config
        cfg, M = config, config.embed_dim
        Dk, Dv = cfg.key_dim, cfg.value_dim
        self.q_proj = dense(M, Dk, rngs)
        self.k_proj = dense(M, Dk, rngs)
        self.v_proj = dense(M, Dv, rngs)
        self.b_proj = dense(M, cfg.num_heads, rngs) if cfg.use_beta else None
        qk_silu = cfg.qk_activation == "silu"
        self.convs = (
            nnx.List(
                CausalConv(d, cfg.conv_size, bias=cfg.conv_bias, silu=silu, rngs=rngs)
                for d, silu in ((Dk, qk_silu), (Dk, qk_silu), (Dv, True))
            )
            if cfg.use_short_conv
            else None
        )
        self.g_proj = dense(M, Dv, rngs) if cfg.use_gate else None
        self.o_norm = HeadRMSNorm(Dv // cfg.num_heads, eps=cfg.norm_eps)
        self.o_proj = dense(Dv, M, rngs)

    def _no_conv(self, q, k, v):
        """Without short convs fla applies the SiLUs directly (v always, q and k for "silu")."""
        if self.config.qk_activation == "silu":
            q, k = jax.nn.silu(q), jax.nn.silu(k)
        return q, k, jax.nn.silu(v)

    def _mix(self, x_BxTxM, q, k, v, segment_ids, initial_state, backend):
        """Everything after the convs: activations, β, the delta rule, the norm (-gate), o_proj."""
        cfg, H = self.config, self.config.num_heads
        B, T, _ = x_BxTxM.shape
        heads = lambda a: a.reshape(B, T, H, a.shape[-1] // H)  # noqa: E731
        q_BxTxHxK, k_BxTxHxK = (_qk_activation(cfg.qk_activation, heads(a)) for a in (q, k))
        if cfg.qk_norm == "sum":
            q_BxTxHxK = q_BxTxHxK / jnp.sum(q_BxTxHxK, axis=-1, keepdims=True)
            k_BxTxHxK = k_BxTxHxK / jnp.sum(k_BxTxHxK, axis=-1, keepdims=True)
        if self.b_proj is not None:
            beta_BxTxH = jax.nn.sigmoid(self.b_proj(x_BxTxM).astype(jnp.float32))
        else:
            beta_BxTxH = jnp.ones((B, T, H), jnp.float32)
        if cfg.allow_neg_eigval:
            beta_BxTxH = 2.0 * beta_BxTxH
        o_BxTxHxV, state = ops.delta_rule(
            q_BxTxHxK,
            k_BxTxHxK,
            heads(v),
            beta_BxTxH,
            initial_state=initial_state,
            output_final_state=True,
            use_qk_l2norm_in_kernel=cfg.qk_norm == "l2",
            segment_ids=segment_ids,
            backend=backend,
            chunk_size=cfg.chunk_size,
        )
        gate = None if self.g_proj is None else heads(self.g_proj(x_BxTxM))
        o = self.o_norm(o_BxTxHxV, gate).reshape(B, T, cfg.value_dim)
        return self.o_proj(o), state

    def __call__(self, x_BxTxM, *, segment_ids=None):
        qkv = [proj(x_BxTxM) for proj in (self.q_proj, self.k_proj, self.v_proj)]
        if self.convs is not None:
            qkv = [conv(a, segment_ids) for conv, a in zip(self.convs, qkv, strict=True)]
        else:
            qkv = self._no_conv(*qkv)
        return self._mix(x_BxTxM, *qkv, segment_ids, None, self.config.backend)[0]

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
        else:
            qkv = self._no_conv(*qkv)
        # One token: the sequential backend is one exact recurrence step.
        y, new_cache["state"] = self._mix(
            x_BxM[:, None], *(a[:, None] for a in qkv), None, cache["state"], "reference"
        )
        return y[:, 0], new_cache
