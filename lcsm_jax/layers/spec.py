"""`LayerSpec`: the stage-level description every EOS layer is built from.

An EOS layer is four stages (input i, expand e, shrink s, oscillation o) around the shared skeleton
in `mixer.py`. The paper grid (`EOSConfig`) and every published method in `lcsm_jax.catalogue` are
both translated into a `LayerSpec`, so one builder serves them all.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp

# `num_heads` value meaning one head per channel (H = M, D = 1), e.g. RWKV-4's per-channel decay.
PER_CHANNEL = -1


class Dims(NamedTuple):
    """Static sizes: M model width, H heads, K expand rows per head, D value width per head."""

    M: int
    H: int
    K: int
    D: int


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Stage choices and sizes of one EOS layer.

    Attributes:
      embed_dim: model width M.
      num_heads: H (heads split D = M / H), or `PER_CHANNEL`.
      expand_dim: K, memory rows per head.
      inputs: i stage, a key of `stages.INPUTS`.
      expand: e stage, a key of `stages.EXPANDS`.
      shrink: s stage, a key of `stages.SHRINKS`.
      activation: applied to e and s by the "proj" and "param" stages (`activations.ACTIVATIONS`).
      oscillation: o stage, a key of `layers.registry.OSCILLATIONS`.
      options: extra (name, value) pairs read by the oscillation stage (e.g. o_learned).
      tau: τ of g(z) = sigmoid(z)^(1/τ).
      bias: whether the e, i, s and decay projections have a bias.
      backend, chunk_size: passed to `eos.eos_scan`.
      dtype, param_dtype: compute and parameter dtypes.
      projection, nblocks: kind of the i, e, s and output projections ("dense", "blockdiag" or
        "monarch", see `lcsm_jax.nn.linear`) and their number of blocks.
    """

    embed_dim: int
    num_heads: int = 1
    expand_dim: int = 64
    inputs: str = "proj"
    expand: str = "proj"
    shrink: str = "proj"
    activation: str = "identity"
    oscillation: str = "none"
    options: tuple[tuple[str, Any], ...] = ()
    tau: float = 16.0
    bias: bool = False
    backend: str = "auto"
    chunk_size: int | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    projection: str = "dense"
    nblocks: int = 4

    def __post_init__(self):
        if not isinstance(self.embed_dim, int) or self.embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive int, got {self.embed_dim!r}")
        heads = self.embed_dim if self.num_heads == PER_CHANNEL else self.num_heads
        if not isinstance(heads, int) or heads < 1 or self.embed_dim % heads:
            raise ValueError(
                f"num_heads={self.num_heads!r} must be a positive divisor of "
                f"embed_dim={self.embed_dim} (or PER_CHANNEL)"
            )
        if not isinstance(self.expand_dim, int) or self.expand_dim < 1:
            raise ValueError(f"expand_dim must be a positive int, got {self.expand_dim!r}")

    @property
    def dims(self) -> Dims:
        heads = self.embed_dim if self.num_heads == PER_CHANNEL else self.num_heads
        return Dims(self.embed_dim, heads, self.expand_dim, self.embed_dim // heads)

    def option(self, name: str, default: Any = None) -> Any:
        """The value of option `name`, or `default` when the spec does not set it."""
        return dict(self.options).get(name, default)
