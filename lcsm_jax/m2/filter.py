"""The implicit Hyena filter of M2: kernel k[t, c] = MLP(pos(t))[c] · exponential window_c(t).

Positional features of t (normalised by the fixed `max_len`, so the kernel of a shorter call is a
prefix of the longer one and decoding sees the same kernel as training): [t/L, Re, Im of
exp(-i·f·2π·t/L)] for `(emb_dim - 1) / 2` frequencies f; an MLP with sine activations whose
frequency is one shared learned vector (init 10: high enough to give the filter fine structure at
init); then a per-channel decay exp(-|δ_c|·t/L) with δ spread from slow to fast decay, so channels
start with a range of effective lengths (Poli et al., Hyena, arXiv 2302.10866).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

TARGET = 1e-2  # the window falls to this value...
FAST_DECAY_PCT, SLOW_DECAY_PCT = 0.3, 1.5  # ...by 30% (fastest channel) to 150% of max_len


def positional_features(length: int, max_len: int, emb_dim: int) -> jax.Array:
    """[length, emb_dim] features of positions 0..length-1 (numpy constants, float32)."""
    t = np.arange(length, dtype=np.float64)[:, None]
    bands = (emb_dim - 1) // 2
    freqs = np.linspace(1e-4, bands - 1, bands)[None]
    angle = 2 * np.pi * freqs * t / max_len
    feats = np.concatenate([t / max_len, np.cos(angle), -np.sin(angle)], axis=-1)
    return jnp.asarray(feats, jnp.float32)


def decay_rates(channels: int) -> jax.Array:
    """|δ_c|: a constant (not a parameter), spread so the window reaches TARGET by 30%..150%."""
    fast = -math.log(TARGET) / FAST_DECAY_PCT
    slow = -math.log(TARGET) / SLOW_DECAY_PCT
    return jnp.asarray(np.linspace(slow, fast, channels), jnp.float32)


class HyenaFilter(nnx.Module):
    """Implicit long-conv kernels for `channels` channels: `filter(T)` -> k [T, channels] (float32).

    With `bidirectional`, `filter(T)` returns (k_fwd, k_bwd), two independent kernels.
    """

    def __init__(
        self,
        channels: int,
        *,
        max_len: int,
        order: int = 64,
        emb_dim: int = 5,
        freq: float = 10.0,
        bidirectional: bool = False,
        rngs: nnx.Rngs,
    ):
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"filter emb_dim must be odd and >= 3 (t, Re, Im), got {emb_dim}")
        for name, value in (("channels", channels), ("max_len", max_len), ("order", order)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"filter {name} must be a positive int, got {value!r}")
        self.channels, self.max_len, self.emb_dim = channels, max_len, emb_dim
        self.bidirectional = bidirectional
        out = 2 * channels if bidirectional else channels

        def linear(n_in, n_out, bias=True):
            return nnx.Linear(n_in, n_out, use_bias=bias, rngs=rngs)

        self.layers = nnx.List([linear(emb_dim, order), linear(order, order)])
        self.head = linear(order, out, bias=False)
        self.freq = nnx.Param(jnp.full((order,), freq, jnp.float32))
        self.num_out = out

    def __call__(self, length: int):
        if length > self.max_len:
            raise ValueError(
                f"sequence length {length} exceeds the filter's max_len={self.max_len}"
            )
        z = positional_features(length, self.max_len, self.emb_dim)
        for layer in self.layers:
            z = jnp.sin(self.freq[...][None] * layer(z))
        k_TxC = self.head(z)
        t = jnp.arange(length, dtype=jnp.float32)[:, None] / self.max_len
        k_TxC = k_TxC * jnp.exp(-t * decay_rates(self.num_out)[None])
        if self.bidirectional:
            return k_TxC[:, : self.channels], k_TxC[:, self.channels :]
        return k_TxC
