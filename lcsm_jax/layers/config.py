"""`EOSConfig`: the LCSM paper's parameter grid as one frozen, validated dataclass (SPEC §2)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax.numpy as jnp

from lcsm_jax import eos
from lcsm_jax.nn.linear import LINEAR_KINDS

# Oscillation types whose construction rotates or rescales the data-dependent e and s.
NEEDS_DD_E_AND_S = (11, 12)
# Oscillation types with a hand-crafted (ALiBi) alternative when o_learned=False.
HAND_CRAFTED_O_TYPES = (0, 4, 5)
NUM_O_TYPES = 13
NUM_T_TYPES = 8


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class EOSConfig:
    """One cell of the LCSM grid (Qin et al., arXiv 2405.17383), flags named as in the official
    code.

    Attributes:
      embed_dim: model width M; also the total value width (heads split it: D = M / num_heads).
      expand_dim: K, memory rows per head (64 in the paper's MQAR runs).
      num_heads: H, heads splitting the D axis (1 in the paper).
      c_type: 0 = SSM parameterisation (Mamba-like; builds e, o, s itself), 1 = naive (linear
        layers).
      e_type: 1 = data-dependent e = act(W x) in R^K; 0 = data-independent K×D parameter act(P).
      s_type: as e_type, for the shrink state.
      o_type: oscillation construction 0..12 (SPEC §2 table; see `layers/oscillation.py`).
      o_learned: False gives the hand-crafted ALiBi decay exp(-slope); only for o_type 0, 4, 5.
      t_type: activation on e and s (naive only): 0 identity, 1 ReLU, 2 sigmoid, 3 1+ELU, 4 SiLU,
        5 ELU, 6 ReLU², 7 x².
      tau: τ in g(z) = sigmoid(z)^(1/τ); larger means longer memory.
      ssm_dim: rank of the Δ bottleneck of the SSM parameterisation.
      bias: whether the linear projections have a bias (the output projection never has one).
      backend: EOS core backend ("auto" picks the fastest that supports the decay structure).
      chunk_size: chunk length for the chunked backend (None: the core's default).
      dtype: compute dtype of projections and e, i, s (decays are always float32).
      param_dtype: dtype of the parameters.
      projection: "dense", "blockdiag" or "monarch" i, e, s and output projections (M2's
        structured matrices, `lcsm_jax.nn.linear`); nblocks: their number of blocks.

    The defaults are the paper's best language-modelling cell: naive parameterisation with
    data-dependent e, o (o_type 1) and s. Invalid combinations raise ``ValueError`` naming the
    field.
    """

    embed_dim: int
    expand_dim: int = 64
    num_heads: int = 1
    c_type: int = 1
    e_type: int = 1
    s_type: int = 1
    o_type: int = 1
    o_learned: bool = True
    t_type: int = 0
    tau: float = 16.0
    ssm_dim: int = 16
    bias: bool = False
    backend: str = "auto"
    chunk_size: int | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    projection: str = "dense"
    nblocks: int = 4

    def __post_init__(self):
        _check_sizes(self)
        _check_choices(self)
        _check_combinations(self)

    @property
    def head_dim(self) -> int:
        """D, the value width of one head."""
        return self.embed_dim // self.num_heads


def _check_sizes(c: EOSConfig) -> None:
    for name in ("embed_dim", "expand_dim", "num_heads", "ssm_dim"):
        value = getattr(c, name)
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if c.embed_dim % c.num_heads:
        raise ValueError(
            f"num_heads={c.num_heads} must divide embed_dim={c.embed_dim} (heads split the D axis)"
        )
    if isinstance(c.tau, bool) or not isinstance(c.tau, int | float) or not c.tau > 0:
        raise ValueError(f"tau must be a positive number, got {c.tau!r}")
    if c.chunk_size is not None and (not _is_int(c.chunk_size) or c.chunk_size < 1):
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


def _check_choices(c: EOSConfig) -> None:
    ranges = {
        "c_type": (0, 1),
        "e_type": (0, 1),
        "s_type": (0, 1),
        "o_type": tuple(range(NUM_O_TYPES)),
        "t_type": tuple(range(NUM_T_TYPES)),
    }
    for name, allowed in ranges.items():
        value = getattr(c, name)
        if not _is_int(value) or value not in allowed:
            raise ValueError(f"{name} must be one of {allowed[0]}..{allowed[-1]}, got {value!r}")
    for name in ("o_learned", "bias"):
        if not isinstance(getattr(c, name), bool):
            raise ValueError(f"{name} must be a bool, got {getattr(c, name)!r}")
    if c.projection not in LINEAR_KINDS:
        raise ValueError(
            f"projection must be one of {', '.join(LINEAR_KINDS)}, got {c.projection!r}"
        )


def _check_combinations(c: EOSConfig) -> None:
    if c.c_type == 0:
        # The SSM parameterisation builds e, o, s itself; a non-default naive flag would be ignored.
        for field in ("e_type", "s_type", "o_type", "o_learned", "t_type"):
            default = EOSConfig.__dataclass_fields__[field].default
            if getattr(c, field) != default:
                raise ValueError(
                    f"{field}={getattr(c, field)!r} has no effect with c_type=0 (SSM), which "
                    f"builds e, o and s itself; leave {field} at its default {default!r} "
                    "or use c_type=1"
                )
        return
    if c.o_type in NEEDS_DD_E_AND_S:
        for field in ("e_type", "s_type"):
            if getattr(c, field) != 1:
                raise ValueError(
                    f"{field}={getattr(c, field)} is not allowed with o_type={c.o_type}: it "
                    f"transforms data-dependent e and s over time, so {field} must be 1"
                )
    if not c.o_learned and c.o_type not in HAND_CRAFTED_O_TYPES:
        raise ValueError(
            f"o_learned=False is only defined for o_type in {HAND_CRAFTED_O_TYPES} "
            f"(hand-crafted ALiBi decay), got o_type={c.o_type}"
        )


def grid_cells() -> list[dict[str, int | bool]]:
    """Every c_type × e_type × s_type × o_type × o_learned × t_type cell the paper allows."""
    cells = [{"c_type": 0}]
    for e, s, o, learned, t in itertools.product(
        (0, 1), (0, 1), range(NUM_O_TYPES), (True, False), range(NUM_T_TYPES)
    ):
        if o in NEEDS_DD_E_AND_S and (e, s) != (1, 1):
            continue
        if not learned and o not in HAND_CRAFTED_O_TYPES:
            continue
        cells.append(
            {"c_type": 1, "e_type": e, "s_type": s, "o_type": o, "o_learned": learned, "t_type": t}
        )
    return cells
