"""`LayerSpec`: the stage-level description every EOS layer is built from.

An EOS layer is four stages (input i, expand e, shrink s, oscillation o) around the shared skeleton
in `mixer.py`. The paper grid (`EOSConfig`) and every published method in `lcsm_jax.catalogue` are
both translated into a `LayerSpec`, so one builder serves them all.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

from lcsm_jax.layers.settings import LayerSettings

# `num_heads` value meaning one head per channel (H = M, D = 1), e.g. RWKV-4's per-channel decay.
PER_CHANNEL = -1


class Dims(NamedTuple):
    """Static sizes: M model width, H heads, K expand rows per head, D value width per head."""

    M: int
    H: int
    K: int
    D: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerSpec(LayerSettings):
    """Stage choices and sizes of one EOS layer: the `LayerSettings` fields (embed_dim,
    num_heads, expand_dim, tau, bias, backend, chunk_size, dtype, param_dtype, projection,
    nblocks; num_heads may also be `PER_CHANNEL`) and the stages.

    Attributes:
      inputs: i stage, a key of `stages.INPUTS`.
      expand: e stage, a key of `stages.EXPANDS`.
      shrink: s stage, a key of `stages.SHRINKS`.
      activation: applied to e and s by the "proj" and "param" stages (`activations.ACTIVATIONS`).
      oscillation: o stage, a key of `layers.registry.OSCILLATIONS`.
      options: extra (name, value) pairs read by the oscillation stage (e.g. o_learned).
    """

    NUM_HEADS_ALSO: ClassVar[str] = " or PER_CHANNEL"

    inputs: str = "proj"
    expand: str = "proj"
    shrink: str = "proj"
    activation: str = "identity"
    oscillation: str = "none"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def heads(self) -> int:
        """H, with `PER_CHANNEL` resolved to one head per channel."""
        return self.embed_dim if self.num_heads == PER_CHANNEL else self.num_heads

    @property
    def dims(self) -> Dims:
        return Dims(self.embed_dim, self.heads, self.expand_dim, self.embed_dim // self.heads)

    def option(self, name: str, default: Any = None) -> Any:
        """The value of option `name`, or `default` when the spec does not set it."""
        return dict(self.options).get(name, default)
