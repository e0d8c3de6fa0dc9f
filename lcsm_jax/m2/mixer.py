"""`M2Mixer`: the Monarch Mixer sequence mixer (SPEC §5), x [B, T, M] -> [B, T, M].

    x1, x2, v = split(shortconv(W_in x))       (3M channels, causal depthwise conv)
    y = (k ∗ (v ⊙ x1) + D ⊙ (v ⊙ x1)) ⊙ x2    (long conv, skip D)
    y += k_res ∗ x + D_res ⊙ x                  (residual long conv of the raw input)
    out = W_out y

Both long convolutions run as one operator over 2M channels: `HyenaConv` (catalogue "m2") or the
recurrent `SSMConv` (catalogue "m2_ssm").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.m2.config import M2Config
from lcsm_jax.m2.hyena import HyenaConv
from lcsm_jax.m2.ssm import SSMConv
from lcsm_jax.nn.conv import ShortConv
from lcsm_jax.nn.linear import make_linear


class M2Mixer(nnx.Module):
    """The M2 sequence mixer; `init_cache` / `step` decode one token at a time (see the kernels)."""

    def __init__(self, config: M2Config, *, rngs: nnx.Rngs):
        if not isinstance(config, M2Config):
            raise TypeError(f"config must be an M2Config, got {type(config).__name__}")
        self.config = config
        M = config.embed_dim
        channels = 2 * M if config.residual_conv else M
        linear = dict(rngs=rngs, nblocks=config.nblocks)
        self.in_proj = make_linear(config.projection, M, 3 * M, **linear)
        self.short = ShortConv(3 * M, config.short_conv, rngs=rngs)
        if config.kernel == "hyena":
            self.op = HyenaConv(
                channels,
                max_len=config.max_len,
                order=config.filter_order,
                emb_dim=config.filter_emb_dim,
                freq=config.filter_freq,
                bidirectional=config.bidirectional,
                method=config.long_conv,
                rngs=rngs,
            )
        else:
            self.op = SSMConv(channels, state_dim=config.state_dim, rngs=rngs)
        self.skip = nnx.Param(jax.random.normal(rngs.params(), (channels,), jnp.float32))
        self.out_proj = make_linear(config.projection, M, M, **linear)

    def _conv_input(self, x, z):
        """(w, x2): the long conv's input (v ⊙ x1, and the raw x for the residual conv) and the
        output gate."""
        x1, x2, v = jnp.split(z, 3, axis=-1)
        w = v * x1
        if self.config.residual_conv:
            w = jnp.concatenate([w, x.astype(w.dtype)], axis=-1)
        return w, x2

    def _output(self, w, conv_w, x2):
        M = self.config.embed_dim
        skip = self.skip[...].astype(w.dtype).reshape((1,) * (w.ndim - 1) + (-1,))
        y = conv_w + skip * w
        out = y[..., :M] * x2
        if self.config.residual_conv:
            out = out + y[..., M:]
        return self.out_proj(out)

    def __call__(self, x_BxTxM: jax.Array, segment_ids: jax.Array | None = None) -> jax.Array:
        M = self.config.embed_dim
        if x_BxTxM.ndim != 3 or x_BxTxM.shape[-1] != M:
            raise ValueError(f"x must be [B, T, {M}], got shape {x_BxTxM.shape}")
        if x_BxTxM.shape[1] > self.config.max_len:
            raise ValueError(
                f"sequence length {x_BxTxM.shape[1]} exceeds M2Config.max_len={self.config.max_len}"
            )
        z = self.short(self.in_proj(x_BxTxM), segment_ids)
        w, x2 = self._conv_input(x_BxTxM, z)
        return self._output(w, self.op(w, segment_ids), x2)

    def init_cache(self, batch_size: int):
        """Short-conv window and the long-conv state (input history for "hyena", EOS memory for
        "ssm")."""
        return {
            "conv": self.short.init_cache(batch_size, 3 * self.config.embed_dim),
            "op": self.op.init_cache(batch_size),
        }

    def step(self, x_BxM: jax.Array, cache):
        """One token: x [B, M] -> (y [B, M], cache)."""
        M = self.config.embed_dim
        if x_BxM.ndim != 2 or x_BxM.shape[-1] != M:
            raise ValueError(f"x_t must be [B, {M}], got shape {x_BxM.shape}")
        z, conv = self.short.step(self.in_proj(x_BxM), cache["conv"])
        w, x2 = self._conv_input(x_BxM, z)
        conv_w, op = self.op.step(w, cache["op"])
        return self._output(w, conv_w, x2), {"conv": conv, "op": op}
