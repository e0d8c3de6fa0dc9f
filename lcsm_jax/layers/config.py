"""`EOSConfig`: the LCSM paper's parameter grid as one frozen, validated dataclass (SPEC §2)."""

from __future__ import annotations

import dataclasses
import itertools

from lcsm_jax.layers.settings import LayerSettings, is_int

# Oscillation types whose construction rotates or rescales the data-dependent e and s.
NEEDS_DD_E_AND_S = (11, 12)
# Oscillation types with a hand-crafted (ALiBi) alternative when o_learned=False.
HAND_CRAFTED_O_TYPES = (0, 4, 5)
NUM_O_TYPES = 13
NUM_T_TYPES = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class EOSConfig(LayerSettings):
    """One cell of the LCSM grid (Qin et al., arXiv 2405.17383), flags named as in the official
    code. The sizes, dtypes, backend and projection kind are the `LayerSettings` fields
    (embed_dim, num_heads, expand_dim, tau, bias, backend, chunk_size, dtype, param_dtype,
    projection, nblocks); expand_dim is 64 and num_heads 1 in the paper.

    Attributes:
      c_type: 0 = SSM parameterisation (Mamba-like; builds e, o, s itself), 1 = naive (linear
        layers).
      e_type: 1 = data-dependent e = act(W x) in R^K; 0 = data-independent K×D parameter act(P).
      s_type: as e_type, for the shrink state.
      o_type: oscillation construction 0..12 (SPEC §2 table; see `layers/oscillation.py`).
      o_learned: False gives the hand-crafted ALiBi decay exp(-slope); only for o_type 0, 4, 5.
      t_type: activation on e and s (naive only): 0 identity, 1 ReLU, 2 sigmoid, 3 1+ELU, 4 SiLU,
        5 ELU, 6 ReLU², 7 x².
      ssm_dim: rank of the Δ bottleneck of the SSM parameterisation.

    The defaults are the paper's best language-modelling cell: naive parameterisation with
    data-dependent e, o (o_type 1) and s. Invalid combinations raise ``ValueError`` naming the
    field.
    """

    c_type: int = 1
    e_type: int = 1
    s_type: int = 1
    o_type: int = 1
    o_learned: bool = True
    t_type: int = 0
    ssm_dim: int = 16

    def __post_init__(self):
        super().__post_init__()
        _check_choices(self)
        _check_combinations(self)

    @property
    def head_dim(self) -> int:
        """D, the value width of one head."""
        return self.embed_dim // self.num_heads


def _check_choices(c: EOSConfig) -> None:
    if not is_int(c.ssm_dim) or c.ssm_dim < 1:
        raise ValueError(f"ssm_dim must be a positive int, got {c.ssm_dim!r}")
    ranges = {
        "c_type": (0, 1),
        "e_type": (0, 1),
        "s_type": (0, 1),
        "o_type": tuple(range(NUM_O_TYPES)),
        "t_type": tuple(range(NUM_T_TYPES)),
    }
    for name, allowed in ranges.items():
        value = getattr(c, name)
        if not is_int(value) or value not in allowed:
            raise ValueError(f"{name} must be one of {allowed[0]}..{allowed[-1]}, got {value!r}")
    if not isinstance(c.o_learned, bool):
        raise ValueError(f"o_learned must be a bool, got {c.o_learned!r}")


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
