"""Argument checks shared by the ops: errors name the op, the argument and the expected layout."""

from __future__ import annotations

import jax.numpy as jnp


def check_rank(op: str, arg: str, x, rank: int, layout: str) -> None:
    if jnp.ndim(x) != rank:
        raise ValueError(f"{op}: {arg} must be {layout}, got shape {jnp.shape(x)}")


def check_shape(op: str, arg: str, x, shape, expected: str | None = None) -> None:
    if tuple(jnp.shape(x)) != tuple(shape):
        what = f"{expected} {tuple(shape)}" if expected else str(tuple(shape))
        raise ValueError(f"{op}: {arg} must have shape {what}, got {tuple(jnp.shape(x))}")


def check_real(op: str, arg: str, x) -> None:
    if jnp.iscomplexobj(x):
        raise TypeError(f"{op}: {arg} must be real, got {jnp.asarray(x).dtype}")
