"""Shared helpers of the layer tests: tiny inputs and parameter randomisation."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

KEEP = ("a_log",)  # keep the S4D-real init: it is what makes the SSM decay structured


def randomise(module: nnx.Module, seed: int = 0, std: float = 0.5) -> nnx.Module:
    """Redraws every parameter from N(0, std²) so that every stage visibly moves the output
    (the 0.02 init would leave activations nearly linear)."""
    rng = np.random.default_rng(seed)
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Param) and not any(k in map(str, path) for k in KEEP):
            value = node[...]
            node[...] = (std * rng.standard_normal(value.shape)).astype(value.dtype)
    return module


def inputs(B: int, T: int, M: int, seed: int = 1) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (B, T, M))


def cell_id(cell: dict) -> str:
    if cell["c_type"] == 0:
        return "ssm"
    learned = "learned" if cell["o_learned"] else "fixed"
    return f"e{cell['e_type']}-s{cell['s_type']}-o{cell['o_type']}-{learned}-t{cell['t_type']}"
