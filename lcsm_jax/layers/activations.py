"""Activations on e and s (the paper's `t_type`) and the ALiBi slopes of the hand-crafted decay."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {
    "identity": lambda x: x,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "one_plus_elu": lambda x: 1 + jax.nn.elu(x),
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "relu2": lambda x: jnp.square(jax.nn.relu(x)),
    "square": jnp.square,
}
# Index = the paper's t_type.
T_TYPES = ("identity", "relu", "sigmoid", "one_plus_elu", "silu", "elu", "relu2", "square")


def activation(name: str):
    """The activation called `name` (one of `ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def alibi_slopes(n: int) -> np.ndarray:
    """ALiBi slopes for n elements: 2^(-8(j+1)/n) for a power of two n, else the standard fallback
    (the slopes of the nearest lower power of two, then every other slope of the next one up)."""

    def power_of_two(p: int) -> list[float]:
        return [2.0 ** (-8.0 * (j + 1) / p) for j in range(p)]

    def slopes(m: int) -> list[float]:
        if math.log2(m).is_integer():
            return power_of_two(m)
        lower = 2 ** math.floor(math.log2(m))
        return power_of_two(lower) + slopes(2 * lower)[0::2][: m - lower]

    return np.asarray(slopes(n), dtype=np.float64)
