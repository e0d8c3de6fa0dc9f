"""`LayerSettings`: the sizes, dtypes, backend and projection kind every EOS layer description
shares. `EOSConfig` (the paper grid) and `LayerSpec` (stage level) both extend it, so each field
and its validation is written once; `grid_spec` and `catalogue.OVERRIDABLE` read it by
`dataclasses.fields`."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp

from lcsm_jax import eos
from lcsm_jax.nn.linear import LINEAR_KINDS


def is_int(x) -> bool:
    """An int that is not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerSettings:
    """Fields shared by every EOS layer description (keyword-only).

    Attributes:
      embed_dim: model width M; also the total value width (heads split it: D = M / num_heads).
      num_heads: H, heads splitting the D axis.
      expand_dim: K, memory rows per head.
      tau: τ in g(z) = sigmoid(z)^(1/τ); larger means longer memory.
      bias: whether the e, i, s and decay projections have a bias (the output projection never
        has one).
      backend: EOS core backend, passed to `eos.eos_scan` ("auto" picks the fastest that supports
        the decay structure).
      chunk_size: chunk length for the chunked backend (None: the core's default).
      dtype: compute dtype of projections and e, i, s (decays are always float32).
      param_dtype: dtype of the parameters.
      projection: kind of the i, e, s and output projections ("dense", "blockdiag" or "monarch",
        M2's structured matrices, see `lcsm_jax.nn.linear`).
      nblocks: number of blocks of the structured projections.

    Invalid values raise ``ValueError`` naming the field.
    """

    # How a subclass spells num_heads values other than a positive divisor (LayerSpec: PER_CHANNEL).
    NUM_HEADS_ALSO: ClassVar[str] = ""

    embed_dim: int
    num_heads: int = 1
    expand_dim: int = 64
    tau: float = 16.0
    bias: bool = False
    backend: str = "auto"
    chunk_size: int | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    projection: str = "dense"
    nblocks: int = 4

    def __post_init__(self):
        _check_settings(self)

    @property
    def heads(self) -> int:
        """H, the number of heads."""
        return self.num_heads


SETTINGS = tuple(f.name for f in dataclasses.fields(LayerSettings))


def settings_of(description: LayerSettings) -> dict[str, Any]:
    """The shared fields of an `EOSConfig` or `LayerSpec`, by name."""
    return {name: getattr(description, name) for name in SETTINGS}


def _check_settings(c: LayerSettings) -> None:
    for name in ("embed_dim", "expand_dim", "nblocks"):
        value = getattr(c, name)
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not is_int(c.heads) or c.heads < 1:
        raise ValueError(f"num_heads must be a positive int{c.NUM_HEADS_ALSO}, got {c.num_heads!r}")
    if c.embed_dim % c.heads:
        raise ValueError(
            f"num_heads={c.num_heads} must divide embed_dim={c.embed_dim} (heads split the D axis)"
        )
    if isinstance(c.tau, bool) or not isinstance(c.tau, int | float) or not c.tau > 0:
        raise ValueError(f"tau must be a positive number, got {c.tau!r}")
    if not isinstance(c.bias, bool):
        raise ValueError(f"bias must be a bool, got {c.bias!r}")
    if c.chunk_size is not None and (not is_int(c.chunk_size) or c.chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {c.chunk_size!r}")
    if c.backend not in eos.BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(eos.BACKENDS)}, got {c.backend!r}")
    for name in ("dtype", "param_dtype"):
        try:
            ok = jnp.issubdtype(jnp.dtype(getattr(c, name)), jnp.floating)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a floating dtype, got {getattr(c, name)!r}")
    if c.projection not in LINEAR_KINDS:
        raise ValueError(
            f"projection must be one of {', '.join(LINEAR_KINDS)}, got {c.projection!r}"
        )
