"""RWKV-4 time-mix (Peng et al., "RWKV: Reinventing RNNs for the Transformer Era",
arXiv 2305.13048), following `RWKV_TimeMix` of github:BlinkDL/RWKV-LM, RWKV-v4/src/model.py.

    x'_t    = x_{t-1}                                 (token shift, x_{-1} = 0)
    k, v, r = W_k (μ_k x + (1-μ_k) x'), W_v (μ_v x + (1-μ_v) x'), W_r (μ_r x + (1-μ_r) x')
    wkv_t   = (Σ_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u+k_t} v_t)
              / (Σ_{i<t} e^{-(t-1-i)w + k_i} + e^{u+k_t})
    y_t     = W_o (σ(r_t) ⊙ wkv_t)

with the per-channel decay rate w = exp(time_decay) >= 0 (the CUDA kernel's `-exp(time_decay)`)
and bonus u = time_first; `ops.rwkv4_wkv` computes the WKV in log-sum-exp form. The initialisation
is the official one: the time_decay, time_first and time_mix ramps depend on the layer's depth
(`layer_id` of `num_layers`), and key, receptance and output start at zero, value orthogonal
(`RWKV_Init`, `scale_init = 0`). The zero output makes the block output zero at init: it is
meant to sit in a residual stream. The channel-mix (the RWKV FFN) is the model's, not this block's.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax import ops

WKV_BACKENDS = ("auto", "associative", "reference")  # those of `ops.rwkv4_wkv`


def depth_ratios(layer_id: int, num_layers: int) -> tuple[float, float]:
    """RWKV's (ratio_0_to_1, ratio_1_to_almost0) of a layer; one layer counts as the first."""
    return layer_id / max(num_layers - 1, 1), 1.0 - layer_id / num_layers


def token_shift(x_BxTxM, segment_ids=None):
    """x_{t-1} (zeros at t = 0 and wherever a packed sequence starts)."""
    prev = jnp.pad(x_BxTxM, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    if segment_ids is None:
        return prev
    same = jnp.pad(segment_ids, ((0, 0), (1, 0)), constant_values=-1)[:, :-1] == segment_ids
    return jnp.where(same[..., None], prev, 0)


def check_layer_position(config) -> None:
    """ValueErrors naming the field for `layer_id` / `num_layers` of an RWKV config."""
    name = type(config).__name__
    for field in ("embed_dim", "num_layers"):
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}.{field} must be a positive int, got {value!r}")
    if not isinstance(config.layer_id, int) or not 0 <= config.layer_id < config.num_layers:
        raise ValueError(
            f"{name}.layer_id must be an int in [0, num_layers={config.num_layers}), "
            f"got {config.layer_id!r}"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RWKV4Config:
    """embed_dim M (also the attention width, as in RWKV-v4); layer_id of num_layers sets the
    depth-dependent init; backend is passed to `ops.rwkv4_wkv`."""

    embed_dim: int
    layer_id: int = 0
    num_layers: int = 1
    backend: str = "auto"

    def __post_init__(self):
        check_layer_position(self)
        if self.backend not in WKV_BACKENDS:
            raise ValueError(
                f"RWKV4Config.backend must be one of {WKV_BACKENDS}, got {self.backend!r}"
            )


class RWKV4Block(nnx.Module):
    """RWKV-4 time-mix: x [B, T, M] -> [B, T, M]; the cache holds the previous token and the WKV
    state (num, den, max exponent)."""

    def __init__(self, config: RWKV4Config, *, rngs: nnx.Rngs):
        if not isinstance(config, RWKV4Config):
            raise TypeError(f"config must be an RWKV4Config, got {type(config).__name__}")
        self.config = config
        M = config.embed_dim
        r01, r10 = depth_ratios(config.layer_id, config.num_layers)
        h = jnp.arange(M, dtype=jnp.float32)
        self.time_decay = nnx.Param(-5.0 + 8.0 * (h / max(M - 1, 1)) ** (0.7 + 1.3 * r01))
        zigzag = ((h + 1) % 3 - 1) * 0.5
        self.time_first = nnx.Param(jnp.full((M,), math.log(0.3)) + zigzag)
        ramp = h / M
        self.time_mix_k = nnx.Param(ramp**r10)
        self.time_mix_v = nnx.Param(ramp**r10 + 0.3 * r01)
        self.time_mix_r = nnx.Param(ramp ** (0.5 * r10))

        def linear(init):
            return nnx.Linear(M, M, use_bias=False, kernel_init=init, rngs=rngs)

        zeros = nnx.initializers.zeros_init()
        self.key = linear(zeros)
        self.value = linear(nnx.initializers.orthogonal())
        self.receptance = linear(zeros)
        self.output = linear(zeros)

    def _mix(self, x, prev):
        def lerp(mu):
            mu = mu[...].reshape((1,) * (x.ndim - 1) + (-1,))
            return x * mu + prev * (1 - mu)

        k = self.key(lerp(self.time_mix_k))
        v = self.value(lerp(self.time_mix_v))
        r = self.receptance(lerp(self.time_mix_r))
        return k, v, r

    def __call__(self, x_BxTxM, *, segment_ids=None):
        k_BxTxM, v_BxTxM, r_BxTxM = self._mix(x_BxTxM, token_shift(x_BxTxM, segment_ids))
        wkv_BxTxM, _ = ops.rwkv4_wkv(
            jnp.exp(self.time_decay[...]),
            self.time_first[...],
            k_BxTxM,
            v_BxTxM,
            backend=self.config.backend,
            segment_ids=segment_ids,
        )
        return self.output(jax.nn.sigmoid(r_BxTxM) * wkv_BxTxM)

    def init_cache(self, batch_size: int):
        M = self.config.embed_dim
        zeros = jnp.zeros((batch_size, M), jnp.float32)
        # max exponent -1e38 (not -inf) so that an empty state adds exactly nothing
        wkv = (zeros, zeros, jnp.full((batch_size, M), -1e38, jnp.float32))
        return {"x": zeros, "wkv": wkv}

    def step(self, x_BxM, cache):
        k, v, r = self._mix(x_BxM, cache["x"].astype(x_BxM.dtype))
        wkv_Bx1xM, state = ops.rwkv4_wkv(
            jnp.exp(self.time_decay[...]),
            self.time_first[...],
            k[:, None],
            v[:, None],
            state=cache["wkv"],
            backend=self.config.backend,
        )
        y = self.output(jax.nn.sigmoid(r) * wkv_Bx1xM[:, 0])
        return y, {"x": x_BxM.astype(jnp.float32), "wkv": state}
