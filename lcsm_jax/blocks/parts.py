"""Pieces the blocks share: config checks that name the field, the causal depthwise conv of the
published blocks (fla's `ShortConvolution`, mamba_ssm's `conv1d`), and fla's per-head RMSNorm with
its optional swish gate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcsm_jax.eos import BACKENDS
from lcsm_jax.nn.conv import ShortConv
from lcsm_jax.nn.init import INIT_STD

CONV_INITS = ("normal", "torch")


def check_positive_ints(config, names) -> None:
    """ValueError unless each named field is an int >= 1."""
    for field in names:
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"{type(config).__name__}.{field} must be a positive int, got {value!r}"
            )


def check_scan_options(config, backends=BACKENDS) -> None:
    """ValueError unless `config.backend` is one of `backends` (the `eos_scan` backends unless
    told, e.g. `eos.DELTA_BACKENDS`) and `config.chunk_size` is None or a positive int."""
    name = type(config).__name__
    if not isinstance(config.backend, str) or config.backend not in backends:
        raise ValueError(f"{name}.backend must be one of {backends}, got {config.backend!r}")
    if config.chunk_size is not None:
        check_positive_ints(config, ("chunk_size",))


def check_positive(config, names) -> None:
    """ValueError unless each named field is a real number > 0."""
    for field in names:
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{type(config).__name__}.{field} must be > 0, got {value!r}")


def check_heads(config, widths) -> None:
    """ValueError unless `config.num_heads` divides every named (property) width, each >= 1."""
    name = type(config).__name__
    for field in widths:
        width = getattr(config, field)
        if width < 1 or width % config.num_heads:
            raise ValueError(
                f"{name}.num_heads={config.num_heads} must divide {field}={width} (>= 1)"
            )


class HeadRMSNorm(nnx.Module):
    """RMSNorm over the last axis (one head) with a weight, then ⊙ swish(gate) when a gate is
    given: fla's `FusedRMSNormGated` (or `RMSNorm` alone), computed in float32."""

    def __init__(self, features: int, *, eps: float, affine: bool = True):
        self.weight = nnx.Param(jnp.ones((features,))) if affine else None
        self.eps = eps

    def __call__(self, o, gate=None):
        x = o.astype(jnp.float32)
        y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight[...].reshape((1,) * (y.ndim - 1) + (-1,))
        if gate is not None:
            y = y * jax.nn.silu(gate.astype(jnp.float32))
        return y.astype(o.dtype)


class CausalConv(nnx.Module):
    """A causal depthwise conv of `kernel_size` taps (`nn.conv.ShortConv`) with optional bias,
    then SiLU when `silu`. `init` "normal": weights N(0, 0.02²) and bias zero (fla's model init);
    "torch": weight and bias U(±1/√k), PyTorch's Conv1d init (fan_in = k for a depthwise kernel),
    as mamba_ssm's blocks build theirs."""

    def __init__(self, channels, kernel_size, *, bias: bool, silu=False, init="normal", rngs):
        if init not in CONV_INITS:
            raise ValueError(f"conv init must be one of {CONV_INITS}, got {init!r}")
        self.conv = ShortConv(channels, kernel_size, rngs=rngs)
        shape, bound = (kernel_size, channels), kernel_size**-0.5
        if init == "normal":
            weight = INIT_STD * jax.random.normal(rngs.params(), shape)
        else:
            weight = jax.random.uniform(rngs.params(), shape, minval=-bound, maxval=bound)
        self.conv.weight = nnx.Param(weight)
        # One assignment: NNX refuses a Param on an attribute first set to None (static).
        if bias and init == "normal":
            self.bias = nnx.Param(jnp.zeros((channels,)))
        elif bias:
            draw = jax.random.uniform(rngs.params(), (channels,), minval=-bound, maxval=bound)
            self.bias = nnx.Param(draw)
        else:
            self.bias = None
        self.channels, self.silu = channels, silu

    def _finish(self, y):
        if self.bias is not None:
            y = y + self.bias[...].reshape((1,) * (y.ndim - 1) + (self.channels,))
        return jax.nn.silu(y) if self.silu else y

    def __call__(self, x_BxTxC, segment_ids=None):
        return self._finish(self.conv(x_BxTxC, segment_ids))

    def init_cache(self, batch_size: int):
        """The last kernel_size - 1 inputs, newest first: [B, kernel_size - 1, channels]."""
        return self.conv.init_cache(batch_size, self.channels)

    def step(self, x_BxC, cache):
        y_BxC, cache = self.conv.step(x_BxC, cache)
        return self._finish(y_BxC), cache


def step_convs(convs, xs_BxC, caches):
    """One token through each conv of `convs` with its cache: (outputs, new caches), in order."""
    stepped = [conv.step(x, c) for conv, x, c in zip(convs, xs_BxC, caches, strict=True)]
    return [y for y, _ in stepped], tuple(c for _, c in stepped)
