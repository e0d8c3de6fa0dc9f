"""RWKV-6 "Finch" time-mix (Peng et al., "Eagle and Finch: RWKV with Matrix-Valued States and
Dynamic Recurrence", arXiv 2404.05892), following `RWKV_Tmix_x060` of github:BlinkDL/RWKV-LM,
RWKV-v5/src/model.py (fla's fla/layers/rwkv6.py is the same block in another layout).

    δ_t     = x_{t-1} - x_t                               (token shift, x_{-1} = 0)
    m_★     = tanh((x + δ ⊙ μ_x) A) B_★                    (ddlerp: one LoRA for ★ in w, k, v, r, g)
    x_★     = x + δ ⊙ (μ_★ + m_★)
    r, k, v = W_r x_r, W_k x_k, W_v x_v;   g = silu(W_g x_g)
    log w_t = -exp(d + tanh(x_w A_w) B_w)                  (data-dependent decay, per channel)
    o_t     = Σ_k r_t[k] (S_{t-1}[k] + u[k] k_t[k] v_t),   S_t = diag(w_t) S_{t-1} + k_t v_tᵀ
    y_t     = W_o (GroupNorm_heads(o_t) ⊙ g_t)

per head of `head_size` channels (`ops.rwkv6` with scale 1, as the CUDA kernel). The
initialisation is the official one: the μ, d (time_decay) and u (time_faaaa) ramps by depth
(`layer_id` of `num_layers`), LoRA A = 0 and B ~ U(-0.01, 0.01), and `generate_init_weight`'s
linears (receptance and value orthogonal, key and gate orthogonal with gain 0.1, output zero,
the GroupNorm weight ((1 + layer_id) / num_layers)^0.7). The zero output makes the block output
zero at init: it is meant to sit in a residual stream. The channel-mix is the model's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops
from lcsm_jax.blocks.rwkv4 import check_layer_position, depth_ratios, token_shift

_MIXES = 5  # the ddlerp targets, in the official order w, k, v, r, g


@dataclasses.dataclass(frozen=True, kw_only=True)
class RWKV6Config:
    """embed_dim M (also the attention width) in heads of head_size; layer_id of num_layers sets
    the depth-dependent init; mix_lora_rank / decay_lora_rank are the official D_MIX_LORA and
    D_DECAY_LORA; the GroupNorm epsilon is 1e-5 · head_size_divisor²; backend and chunk_size go
    to `ops.rwkv6`."""

    embed_dim: int
    head_size: int = 64
    layer_id: int = 0
    num_layers: int = 1
    mix_lora_rank: int = 32
    decay_lora_rank: int = 64
    head_size_divisor: float = 8.0
    backend: str = "auto"
    chunk_size: int | None = None

    def __post_init__(self):
        check_layer_position(self)
        for name in ("head_size", "mix_lora_rank", "decay_lora_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RWKV6Config.{name} must be a positive int, got {value!r}")
        if self.embed_dim % self.head_size:
            raise ValueError(
                f"RWKV6Config.head_size={self.head_size} must divide embed_dim={self.embed_dim}"
            )
        if not self.head_size_divisor > 0:
            raise ValueError(
                f"RWKV6Config.head_size_divisor must be > 0, got {self.head_size_divisor!r}"
            )
        if not isinstance(self.backend, str):
            raise ValueError(f"RWKV6Config.backend must be a str, got {self.backend!r}")
        if self.chunk_size is not None and (
            not isinstance(self.chunk_size, int) or self.chunk_size < 1
        ):
            raise ValueError(
                f"RWKV6Config.chunk_size must be a positive int or None, got {self.chunk_size!r}"
            )


class RWKV6Block(nnx.Module):
    """RWKV-6 time-mix: x [B, T, M] -> [B, T, M]; the cache holds the previous token and the
    [B, H, K, K] WKV state."""

    def __init__(self, config: RWKV6Config, *, rngs: nnx.Rngs):
        if not isinstance(config, RWKV6Config):
            raise TypeError(f"config must be an RWKV6Config, got {type(config).__name__}")
        self.config = config
        M, K = config.embed_dim, config.head_size
        H = M // K
        r01, r10 = depth_ratios(config.layer_id, config.num_layers)
        n = jnp.arange(M, dtype=jnp.float32)
        ramp = n / M
        self.time_maa_x = nnx.Param(1.0 - ramp**r10)
        self.time_maa_w = nnx.Param(1.0 - ramp**r10)
        self.time_maa_k = nnx.Param(1.0 - ramp**r10)
        self.time_maa_v = nnx.Param(1.0 - (ramp**r10 + 0.3 * r01))
        self.time_maa_r = nnx.Param(1.0 - ramp ** (0.5 * r10))
        self.time_maa_g = nnx.Param(1.0 - ramp ** (0.5 * r10))
        lora = lambda shape: jax.random.uniform(rngs.params(), shape, minval=-0.01, maxval=0.01)  # noqa: E731
        self.time_maa_w1 = nnx.Param(jnp.zeros((M, _MIXES * config.mix_lora_rank)))
        self.time_maa_w2 = nnx.Param(lora((_MIXES, config.mix_lora_rank, M)))
        frac = n / max(M - 1, 1)
        self.time_decay = nnx.Param(-6.0 + 5.0 * frac ** (0.7 + 1.3 * r01))
        self.time_decay_w1 = nnx.Param(jnp.zeros((M, config.decay_lora_rank)))
        self.time_decay_w2 = nnx.Param(lora((config.decay_lora_rank, M)))
        zigzag = ((n + 1) % 3 - 1) * 0.1
        self.time_faaaa = nnx.Param((r01 * (1.0 - frac) + zigzag).reshape(H, K))

        def linear(init):
            return nnx.Linear(M, M, use_bias=False, kernel_init=init, rngs=rngs)

        orthogonal = nnx.initializers.orthogonal
        self.receptance = linear(orthogonal())
        self.key = linear(orthogonal(0.1))
        self.value = linear(orthogonal())
        self.gate = linear(orthogonal(0.1))
        self.output = linear(nnx.initializers.zeros_init())
        layer_scale = (1 + config.layer_id) / config.num_layers
        self.ln_x_weight = nnx.Param(jnp.full((M,), layer_scale**0.7))
        self.ln_x_bias = nnx.Param(jnp.zeros((M,)))

    def _inputs(self, x, prev):
        """r, k, v, log w [..., H, K] and the gate g [..., M] from x and the shifted x."""
        lead = x.shape[:-1]
        row = lambda p: p[...].reshape((1,) * len(lead) + (-1,))  # noqa: E731
        delta = prev - x
        low = jnp.tanh((x + delta * row(self.time_maa_x)) @ self.time_maa_w1[...])
        low = low.reshape(*lead, _MIXES, self.config.mix_lora_rank)
        m = jnp.einsum("...fr,frm->f...m", low, self.time_maa_w2[...])
        mus = (self.time_maa_w, self.time_maa_k, self.time_maa_v, self.time_maa_r, self.time_maa_g)
        xw, xk, xv, xr, xg = (x + delta * (row(mu) + m[f]) for f, mu in enumerate(mus))
        ww = jnp.tanh(xw @ self.time_decay_w1[...]) @ self.time_decay_w2[...]
        log_w = -jnp.exp(row(self.time_decay) + ww)
        K = self.config.head_size
        heads = lambda a: a.reshape(*lead, -1, K)  # noqa: E731
        r, k, v = heads(self.receptance(xr)), heads(self.key(xk)), heads(self.value(xv))
        return r, k, v, heads(log_w), jax.nn.silu(self.gate(xg))

    def _out(self, o_xHxK, g):
        """Per-head GroupNorm (float32 statistics), the silu gate and the output projection."""
        o = o_xHxK.astype(jnp.float32)
        mean = jnp.mean(o, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(o - mean), axis=-1, keepdims=True)
        eps = 1e-5 * self.config.head_size_divisor**2
        o = ((o - mean) * jax.lax.rsqrt(var + eps)).reshape(g.shape)
        lead = (1,) * (g.ndim - 1)
        o = o * self.ln_x_weight[...].reshape(*lead, -1) + self.ln_x_bias[...].reshape(*lead, -1)
        return self.output(o.astype(g.dtype) * g)

    def __call__(self, x_BxTxM, *, segment_ids=None):
        r, k, v, log_w, g = self._inputs(x_BxTxM, token_shift(x_BxTxM, segment_ids))
        o_BxTxHxK, _ = ops.rwkv6(
            r,
            k,
            v,
            log_w,
            self.time_faaaa[...],
            scale=1.0,
            segment_ids=segment_ids,
            backend=self.config.backend,
            chunk_size=self.config.chunk_size,
        )
        return self._out(o_BxTxHxK, g)

    def init_cache(self, batch_size: int):
        M, K = self.config.embed_dim, self.config.head_size
        return {
            "x": jnp.zeros((batch_size, M), jnp.float32),
            "state": jnp.zeros((batch_size, M // K, K, K), jnp.float32),
        }

    def step(self, x_BxM, cache):
        r, k, v, log_w, g = self._inputs(x_BxM, cache["x"].astype(x_BxM.dtype))
        o_Bx1xHxK, state = ops.rwkv6(
            r[:, None],
            k[:, None],
            v[:, None],
            log_w[:, None],
            self.time_faaaa[...],
            scale=1.0,
            initial_state=cache["state"],
            output_final_state=True,
            backend=self.config.backend,
        )
        y = self._out(o_Bx1xHxK[:, 0], g)
        return y, {"x": x_BxM.astype(jnp.float32), "state": state}
