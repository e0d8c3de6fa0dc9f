"""Multi-scale retention (Sun, Dong, Huang, Ma, Xia, Xue, Wang and Wei, "Retentive Network: A
Successor to Transformer for Large Language Models", arXiv 2307.08621, §2.1-2.2), as
`MultiScaleRetention` of github:fla-org/flash-linear-attention, fla/layers/multiscale_retention.py,
builds it:

    q, k, v = W_q x, W_k x, W_v x                      (key width expand_k·M, value expand_v·M)
    q, k    = RoPE(q), RoPE(k)                          (rotary positions on q and k)
    S_t = γ_h S_{t-1} + k_t v_tᵀ,  o_t = K^-½ S_tᵀ q_t,  γ_h = 1 - 2^(-5-h)   (`ops.retention`)
    y = W_o (RMSNorm_head(o) ⊙ swish(W_g x))

Positions: the paper's xPos is the rotation e^{inθ} of q and k (its decay is γ); fla applies
the plain rotary embedding (GPT-NeoX layout: the two halves of a head rotate together,
θ_j = 10000^(-2j/K)) and so does this block; the official torchscale code (retnet.py,
`RetNetRelPos`) instead interleaves pairs with θ_j = 10000^(-j/(K/2-1)). Positions count from each
sequence's first token (fla's `cu_seqlens` behaviour), and from the cache's position when decoding.
The paper's GroupNorm per head is fla's per-head RMSNorm with a weight (torchscale uses RMSNorm
without one). Defaults are fla's: 8 heads, expand_k 1, expand_v 2, swish output gate; its model
init (`_init_weights`): linears N(0, 0.02²), norm weight one. torchscale's Xavier gains and the
scale-invariant re-normalisations of its parallel form are left out, as in fla.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops
from lcsm_jax.blocks.parts import (
    HeadRMSNorm,
    check_heads,
    check_positive,
    check_positive_ints,
    check_scan_options,
)
from lcsm_jax.nn.init import dense

ROPE_BASE = 10000.0


def positions(segment_ids_BxT, T: int, offset=0):
    """[B or 1, T] int32 position of each token in its sequence (from 0 at each id change), plus
    `offset` (the decoding position)."""
    t = jnp.arange(T, dtype=jnp.int32)[None]
    if segment_ids_BxT is None:
        return t + offset
    first = jnp.ones_like(segment_ids_BxT[:, :1], bool)
    starts = jnp.concatenate([first, segment_ids_BxT[:, 1:] != segment_ids_BxT[:, :-1]], axis=1)
    start_BxT = jax.lax.cummax(jnp.where(starts, t, 0), axis=1)
    return t - start_BxT + offset


def rotary(x_BxTxHxK, pos_BxT):
    """fla's `RotaryEmbedding` (interleaved=False): the halves (x1, x2) of each head rotate by
    pos·θ_j, θ_j = ROPE_BASE^(-2j/K); angles in float32."""
    K = x_BxTxHxK.shape[-1]
    inv_freq = ROPE_BASE ** (-jnp.arange(0, K, 2, dtype=jnp.float32) / K)
    angle = pos_BxT.astype(jnp.float32)[:, :, None, None] * inv_freq[None, None, None, :]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    x = x_BxTxHxK.astype(jnp.float32)
    x1, x2 = x[..., : K // 2], x[..., K // 2 :]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxTxHxK.dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetNetConfig:
    """embed_dim M; num_heads H (head h decays by 1 - 2^(-5-h)); expand_k / expand_v (key width
    int(M·expand_k), even per head for the rotation; value width int(M·expand_v));
    use_output_gate (else RMSNorm alone); norm_eps; backend and chunk_size go to
    `ops.retention`."""

    embed_dim: int
    num_heads: int = 8
    expand_k: float = 1.0
    expand_v: float = 2.0
    use_output_gate: bool = True
    norm_eps: float = 1e-5
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        check_positive_ints(self, ("embed_dim", "num_heads"))
        check_positive(self, ("expand_k", "expand_v", "norm_eps"))
        check_heads(self, ("key_dim", "value_dim"))
        if (self.key_dim // self.num_heads) % 2:
            raise ValueError(
                f"RetNetConfig.expand_k gives a head key width {self.key_dim // self.num_heads}; "
                "the rotary embedding needs it even"
            )
        check_scan_options(self)

    @property
    def key_dim(self) -> int:
        return int(self.embed_dim * self.expand_k)

    @property
    def value_dim(self) -> int:
        return int(self.embed_dim * self.expand_v)


class RetNetBlock(nnx.Module):
    """Multi-scale retention x [B, T, M] -> [B, T, M]; `step` decodes one token with the state
    [B, H, K, V] and the position in the cache."""

    def __init__(self, config: RetNetConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, RetNetConfig):
            raise TypeError(f"config must be a RetNetConfig, got {type(config).__name__}")
        self.config = config
        M, Dk, Dv = config.embed_dim, config.key_dim, config.value_dim
        self.q_proj = dense(M, Dk, rngs)
        self.k_proj = dense(M, Dk, rngs)
        self.v_proj = dense(M, Dv, rngs)
        self.g_proj = dense(M, Dv, rngs) if config.use_output_gate else None
        self.g_norm = HeadRMSNorm(Dv // config.num_heads, eps=config.norm_eps)
        self.o_proj = dense(Dv, M, rngs)

    def _mix(self, x_BxTxM, pos_BxT, segment_ids, initial_state):
        cfg, H = self.config, self.config.num_heads
        B, T, _ = x_BxTxM.shape
        heads = lambda a: a.reshape(B, T, H, a.shape[-1] // H)  # noqa: E731
        q_BxTxHxK = rotary(heads(self.q_proj(x_BxTxM)), pos_BxT)
        k_BxTxHxK = rotary(heads(self.k_proj(x_BxTxM)), pos_BxT)
        o_BxTxHxV, state = ops.retention(
            q_BxTxHxK,
            k_BxTxHxK,
            heads(self.v_proj(x_BxTxM)),
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
        pos_BxT = positions(segment_ids, x_BxTxM.shape[1])
        return self._mix(x_BxTxM, pos_BxT, segment_ids, None)[0]

    def init_cache(self, batch_size: int):
        cfg, H = self.config, self.config.num_heads
        shape = (batch_size, H, cfg.key_dim // H, cfg.value_dim // H)
        return {"state": jnp.zeros(shape, jnp.float32), "pos": jnp.zeros((), jnp.int32)}

    def step(self, x_BxM, cache):
        pos_BxT = positions(None, 1, cache["pos"])
        y, state = self._mix(x_BxM[:, None], pos_BxT, None, cache["state"])
        return y[:, 0], {"state": state, "pos": cache["pos"] + 1}
